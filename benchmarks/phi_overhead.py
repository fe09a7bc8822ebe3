"""What the Φ-Module costs: every backbone with and without Φ, energy + forces, 42 to 10,000 atoms.

    python benchmarks/phi_overhead.py            # full run (sizes up to 10,125 atoms)
    python benchmarks/phi_overhead.py --quick    # sizes up to ~1,000 atoms, one repeat
    taskset -c 0 python benchmarks/phi_overhead.py --batch 16 --sizes 42 120   # pinned to one core, as published

Structures: water droplets cut from a box at liquid density (one connected component at a
5 Å cutoff), so every size is the same kind of matter; ``--batch B`` evaluates B copies at once.
Each size runs in a fresh worker process (``--worker``) holding the base and the Φ model (same
seed, float32); their energy+force evaluations are interleaved after a warm-up, so machine load
hits both alike, and the ratio of the medians is reported. Memory = peak torch tensor memory of
one evaluation. Writes ``benchmarks/results/phi_overhead_<preset>_b<batch>.{json,md,png}``.
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
    """Base and Φ model in one process, evaluations interleaved (machine load hits both alike)."""
    import torch
    from torch_geometric.data import Batch, Data

    import phizoo
    from phizoo.eval.leaderboard import cpu_peak_allocated

    torch.set_num_threads(args.threads)
    z, pos = water_droplet(args.atoms)
    one = Data(z=torch.tensor(z), pos=torch.tensor(pos, dtype=torch.float32))
    data = Batch.from_data_list([one] * args.batch)
    models = {}
    for phi in (False, True):
        torch.manual_seed(0)
        models[phi] = phizoo.build_model(args.model, phi=phi, preset=args.preset).eval()
        models[phi](data)  # warm-up
    t = time.perf_counter()
    models[False](data)
    warm = time.perf_counter() - t
    times = {False: [], True: []}
    # enough evaluations for ~6 s of timing per model, so the median is not one scheduler tick
    for _ in range(max(args.inner, min(1000, int(6.0 / max(warm, 1e-4))))):
        for phi in (False, True):
            t = time.perf_counter()
            models[phi](data)
            times[phi].append(time.perf_counter() - t)
    peaks = {phi: cpu_peak_allocated(lambda m=m: m(data)) / 2**20 if args.atoms * args.batch <= 4000 else None
             for phi, m in models.items()}
    return {"base_time_s": statistics.median(times[False]), "phi_time_s": statistics.median(times[True]),
            "base_min_s": min(times[False]), "phi_min_s": min(times[True]), "evaluations": len(times[False]),
            "base_tensor_peak_mb": peaks[False], "phi_tensor_peak_mb": peaks[True],
            "atoms": int(len(z)), "base_parameters": models[False].num_parameters(),
            "phi_parameters": models[True].num_parameters()}


def run_worker(model: str, atoms: int, a) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--atoms", str(atoms), "--preset", a.preset,
           "--threads", str(a.threads), "--inner", str(a.inner), "--batch", str(a.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {model} atoms={atoms} failed:\n{out.stderr[-3000:]}")
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
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (the published tables: 1)")
    p.add_argument("--batch", type=int, default=1, help="copies of the structure per batch")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--name", help="output stem in benchmarks/results/ (default phi_overhead_<preset>)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
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
        runs = [run_worker(model, n, a) for _ in range(repeats)]
        row = {k: statistics.median(r[k] for r in runs) for k in ("base_time_s", "phi_time_s")}
        row.update({k: min(r[k] for r in runs) for k in ("base_min_s", "phi_min_s")})
        row.update({k: runs[0][k] for k in ("atoms", "base_tensor_peak_mb", "phi_tensor_peak_mb",
                                              "base_parameters", "phi_parameters")})
        tb, tp = row["base_tensor_peak_mb"], row["phi_tensor_peak_mb"]
        row.update(model=model, batch=a.batch, time_overhead_pct=100 * (row["phi_time_s"] / row["base_time_s"] - 1),
                   tensor_memory_overhead_pct=None if tb is None else 100 * (tp / tb - 1))
        rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"preset": a.preset, "batch": a.batch, "threads": a.threads, "repeats": repeats, "inner": a.inner,
            "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    stem = a.name or f"phi_overhead_{a.preset}_b{a.batch}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Φ-Module overhead ({a.preset} preset, batch {a.batch}, float32, energy + forces, "
             f"{a.threads} threads, median of interleaved evaluations, {repeats} worker(s); the fastest runs "
             f"are the least disturbed by other load)", "",
             "| model | atoms | base (s) | Φ (s) | Φ / base time | time overhead | overhead of the fastest runs | "
             "tensor peak base / Φ (MB) | memory overhead |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = "–" if r["base_tensor_peak_mb"] is None else f"{r['base_tensor_peak_mb']:.1f} / {r['phi_tensor_peak_mb']:.1f}"
        memo = "–" if r["tensor_memory_overhead_pct"] is None else f"{r['tensor_memory_overhead_pct']:+.1f} %"
        lines.append(f"| {r['model']} | {r['atoms']} | {r['base_time_s']:.4f} | {r['phi_time_s']:.4f} | "
                     f"{r['phi_time_s'] / r['base_time_s']:.3f} | {r['time_overhead_pct']:+.1f} % | "
                     f"{100 * (r['phi_min_s'] / r['base_min_s'] - 1):+.1f} % | {mem} | {memo} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / f"{stem}.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
