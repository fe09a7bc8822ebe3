"""What the Coulomb head costs beside the base model and Φ: energy + forces on water droplets.

    OMP_NUM_THREADS=1 python benchmarks/coulomb_overhead.py                      # 42, 120, 372 atoms, cpu preset
    python benchmarks/coulomb_overhead.py --sizes 42 120 372 1014 --models painn visnet

For each backbone and size, one process holds four models built with the same seed (float32):
base, Φ, Coulomb, Φ + Coulomb. After a warm-up their energy + force evaluations are interleaved
(round-robin, ``--repeats`` rounds), so machine load hits all alike; the medians and the ratios to
the base model are reported. Also a periodic water box (``--periodic``: the droplet's atoms in a
cubic cell at liquid density) with Ewald and PME. Writes ``benchmarks/results/coulomb_overhead_<preset>.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phi_overhead import water_droplet  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"base": {}, "phi": {"phi": True}, "coulomb": {"coulomb": True},
            "phi+coulomb": {"phi": True, "coulomb": True}}


def water_box(n_atoms: int, seed: int = 0):
    """g³ randomly oriented waters on a 3.1 Å grid (liquid density) filling a cubic cell of edge
    3.1·g Å, g the integer nearest (n_atoms/3)^⅓ (42 → 24, 120 → 81, 372 → 375 atoms)."""
    import numpy as np
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    g = max(2, round((n_atoms / 3) ** (1 / 3)))
    w = molecule("H2O")
    grid = np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), -1).reshape(-1, 3) * 3.1 + 1.0
    pos = [w.positions @ np.linalg.qr(rng.normal(size=(3, 3)))[0].T + site for site in grid]
    return np.tile(w.numbers, len(grid)), np.concatenate(pos)


def measure(name: str, atoms: int, preset: str, repeats: int, periodic: str | None = None) -> dict:
    import torch
    from torch_geometric.data import Batch, Data

    import phizoo

    z, pos = water_box(atoms) if periodic else water_droplet(atoms)
    data = Data(z=torch.tensor(z), pos=torch.tensor(pos, dtype=torch.float32))
    variants = dict(VARIANTS)
    if periodic:
        edge = round((len(z) // 3) ** (1 / 3)) * 3.1
        data.cell = (torch.eye(3, dtype=torch.float64) * edge).reshape(1, 3, 3)
        data.pbc = torch.ones(1, 3, dtype=torch.bool)
        variants = {"base": {}, "coulomb": {"coulomb": True, "coulomb_options": {"periodic": periodic}}}
    batch = Batch.from_data_list([data])
    models = {}
    for key, kw in variants.items():
        torch.manual_seed(0)
        models[key] = phizoo.build_model(name, preset=preset, **kw).eval()
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():  # warm-up
        m(batch)
    for _ in range(repeats):
        for key, m in models.items():
            t = time.perf_counter()
            m(batch)
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "atoms": len(z), "periodic": periodic, "median_s": med,
            "ratio": {k: med[k] / med["base"] for k in med}}


def table(rows: list[dict]) -> str:
    keys = list(VARIANTS)
    out = ["| model | atoms | cell | " + " | ".join(f"{k} (ms)" for k in keys) + " | " +
           " | ".join(f"{k}/base" for k in keys[1:]) + " |",
           "| --- | ---: | --- | " + " | ".join("---:" for _ in keys) + " | " + " | ".join("---:" for _ in keys[1:]) + " |"]
    for r in rows:
        ms = [f"{1e3 * r['median_s'][k]:.1f}" if k in r["median_s"] else "" for k in keys]
        ratio = [f"{r['ratio'][k]:.2f}" if k in r["ratio"] else "" for k in keys[1:]]
        out.append(f"| {r['model']} | {r['atoms']} | {r['periodic'] or 'molecule'} | " + " | ".join(ms) + " | "
                   + " | ".join(ratio) + " |")
    return "\n".join(out)


def main() -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=None, help="backbones (default: all registered)")
    p.add_argument("--sizes", nargs="+", type=int, default=[42, 120, 372])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--periodic", nargs="*", default=[], choices=["ewald", "pme"],
                   help="also time a periodic water box with these methods")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import phizoo

    rows = []
    for name in a.models or phizoo.list_models():
        for n in a.sizes:
            rows.append(measure(name, n, a.preset, a.repeats))
            for method in a.periodic:
                rows.append(measure(name, n, a.preset, a.repeats, periodic=method))
            print(table(rows[-1 - len(a.periodic):]).splitlines()[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"preset": a.preset, "threads": a.threads, "repeats": a.repeats, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine()}
    stem = RESULTS / f"coulomb_overhead_{a.preset}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(f"Coulomb head cost ({meta}); medians of interleaved energy+force "
                                       f"evaluations, float32.\n\n{table(rows)}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
