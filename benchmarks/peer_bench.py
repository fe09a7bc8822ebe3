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
"""
from __future__ import annotations

import argparse
import hashlib
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
VENVS = HERE / ".venvs"
WORKER = HERE / "_peer_worker.py"
MARK = "@@phizoo-bench@@"
TORCH_PIN = "torch==2.13.0"  # the CPU wheel on this machine's disk; an unpinned torch pulls a CUDA build
# same values as phizoo.eval.leaderboard.steady_allocator (mmap above 32 MiB, keep 512 MiB of free heap),
# given to both workers through glibc's environment variables
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(512 << 20)}
CUTOFF = 5.0
ELEMENTS = [1, 6, 7, 8]

# ------------------------------------------------------------------------------------ peers

VENV_RECIPES = {
    # mace-torch pins e3nn 0.4.4 (phizoo needs e3nn >= 0.5): its own environment
    "mace": [["install", TORCH_PIN], ["install", "-c", "{constraints}", "mace-torch==0.3.16"]],
    # schnetpack 2.1.1 pins sympy <= 1.12, torch 2.13 needs sympy >= 1.13: schnetpack without its
    # declared dependencies, then the ones the model code imports (tensorboard, pre-commit and black,
    # needed by its training CLI and development tools only, are left out)
    "schnetpack": [["install", TORCH_PIN], ["install", "--no-deps", "schnetpack==2.1.1"],
                   ["install", "-c", "{constraints}", "numpy", "ase", "h5py", "pyyaml", "hydra-core",
                    "pytorch-lightning", "torchmetrics", "hydra-colorlog", "rich", "fasteners", "dirsync",
                    "torch-ema", "matscipy", "tqdm"]],
}

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

# ------------------------------------------------------------------------------------ structures

ALA3_SMILES = "CC(=O)NC(C)C(=O)NC(C)C(=O)NC(C)C(=O)NC"  # Ac-Ala3-NHMe (MD22), 42 atoms with H
RESIDUES = {"A": "N[C@@H](C)C(=O)", "G": "NCC(=O)", "S": "N[C@@H](CO)C(=O)"}
PEPTIDE_SEQ = "AASAGAASAGA"  # Ac-AASAGAASAGA-NHMe: 118 atoms, the size of MD22's AT-AT-CG-CG


def rdkit_molecule(smiles: str, seed: int = 0xF00D):
    """Atomic numbers and an MMFF94-relaxed conformer (ETKDG embedding, fixed seed)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"rdkit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def nanotube_dw():
    """Double-walled carbon nanotube (6,0)@(15,0), 4 unit cells (17 Å), ends capped with H: 378 atoms
    (MD22's double-walled nanotube has 370). Interlayer spacing 3.5 Å."""
    from ase.build import nanotube

    inner, outer = nanotube(6, 0, length=4), nanotube(15, 0, length=4)
    pos = np.concatenate([inner.positions, outer.positions])
    z = np.concatenate([inner.numbers, outer.numbers])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = ((d < 1.7) & (d > 0)).sum(1)
    zc = pos[:, 2].mean()
    caps = [pos[i] + 1.09 * np.sign(pos[i, 2] - zc) * np.array([0.0, 0.0, 1.0]) for i in np.flatnonzero(bonded < 3)]
    return np.concatenate([z, np.ones(len(caps), dtype=z.dtype)]), np.concatenate([pos, np.array(caps)])


def molecules() -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    pep = "CC(=O)" + "".join(RESIDUES[c] for c in PEPTIDE_SEQ) + "NC"
    out = {}
    for key, label, (z, pos) in (("ala3", "Ac-Ala3-NHMe", rdkit_molecule(ALA3_SMILES)),
                                 ("peptide", f"Ac-{PEPTIDE_SEQ}-NHMe", rdkit_molecule(pep)),
                                 ("dwnt", "DW nanotube (6,0)@(15,0)", nanotube_dw())):
        out[key] = (label, np.asarray(z, dtype=np.int64), pos - pos.mean(0))
    return out


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_batch(z: np.ndarray, pos: np.ndarray, copies: int, seed: int = 0):
    """``copies`` structures: the molecule itself, then randomly rotated copies with 0.02 Å noise."""
    rng = np.random.default_rng(seed)
    zs, ps = [z], [pos]
    for _ in range(copies - 1):
        ps.append(pos @ rotation(rng).T + rng.normal(scale=0.02, size=pos.shape))
        zs.append(z)
    batch = np.repeat(np.arange(copies), len(z))
    return np.concatenate(zs), np.concatenate(ps), batch


