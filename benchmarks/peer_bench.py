"""phizoo vs its peers, side by side in one run: PaiNN vs schnetpack, ViSNet vs torch_geometric,
MACE-like vs mace-torch. Energy + forces (one structure and a batch of 16) and one training step,
on MD22-sized molecules (42, 118, 378 atoms), matched hyperparameters, same thread count.

    python benchmarks/peer_bench.py                    # all three peers, full run (< 30 min on 2 cores)
    python benchmarks/peer_bench.py --quick            # short run (a few minutes): results/RESULTS_quick.md
    python benchmarks/peer_bench.py --peers painn      # one peer (also: benchmarks/painn_peer_compare.py)
    python benchmarks/peer_bench.py --report-only      # rewrite RESULTS.md and the plots from the JSON

How it measures. For each peer the script starts two worker processes (``_peer_worker.py``):
phizoo's in phizoo's environment and the peer's in the peer's own virtual environment
(``benchmarks/.venvs/<name>``, created here on first use with ``pip install torch==2.13.0``
first, and checked afterwards to still hold that torch). Both get the same structures, the same
neighbour list where the peer takes one as input, float32, ``torch.set_num_threads(T)`` and the
same glibc malloc thresholds. For every case the orchestrator sends one timing request to one
worker, then to the other, alternating which goes first, ``repeats`` times, so machine load hits
both alike; the ratio is median(phizoo) / median(peer), and the spread is the interquartile range
of the per-round ratios. Peak memory is the CPU tensor memory allocated during one call above
what was held before (the torch profiler's allocation events; the meter of
``phizoo/eval/leaderboard.py``). Results: ``benchmarks/results/peer_<name>.json``, and the
summary ``benchmarks/RESULTS.md`` with ``benchmarks/results/peers_*.png``.

Code: this script (the peers' hyperparameters, the workers, the measurement), ``_peer_envs.py``
(paths, peer environments), ``_peer_structures.py`` (structures, neighbour list),
``_peer_report.py`` (``RESULTS.md`` and the plots), ``_peer_worker.py`` (the worker process).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _peer_envs import HERE, MALLOC_ENV, REPO, RESULTS, ensure_venv
from _peer_report import load_results, plot, plot_absolute, write_report
from _peer_structures import CUTOFF, make_batch, molecules, neighbour_list

WORKER = HERE / "_peer_worker.py"
MARK = "@@phizoo-bench@@"
ELEMENTS = [1, 6, 7, 8]

# ------------------------------------------------------------------------------------ peers

PEERS = {
    "painn": {
        "title": "PaiNN", "peer_label": "schnetpack PaiNN", "side": "schnetpack", "venv": "schnetpack",
        "hyper": "F = 128, 3 layers, 20 Bessel RBF, cosine cutoff 5 Å, head F → F/2 → 1",
        "phizoo": {"hidden_channels": 128, "num_layers": 3, "num_rbf": 20, "cutoff": CUTOFF},
        "peer": {"n_atom_basis": 128, "n_interactions": 3, "n_rbf": 20, "cutoff": CUTOFF},
    },
    "visnet": {
        "title": "ViSNet", "peer_label": "torch_geometric ViSNet", "side": "pyg", "venv": None,
        "hyper": "F = 128, 6 layers, 8 heads, lmax 2, 32 exp-normal RBF, cutoff 5 Å",
        "phizoo": {"hidden_channels": 128, "num_layers": 6, "num_heads": 8, "num_rbf": 32, "cutoff": CUTOFF,
                   "lmax": 2},
        "peer": {"hidden_channels": 128, "num_layers": 6, "num_heads": 8, "num_rbf": 32, "cutoff": CUTOFF,
                 "lmax": 2},
    },
    "mace": {
        "title": "MACE", "peer_label": "mace-torch MACE", "side": "mace", "venv": "mace",
        "hyper": "64x0e+64x1o, max_ell 3, correlation 3, 2 layers, 8 Bessel, p = 5, radial MLP [64, 64, 64], "
                 "cutoff 5 Å, one-hot H/C/N/O, avg_num_neighbors 25. Readout: mace-torch a linear per layer + "
                 "a 16-unit MLP; phizoo an MLP 128 → 192 → 1 on the concatenated scalars (its product basis has "
                 "fewer weights than mace-torch's; the wider head, < 1 % of the time, brings the counts within "
                 "10 %)",
        "phizoo": {"num_channels": 64, "max_ell": 3, "hidden_l": 1, "correlation": 3, "num_layers": 2,
                   "num_bessel": 8, "cutoff": CUTOFF, "envelope_exponent": 5, "radial_mlp": [64, 64, 64],
                   "avg_num_neighbors": 25.0, "elements": ELEMENTS, "head_hidden": 192},
        "peer": {"channels": 64, "max_ell": 3, "hidden_l": 1, "correlation": 3, "num_layers": 2, "num_bessel": 8,
                 "cutoff": CUTOFF, "envelope_exponent": 5, "radial_mlp": [64, 64, 64], "avg_num_neighbors": 25.0,
                 "elements": ELEMENTS},
    },
}


# ------------------------------------------------------------------------------------ workers

class Worker:
    def __init__(self, python: Path, side: str, infile: Path, threads: int, errlog: Path):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **MALLOC_ENV)
        env.pop("PYTHONPATH", None)
        self.side = side
        self.err = open(errlog, "w+")
        self.proc = subprocess.Popen([str(python), str(WORKER), "--side", side, "--input", str(infile),
                                      "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env, cwd=str(REPO))
        self._read()  # ready

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.err.seek(0)
        raise RuntimeError(f"{self.side} worker died:\n{self.err.read()[-4000:]}")

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ans = self._read()
        if isinstance(ans, dict) and "error" in ans:
            raise RuntimeError(f"{self.side} worker: {ans['error']}\n{ans.get('traceback', '')}")
        return ans

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()
        self.err.close()


# ------------------------------------------------------------------------------------ measurement

def quartiles(xs):
    q = np.percentile(np.asarray(xs, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def available_memory_gb() -> float:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_avg_start": list(os.getloadavg())}


def run_peer(name: str, args, mols, log=print) -> dict:
    t_start = time.time()
    spec = PEERS[name]
    python = Path(args.peer_python) if args.peer_python else ensure_venv(spec["venv"], log)
    batches = [1, 16] if not args.quick else [1, 16]
    sizes = list(mols) if not args.quick else ["ala3", "peptide"]
    if args.sizes:
        sizes = [s for s in mols if s in args.sizes]
    cases = []
    arrays = {}
    for key in sizes:
        label, z0, pos0 = mols[key]
        for b in batches:
            z, pos, batch = make_batch(z0, pos0, b)
            ei = neighbour_list(pos, batch)
            cname = f"{key}_x{b}"
            arrays.update({f"{cname}/z": z, f"{cname}/pos": pos, f"{cname}/batch": batch, f"{cname}/edge_index": ei})
            tasks = ["ef"] + (["train"] if b in args.train_batches else [])
            cases.append({"case": cname, "molecule": label, "key": key, "atoms": len(z0), "batch": b,
                          "edges": int(ei.shape[1]), "tasks": tasks})
    max_nb = max(int(np.bincount(arrays[f"{c['case']}/edge_index"][1]).max()) for c in cases)
    peer_hp = dict(spec["peer"])
    if spec["side"] == "pyg":
        peer_hp["max_num_neighbors"] = max_nb + 8  # never truncate (self-loop included)
    config = {"model": name, "phizoo": spec["phizoo"], "peer": peer_hp, "cutoff": CUTOFF}
    result = {"peer": name, "title": spec["title"], "peer_label": spec["peer_label"], "hyper": spec["hyper"],
              "config": config, "threads": args.threads, "quick": bool(args.quick), "machine": machine_info(),
              "malloc_env": MALLOC_ENV, "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        infile = Path(tmp) / "input.npz"
        np.savez(infile, config=json.dumps(config), **arrays)
        ours = Worker(Path(sys.executable), "phizoo", infile, args.threads, Path(tmp) / "phizoo.err")
        theirs = Worker(python, spec["side"], infile, args.threads, Path(tmp) / "peer.err")
        try:
            result["phizoo"] = ours.ask(op="info")
            result["peer_info"] = theirs.ask(op="info")
            pz, pp = result["phizoo"]["params"], result["peer_info"]["params"]
            log(f"[{name}] parameters: phizoo {pz:,}, {spec['peer_label']} {pp:,} ({100 * (pz / pp - 1):+.1f} %)")
            if abs(pz / pp - 1) > 0.10:
                log(f"[{name}] WARNING: parameter counts differ by more than 10 %")
            result["phizoo"]["check"] = ours.ask(op="check", case=cases[0]["case"])
            result["peer_info"]["check"] = theirs.ask(op="check", case=cases[0]["case"])
            rates: dict = {}  # (side, task) -> (largest seconds per edge, largest bytes per edge) seen so far
            for c in sorted(cases, key=lambda c: c["edges"]):
                pred = {k: (v[0] * c["edges"], v[1] * c["edges"]) for k, v in rates.items()}
                run_tasks, skipped = [], []
                for task in c["tasks"]:
                    pt = sum(pred.get((s, task), (0, 0))[0] for s in ("phizoo", "peer"))
                    pm = max(pred.get((s, task), (0, 0))[1] for s in ("phizoo", "peer"))
                    if pt > args.max_round_s or pm > args.max_memory_gb * 2**30:
                        skipped.append((task, pt, pm))
                    else:
                        run_tasks.append(task)
                for task, pt, pm in skipped:
                    row = {k: c[k] for k in ("case", "molecule", "key", "atoms", "batch", "edges")}
                    row.update({"task": task, "skipped": f"predicted {pt:.0f} s per round, {pm / 2**30:.1f} GB "
                                f"(limits {args.max_round_s:.0f} s, {args.max_memory_gb:.0f} GB)"})
                    result["cases"].append(row)
                    log(f"[{name}] {c['molecule']:>26s} x{c['batch']:<2d} {task:5s} skipped: {row['skipped']}")
                if not run_tasks:
                    continue
                warm = {"phizoo": ours.ask(op="prepare", case=c["case"], tasks=run_tasks),
                        "peer": theirs.ask(op="prepare", case=c["case"], tasks=run_tasks)}
                for task in run_tasks:
                    est = warm["phizoo"][task] + warm["peer"][task]
                    reps = int(min(args.max_repeats, max(args.repeats, args.case_budget // max(est, 1e-9))))
                    if est > args.max_round_s / 4:
                        reps = min(reps, 3)
                    tz, tp = [], []
                    for r in range(reps):
                        order = ((ours, tz), (theirs, tp)) if r % 2 == 0 else ((theirs, tp), (ours, tz))
                        for w, acc in order:
                            acc.append(w.ask(op="time", case=c["case"], task=task))
                    mz = ours.ask(op="memory", case=c["case"], task=task)
                    mp = theirs.ask(op="memory", case=c["case"], task=task)
                    for s, t, mem in (("phizoo", max(tz), mz), ("peer", max(tp), mp)):
                        old = rates.get((s, task), (0.0, 0.0))
                        rates[(s, task)] = (max(old[0], t / c["edges"]), max(old[1], mem / c["edges"]))
                    ratios = [a / b for a, b in zip(tz, tp)]
                    q1, qm, q3 = quartiles(ratios)
                    row = {k: c[k] for k in ("case", "molecule", "key", "atoms", "batch", "edges")}
                    row.update({"task": task, "repeats": reps, "phizoo_times_s": tz, "peer_times_s": tp,
                                "phizoo_median_s": statistics.median(tz), "peer_median_s": statistics.median(tp),
                                "ratio": statistics.median(tz) / statistics.median(tp),
                                "round_ratio_q1": q1, "round_ratio_median": qm, "round_ratio_q3": q3,
                                "phizoo_peak_mb": mz / 2**20, "peer_peak_mb": mp / 2**20,
                                "memory_ratio": mz / mp if mp else None,
                                "neighbour_list_s": warm["phizoo"].get("neighbour_list")})
                    result["cases"].append(row)
                    log(f"[{name}] {c['molecule']:>26s} x{c['batch']:<2d} {task:5s} phizoo {row['phizoo_median_s']:8.4f} s"
                        f"  peer {row['peer_median_s']:8.4f} s  ratio {row['ratio']:.2f} [{q1:.2f}-{q3:.2f}]"
                        f"  memory {row['phizoo_peak_mb']:7.1f} / {row['peer_peak_mb']:7.1f} MB  (n={reps})")
                ours.ask(op="drop", case=c["case"])
                theirs.ask(op="drop", case=c["case"])
        finally:
            ours.close()
            theirs.close()
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    result["elapsed_s"] = time.time() - t_start
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    ap.add_argument("--quick", action="store_true", help="42- and 118-atom structures, 3 repeats")
    ap.add_argument("--sizes", nargs="+", choices=["ala3", "peptide", "dwnt"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None, help="minimum rounds per case (default 5, quick 3)")
    ap.add_argument("--max-repeats", type=int, default=None, help="default 11, quick 3")
    ap.add_argument("--case-budget", type=float, default=None,
                    help="seconds per case: more rounds for fast cases, up to --max-repeats (default 12, quick 4)")
    ap.add_argument("--train-batches", nargs="+", type=int, default=[1, 16],
                    help="batch sizes that also get a training step")
    ap.add_argument("--max-round-s", type=float, default=None,
                    help="skip a case whose predicted time for one round (phizoo + peer) is larger (default 40, quick 10)")
    ap.add_argument("--max-memory-gb", type=float, default=10.0,
                    help="skip a case whose predicted peak tensor memory on either side is larger (default 10, "
                         "and at most half of the memory available when the run starts)")
    ap.add_argument("--peer-python", default=None,
                    help="use this interpreter for the peer instead of benchmarks/.venvs/<peer> (one peer only)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--setup-only", action="store_true", help="create the peer environments and stop")
    args = ap.parse_args(argv)
    if args.peer_python and len(args.peers) != 1:
        ap.error("--peer-python needs exactly one --peers entry")
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.max_repeats = max(args.repeats, args.max_repeats or (3 if args.quick else 11))
    args.max_round_s = args.max_round_s or (10.0 if args.quick else 40.0)
    args.max_memory_gb = min(args.max_memory_gb, 0.5 * available_memory_gb())
    args.case_budget = args.case_budget if args.case_budget is not None else (4.0 if args.quick else 12.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.setup_only:
        for name in args.peers:
            print(name, ensure_venv(PEERS[name]["venv"]))
        return 0
    tag = "_quick" if args.quick else ""
    if not args.report_only:
        t0 = time.time()
        mols = molecules()
        for name in args.peers:
            res = run_peer(name, args, mols)
            (RESULTS / f"peer_{name}{tag}.json").write_text(json.dumps(res, indent=1))
        print(f"total {time.time() - t0:.0f} s")
    results = load_results(list(PEERS), tag)
    # a quick run never overwrites the full run's summary
    report = HERE / "RESULTS.md" if not tag else RESULTS / "RESULTS_quick.md"
    report.write_text(write_report(results, tag, "results/" if not tag else ""))
    if results:
        plot(results, tag)
        plot_absolute(results, tag)
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
