"""How the periodic Coulomb sum scales with the number of atoms: Ewald vs PME (torch-pme).

    OMP_NUM_THREADS=1 python benchmarks/coulomb_scaling.py            # 375 ... 12,000 atoms of water

Energy + forces (autograd) of ``phizoo.heads.electrostatics.periodic_energy`` for random ±q
charges on cubic water boxes at liquid density (``coulomb_overhead.water_box``), float64, the
head's defaults (σ = 1 Å, real-space cutoff 8 Å). Reported: median seconds per evaluation, time
per atom, and the log-log slope between successive sizes (1 = linear; PME should stay ≈ 1
(N log N), Ewald with fixed accuracy grows as N^1.5 or worse). Writes
``benchmarks/results/coulomb_scaling.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coulomb_overhead import water_box  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def measure(method: str, n_atoms: int, repeats: int) -> dict:
    import torch

    from phizoo.heads.electrostatics import periodic_energy

    z, pos = water_box(n_atoms)
    edge = round((len(z) // 3) ** (1 / 3)) * 3.1
    pos = torch.tensor(pos, dtype=torch.float64, requires_grad=True)
    cell = torch.eye(3, dtype=torch.float64) * edge
    q = torch.where(torch.tensor(z) == 8, -0.8, 0.4).double()  # a neutral water-like charge pattern

    def once() -> float:
        t0 = time.perf_counter()
        e = periodic_energy(q, pos, cell, sigma=1.0, method=method)
        torch.autograd.grad(e, pos)
        return time.perf_counter() - t0

    once()
    times = [once() for _ in range(repeats)]
    t = statistics.median(times)
    return {"method": method, "atoms": len(z), "seconds": t, "us_per_atom": 1e6 * t / len(z)}


def table(rows: list[dict]) -> str:
    out = ["| method | atoms | time (s) | µs per atom | slope d log t / d log N |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        slope = "" if r.get("slope") is None else f"{r['slope']:.2f}"
        out.append(f"| {r['method']} | {r['atoms']} | {r['seconds']:.3f} | {r['us_per_atom']:.0f} | {slope} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[375, 1500, 3000, 6000, 12000])
    p.add_argument("--methods", nargs="+", default=["pme", "ewald"], choices=["pme", "ewald"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60.0, help="skip larger sizes of a method past this time")
    args = p.parse_args()
    import torch

    rows = []
    for method in args.methods:
        prev = None
        for n in args.sizes:
            r = measure(method, n, args.repeats)
            if prev is not None:
                r["slope"] = math.log(r["seconds"] / prev["seconds"]) / math.log(r["atoms"] / prev["atoms"])
            rows.append(r)
            prev = r
            print(json.dumps(r), flush=True)
            if r["seconds"] > args.max_seconds:
                break
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
            "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coulomb_scaling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / "coulomb_scaling.md").write_text(
        f"Periodic Coulomb (energy + forces, float64) scaling ({meta})\n\n{table(rows)}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