def neighbour_list(pos: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """phizoo's neighbour list ([2, E], source j, target i, sorted), given to peers that take one."""
    import torch

    from phizoo.nn.graph import radius_graph

    return radius_graph(torch.tensor(pos, dtype=torch.float32), CUTOFF, torch.tensor(batch)).numpy()


# ------------------------------------------------------------------------------------ environments

def venv_python(name: str | None) -> Path:
    return Path(sys.executable) if name is None else VENVS / name / "bin" / "python"


def _torch_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else f"error: {out.stderr[-500:]}"


def ensure_venv(name: str | None, log=print) -> Path:
    """The python of the peer's environment; created (``benchmarks/.venvs/<name>``) if missing."""
    python = venv_python(name)
    if name is None:
        return python
    recipe = VENV_RECIPES[name]
    stamp = VENVS / name / ".phizoo-bench"
    digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    log(f"creating {VENVS / name} (a few minutes, once) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENVS / name)], check=True)
    want = _torch_version(Path(sys.executable))
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(TORCH_PIN + "\n")  # nothing may upgrade torch
        for step in recipe:
            cmd = [str(python), "-m", "pip", "install", "-q"] + [a.format(constraints=constraints) for a in step[1:]]
            log("  " + " ".join(cmd[2:]))
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"pip failed in {VENVS / name}:\n{res.stderr[-3000:]}")
    got = _torch_version(python)
    if got != want:
        raise RuntimeError(f"{VENVS / name} has torch {got}, phizoo's environment {want}: refusing to compare")
    stamp.write_text(digest + "\n")
    return python


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


# ------------------------------------------------------------------------------------ report

TASK_LABEL = {"ef": "energy + forces", "train": "training step"}


def _fmt_t(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def write_report(results: list[dict], tag: str = "", img_dir: str = "results/") -> str:
    lines = ["# phizoo vs peers", "",
             "Generated by `python benchmarks/peer_bench.py` (do not edit by hand). Ratio = median phizoo time /",
             "median peer time (< 1: phizoo faster; the goal is ≤ 0.67, i.e. 1.5× faster); in brackets the",
             "interquartile range of the per-round ratios (each round times both once, alternating who goes",
             "first). Memory = peak CPU tensor memory of one call above what was held before (torch profiler",
             "allocation events, `phizoo.eval.leaderboard.cpu_peak_allocated`). float32, random weights.", ""]
    if not results:
        return "\n".join(lines + ["No results yet."]) + "\n"
    m = results[0]["machine"]
    lines += [f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs shared with other work (load average at start "
              + ", ".join(f"{r['peer']}: {r['machine']['load_avg_start'][0]:.1f}" for r in results)
              + f"), torch {m['torch']}, Python {m['python']}. Threads: "
              + ", ".join(sorted({str(r['threads']) for r in results})) + " (`torch.set_num_threads`, both sides). "
              f"glibc malloc thresholds fixed for both sides ({', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())})."
              + ("" if not all("elapsed_s" in r for r in results) else " Run time: " + ", ".join(
                  f"{r['peer']} {r['elapsed_s'] / 60:.1f} min" for r in results) + "."),
              ""]
    lines += ["Structures: Ac-Ala3-NHMe (42 atoms, rdkit ETKDG + MMFF94 from the MD22 SMILES), "
              f"Ac-{PEPTIDE_SEQ}-NHMe (118 atoms, same recipe), a double-walled carbon nanotube (6,0)@(15,0) "
              "with H-capped ends (378 atoms, `ase.build.nanotube`). A batch of 16 = the molecule and 15 randomly "
              "rotated copies with 0.02 Å noise. Neighbour list: all pairs within 5 Å. phizoo builds its own "
              "inside the model call (torch_cluster; its cost is included in phizoo's times and listed below); "
              "schnetpack and mace-torch get the same list precomputed (their data pipelines build it outside the "
              "model); PyG's ViSNet builds its own inside the call with `torch_cluster.radius_graph`.", ""]
    cols = sorted({(c["atoms"], c["batch"], c["molecule"]) for r in results for c in r["cases"] if c["task"] == "ef"})
    for task in ("ef", "train"):
        lines += [f"## Summary: time ratio phizoo / peer, {TASK_LABEL[task]}", "",
                  "| model | peer | " + " | ".join(f"{m} ({a}) ×{b}" for a, b, m in cols) + " |",
                  "|---|---|" + "---:|" * len(cols)]
        for r in results:
            by = {(c["atoms"], c["batch"]): c for c in r["cases"] if c["task"] == task}
            cells = []
            for a, b, _ in cols:
                c = by.get((a, b))
                cells.append("–" if c is None else "skipped" if "skipped" in c else f"{c['ratio']:.2f}")
            lines.append(f"| {r['title']} | {r['peer_label']} | " + " | ".join(cells) + " |")
        lines.append("")
    for r in results:
        pz, pp = r["phizoo"]["params"], r["peer_info"]["params"]
        lines += [f"## {r['title']}: phizoo vs {r['peer_label']}", "",
                  f"Hyperparameters (both): {r['hyper']}. Parameters: phizoo {pz:,}, {r['peer_label']} {pp:,} "
                  f"({100 * (pz / pp - 1):+.1f} %). Versions: {r['phizoo']['version']}; {r['peer_info']['version']}."
                  + (" Quick run." if r.get("quick") else ""), ""]
        if r["title"] == "ViSNet":
            lines += ["PyG's ViSNet always differentiates with `create_graph=True` (also in inference); phizoo "
                      "does so only for training. The training-step rows compare like with like.", ""]
        lines += ["| structure | atoms × batch | edges | task | phizoo | peer | ratio [IQR] | phizoo neighbour list "
                  "| memory phizoo / peer (MB) | memory ratio | n |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in r["cases"]:
            if "skipped" in c:
                lines.append(f"| {c['molecule']} | {c['atoms']} × {c['batch']} | {c['edges']:,} | {TASK_LABEL[c['task']]} "
                             f"| skipped: {c['skipped']} | | | | | | |")
                continue
            nl = c.get("neighbour_list_s")
            lines.append(
                f"| {c['molecule']} | {c['atoms']} × {c['batch']} | {c['edges']:,} | {TASK_LABEL[c['task']]} | "
                f"{_fmt_t(c['phizoo_median_s'])} | {_fmt_t(c['peer_median_s'])} | **{c['ratio']:.2f}** "
                f"[{c['round_ratio_q1']:.2f}–{c['round_ratio_q3']:.2f}] | {_fmt_t(nl) if nl else '–'} | "
                f"{c['phizoo_peak_mb']:.1f} / {c['peer_peak_mb']:.1f} | {c['memory_ratio']:.2f} | {c['repeats']} |")
        ck_z, ck_p = r["phizoo"]["check"], r["peer_info"]["check"]
        lines += ["", "Sanity check on Ac-Ala3-NHMe (both sides): finite "
                  f"{ck_z['finite']} / {ck_p['finite']}; rotation: energy error {ck_z['rotation_energy_err']:.1e} / "
                  f"{ck_p['rotation_energy_err']:.1e} eV, force error {ck_z['rotation_force_err']:.1e} / "
                  f"{ck_p['rotation_force_err']:.1e} (relative); permutation: {ck_z['permutation_energy_err']:.1e} / "
                  f"{ck_p['permutation_energy_err']:.1e} eV.", ""]
    lines += ["## Plots", "", "Time ratio phizoo / peer per case (bars: median; whiskers: interquartile range of the "
              "per-round ratios; blue energy + forces, orange training step):", "",
              f"![time ratios]({img_dir}peers_time{tag}.png)", "",
              "Absolute times:", "", f"![absolute times]({img_dir}peers_absolute{tag}.png)", "",
              "Peak tensor memory ratio phizoo / peer:", "", f"![memory]({img_dir}peers_memory{tag}.png)", ""]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], tag: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    for what, fname in (("time", f"peers_time{tag}.png"), ("memory", f"peers_memory{tag}.png")):
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.2), squeeze=False, sharey=True)
        for ax, r in zip(axes[0], results):
            labels, vals, lo, hi, colors = [], [], [], [], []
            for c in r["cases"]:
                if "skipped" in c:
                    continue
                labels.append(f"{c['atoms']}×{c['batch']}\n{'E+F' if c['task'] == 'ef' else 'train'}")
                if what == "time":
                    vals.append(c["ratio"])
                    lo.append(max(c["ratio"] - c["round_ratio_q1"], 0))
                    hi.append(max(c["round_ratio_q3"] - c["ratio"], 0))
                else:
                    vals.append(c["memory_ratio"])
                    lo.append(0)
                    hi.append(0)
                colors.append("C0" if c["task"] == "ef" else "C1")
            x = np.arange(len(vals))
            ax.bar(x, vals, color=colors, yerr=[lo, hi] if what == "time" else None, capsize=3)
            ax.axhline(1.0, color="k", lw=0.8)
            if what == "time":
                ax.axhline(0.67, color="C3", lw=0.8, ls="--", label="1.5× faster")
                ax.legend(fontsize=8, loc="upper left")
            ax.set_yscale("log")
            ax.set_xticks(x, labels, fontsize=7)
            ax.set_title(f"{r['title']}: phizoo / {r['peer_label']}", fontsize=9)
            ax.grid(True, axis="y", which="both", alpha=0.3)
        axes[0][0].set_ylabel("time ratio phizoo / peer (median)" if what == "time"
                              else "peak tensor memory ratio phizoo / peer")
        fig.tight_layout()
        fig.savefig(RESULTS / fname, dpi=110)
        plt.close(fig)


def plot_absolute(results: list[dict], tag: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        for task, marker in (("ef", "o"), ("train", "s")):
            rows = sorted((c for c in r["cases"] if c["task"] == task and "skipped" not in c),
                          key=lambda c: c["atoms"] * c["batch"])
            if not rows:
                continue
            x = [c["atoms"] * c["batch"] for c in rows]
            ax.loglog(x, [c["phizoo_median_s"] for c in rows], "-" + marker, color="C0",
                      label=f"phizoo, {TASK_LABEL[task]}")
            ax.loglog(x, [c["peer_median_s"] for c in rows], "--" + marker, color="C3",
                      label=f"{r['peer_label']}, {TASK_LABEL[task]}")
        ax.set_xlabel("atoms in the call (atoms × batch)")
        ax.set_title(f"{r['title']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("time per call, median (s)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"peers_absolute{tag}.png", dpi=110)
    plt.close(fig)


def load_results(names, tag: str = "") -> list[dict]:
    out = []
    for name in names:
        p = RESULTS / f"peer_{name}{tag}.json"
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out


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
