"""What the Φ-Module costs: every backbone with and without Φ, energy + forces, 42 to 10,000 atoms.

    python benchmarks/phi_overhead.py            # full run (sizes up to 10,125 atoms)
    python benchmarks/phi_overhead.py --quick    # sizes up to ~1,000 atoms, one repeat

Structures: water droplets cut from a box at liquid density (one connected component at a
5 Å cutoff), so every size is the same kind of matter. Each measurement runs in a fresh
worker process (``--worker``): time = median of ``--inner`` energy+force evaluations after a
warm-up; memory = peak RSS growth of the process during those evaluations (everything:
torch tensors, scipy's sparse LU and eigenvectors, allocator caches) and the peak of torch
tensor memory alone. Base and Φ workers alternate, ``--repeats`` times, so machine load hits
both alike. Writes ``benchmarks/results/phi_overhead_<preset>.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FULL_SIZES = (42, 120, 372, 1014, 3993, 10125)
QUICK_SIZES = (42, 120, 372, 1014)


def water_droplet(n_atoms: int, seed: int = 0):
    """~n_atoms atoms of water (whole molecules) nearest the centre of a liquid-density box."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    w = molecule("H2O")
    n_mol = -(-n_atoms // 3)
    g = int(np.ceil((4 * n_mol) ** (1 / 3))) + 2
    grid = np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), -1).reshape(-1, 3) * 3.1
    centre = grid.mean(0)
    grid = grid[np.argsort(np.linalg.norm(grid - centre, axis=1), kind="stable")[:n_mol]]
    pos, z = [], []
    for site in grid:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        pos.append(w.positions @ q.T + site)
        z.append(w.numbers)
    return np.concatenate(z), np.concatenate(pos)


def worker(args) -> dict:
    import torch
    from torch_geometric.data import Batch, Data

    import phizoo
    from phizoo.eval.leaderboard import cpu_peak_allocated

    torch.set_num_threads(args.threads)
    z, pos = water_droplet(args.atoms)
    data = Batch.from_data_list([Data(z=torch.tensor(z), pos=torch.tensor(pos, dtype=torch.float32))])
    torch.manual_seed(0)
    model = phizoo.build_model(args.model, phi=args.phi, preset=args.preset).eval()
    t = time.perf_counter()
    model(data)  # warm-up
    model(data)
    warm = (time.perf_counter() - t) / 2
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    # small systems: enough evaluations for ~1 s of timing, so the median is not one scheduler tick
    for _ in range(max(args.inner, min(500, int(1.0 / max(warm, 1e-4))))):
        t = time.perf_counter()
        model(data)
        times.append(time.perf_counter() - t)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tensor_peak = cpu_peak_allocated(lambda: model(data)) if args.atoms <= 4000 else None
    return {"time_s": statistics.median(times), "rss_growth_mb": (rss1 - rss0) / 1024,
            "rss_peak_mb": rss1 / 1024, "tensor_peak_mb": None if tensor_peak is None else tensor_peak / 2**20,
            "atoms": int(len(z)), "parameters": model.num_parameters()}


def run_worker(model: str, phi: bool, atoms: int, a) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--atoms", str(atoms), "--preset", a.preset,
           "--threads", str(a.threads), "--inner", str(a.inner)] + (["--phi"] if phi else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {model} phi={phi} atoms={atoms} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, model in enumerate(sorted({r["model"] for r in rows})):
        rs = sorted((r for r in rows if r["model"] == model), key=lambda r: r["atoms"])
        n = [r["atoms"] for r in rs]
        c = f"C{i}"
        ax.loglog(n, [r["base_time_s"] for r in rs], "--o", color=c, alpha=0.6, label=f"{model}")
        ax.loglog(n, [r["phi_time_s"] for r in rs], "-s", color=c, label=f"{model} + Φ")
        ax2.semilogx(n, [r["time_overhead_pct"] for r in rs], "-s", color=c, label=model)
    ax.set_xlabel("atoms")
    ax.set_ylabel("energy + forces (s)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("atoms")
    ax2.set_ylabel("Φ time overhead (%)")
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--sizes", nargs="+", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--inner", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--name", help="output stem in benchmarks/results/ (default phi_overhead_<preset>)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--phi", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--atoms", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a)))
        return 0
    import phizoo
    from tqdm import tqdm

    models = a.models or phizoo.list_models()
    sizes = a.sizes or (QUICK_SIZES if a.quick else FULL_SIZES)
    repeats = 1 if a.quick else a.repeats
    rows = []
    jobs = [(m, n) for m in models for n in sizes]
    for model, n in tqdm(jobs, desc="Φ overhead"):
        runs = {False: [], True: []}
        for _ in range(repeats):
            for phi in (False, True):
                runs[phi].append(run_worker(model, phi, n, a))
        base = {k: statistics.median(r[k] for r in runs[False]) for k in ("time_s", "rss_growth_mb")}
        phi = {k: statistics.median(r[k] for r in runs[True]) for k in ("time_s", "rss_growth_mb")}
        tb, tp = runs[False][0]["tensor_peak_mb"], runs[True][0]["tensor_peak_mb"]
        rows.append({
            "model": model, "atoms": runs[False][0]["atoms"],
            "base_time_s": base["time_s"], "phi_time_s": phi["time_s"],
            "time_overhead_pct": 100 * (phi["time_s"] / base["time_s"] - 1),
            "base_tensor_peak_mb": tb, "phi_tensor_peak_mb": tp,
            "tensor_memory_overhead_pct": None if tb is None else 100 * (tp / tb - 1),
            "base_rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in runs[False]),
            "phi_rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in runs[True]),
            "base_parameters": runs[False][0]["parameters"], "phi_parameters": runs[True][0]["parameters"],
        })
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"preset": a.preset, "threads": a.threads, "repeats": repeats, "inner": a.inner,
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    stem = a.name or f"phi_overhead_{a.preset}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Φ-Module overhead ({a.preset} preset, {a.threads} threads, median of {repeats}×{a.inner})", "",
             "| model | atoms | base (s) | Φ (s) | time overhead | tensor peak base / Φ (MB) | memory overhead | process peak RSS base / Φ (MB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = "–" if r["base_tensor_peak_mb"] is None else f"{r['base_tensor_peak_mb']:.1f} / {r['phi_tensor_peak_mb']:.1f}"
        memo = "–" if r["tensor_memory_overhead_pct"] is None else f"{r['tensor_memory_overhead_pct']:+.1f} %"
        lines.append(f"| {r['model']} | {r['atoms']} | {r['base_time_s']:.3f} | {r['phi_time_s']:.3f} | "
                     f"{r['time_overhead_pct']:+.1f} % | {mem} | {memo} | {r['base_rss_peak_mb']:.0f} / {r['phi_rss_peak_mb']:.0f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / f"{stem}.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
