"""When does long range pay? Short-range vs Φ vs Coulomb heads on tasks that need long range.

    python studies/long_range.py data [--tasks dimers ag3 carbon-chains nacl point-charges dha at-at-cg-cg]
    python studies/long_range.py train --jobs 2 [--tasks dimers] [--models painn] [--variants base phi]
    python studies/long_range.py nve --jobs 2  # NVE stability on the cluster and periodic tasks
    python studies/long_range.py report        # studies/results/long_range.{json,md} + plots

Tasks (``phizoo data generate``, docs/datasets/long-range.md): charged and polar ``dimers`` pulled
apart beyond the cutoff, ``ag3`` (Ag3+ / Ag3− at identical geometries), ``carbon-chains``
(C10H2 / C10H3+), ``nacl`` (Na9Cl8+ / Na8Cl8, the same positions but one corner Na), ``point-charges`` (LES's periodic ±1 e liquid, exact Ewald + Born–Mayer);
and two MD22 molecules at 500 K from ``phizoo data xtb-md`` + ``phizoo data convert md22``: ``dha``
(docosahexaenoic acid, 56 atoms, a long flexible chain) and ``at-at-cg-cg`` (118 atoms, a
non-covalent stack of two base-pair dimers whose fragments meet and part).

Variants, at equal budget on the same splits: ``base`` (short-range backbone), ``phi`` (continuous
Φ, the default), ``phi-paper`` (the paper's k modes per component; molecules only), ``coulomb``
(latent-charge Coulomb/Ewald head), ``phi+coulomb``; on the point charges also ``base-les`` and
``coulomb-les``, LES's short-range protocol (4 Å cutoff, one layer). On charged tasks every variant gets the
total-charge/spin embedding (``model.charge_spin``), as a user training charged data would.

Plan (``plan()``): PaiNN on every task at three training-set sizes (¼, ½ and all of the train
split, seed 0) and seeds 1–2 at the full size; E2GNN at the full size; ViSNet and MACE at the full
size where a task is cheap (``ag3``). Each run: ``runs/long_range/<task>/<model>-<variant>-n<N>-s<seed>/``
(the trainer's checkpoints and ``eval.json``); interrupted runs resume. ``eval.json`` and
``nve.json`` are also committed under ``studies/results/ledger/long_range/<task>/``
(:mod:`studies.ledger`): a run recorded there is done, also in a fresh checkout without ``runs/``,
and the report reads them from there. Each process uses one thread.

``eval.json`` holds the test errors (energy MAE meV, force MAE meV/Å), per-frame energy errors with
each frame's ``meta`` (the dimer separation), and for the Coulomb variants the latent charges
against the reference charges (MAE e, Pearson r).

NVE (``nve``): on the cluster and periodic tasks (``Task.nve_temperature``), every variant's
full-size seed-0 PaiNN run is integrated for 10 ps (velocity Verlet, 1 fs, float64 weights,
:func:`phizoo.eval.nve_stability`) from the first test frame; ``nve.json`` beside ``eval.json``
holds the status, drift and largest excursion of the total energy. It is redone only when the
checkpoint's weights (sha256) change.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LR_DATA = ROOT / "data" / "lr"
RUNS = ROOT / "runs" / "long_range"
RESULTS = ROOT / "studies" / "results"
sys.path.insert(0, str(ROOT))
from studies.ledger import LEDGER, read_json, write_json  # noqa: E402


@dataclass(frozen=True)
class Task:
    path: Path
    generate: tuple[str, ...]          # phizoo data generate <...>, or the molecule of ``phizoo data xtb-md``
    epochs: int
    batch_size: int
    charged: bool = True
    periodic: bool = False
    cheap: bool = False                # all four backbones at the full size
    nve_temperature: float | None = None  # K: an NVE stability run (cluster and periodic tasks)
    loss: dict = field(default_factory=lambda: {"energy": 0.2, "forces": 0.8, "per_atom_energy": False})
    md22: bool = False                 # data from xtb-md (1000 frames) + convert md22 with train+val = 500


XTB_DATA = ROOT / "data" / "xtb"
SLOW_DATA = ("point-charges", "at-at-cg-cg")  # ~1.5 h of one core each: made only when named
MD22_LOSS = {"energy": 0.05, "forces": 0.95, "per_atom_energy": False}  # as zoo_configs/*-md22.yaml


# Budgets (epochs): one PaiNN run on the xTB sets takes ~1–3 min on one core of this machine (a task
# plan is ~25–35 runs); the point charges (128 ions per frame) are ~10× dearer per epoch.
TASKS = {
    "dimers": Task(LR_DATA / "dimers.lmdb", ("dimers", "--curves", "8", "--points", "12"), 60, 16),
    "ag3": Task(LR_DATA / "ag3.lmdb", ("ag3", "--geometries", "500"), 60, 16, cheap=True, nve_temperature=300.0),
    "carbon-chains": Task(LR_DATA / "carbon_chains.lmdb", ("carbon-chains", "--frames", "1000"), 40, 16),
    "nacl": Task(LR_DATA / "nacl.lmdb", ("nacl", "--geometries", "500"), 40, 16, nve_temperature=300.0),
    # 128 ions per frame: a total-energy MSE outweighs the force term ~100× (errors of ~1 eV against
    # ~0.2 eV/Å) and starves the forces (a first round of runs ended at 180 meV/Å for every variant),
    # so the energy term is per atom here, as in LES's protocol.
    "point-charges": Task(LR_DATA / "point_charges.lmdb", ("point-charges", "--frames", "1000"), 10, 4,
                          charged=False, periodic=True, nve_temperature=1500.0,
                          loss={"energy": 0.2, "forces": 0.8, "per_atom_energy": True}),
    "dha": Task(XTB_DATA / "DHA_gfn2xtb_500K.lmdb", ("DHA",), 40, 16, charged=False, md22=True, loss=MD22_LOSS),
    "at-at-cg-cg": Task(XTB_DATA / "AT-AT-CG-CG_gfn2xtb_500K.lmdb", ("AT-AT-CG-CG",), 30, 16, charged=False,
                        md22=True, loss=MD22_LOSS),
}
VARIANTS = {
    "base": {},
    "phi": {"phi": True},
    "phi-paper": {"phi": True, "phi_options": {"formulation": "paper"}},
    "coulomb": {"coulomb": True},
    "phi+coulomb": {"phi": True, "coulomb": True},
    # LES's short-range protocol on the point charges: a 4 Å cutoff and one message-passing layer, so
    # that "short range" means a 4 Å receptive field (three 5 Å layers see 15 Å, most of the 16 Å box)
    "base-les": {"overrides": {"cutoff": 4.0, "num_layers": 1}},
    "coulomb-les": {"coulomb": True, "overrides": {"cutoff": 4.0, "num_layers": 1}},
}
BASELINE = {"coulomb-les": "base-les"}  # the base each head is judged against (default "base")
LES_ONLY = ("base-les", "coulomb-les")  # the point-charge task's comparison with LES, full size only
FRACTIONS = (0.25, 0.5, 1.0)
NVE = {"steps": 10000, "timestep_fs": 1.0, "record_every": 20}


def variants_for(task: str) -> list[str]:
    """The paper formulation has no periodic version (it refuses cells); the LES-protocol variants
    run on the point charges only."""
    return [v for v in VARIANTS if not (TASKS[task].periodic and v == "phi-paper")
            and (v not in LES_ONLY or task == "point-charges")]


def plan(tasks=None, models=None, variants=None) -> list[tuple[str, str, str, float, int]]:
    """(task, model, variant, fraction of the train split, seed); the full-size seed-0 PaiNN runs
    of every task and variant first (the headline comparison), then the learning curves, the
    other backbones and the extra seeds."""
    runs = []
    for task in tasks or TASKS:
        second = ["e2gnn"] + (["visnet", "mace"] if TASKS[task].cheap else [])
        for v in variants_for(task):
            if v in LES_ONLY:
                runs += [(task, "painn", v, 1.0, s) for s in (0, 1, 2)]
                continue
            runs += [(task, "painn", v, f, 0) for f in FRACTIONS]
            runs += [(task, "painn", v, 1.0, s) for s in (1, 2)]
            runs += [(task, m, v, 1.0, 0) for m in second]
    runs = [r for r in runs if (models is None or r[1] in models) and (variants is None or r[2] in variants)]
    order = list(tasks or TASKS)
    return sorted(runs, key=lambda r: (r[4], r[3] != 1.0, r[1] != "painn", order.index(r[0])))


def run_dir(task: str, model: str, variant: str, fraction: float, seed: int) -> Path:
    n = _subset_size(len(_train_split(TASKS[task].path)), fraction)
    return RUNS / task / f"{model}-{variant}-n{n}-s{seed}"


def ledger_path(task: str, model: str, variant: str, fraction: float, seed: int, what: str = "eval") -> Path:
    """Where a finished run's ``eval.json`` (``what="eval"``) or ``nve.json`` (``"nve"``) is committed
    (:mod:`studies.ledger`); a run recorded there is done."""
    name = run_dir(task, model, variant, fraction, seed).name
    return LEDGER / "long_range" / task / (f"{name}.json" if what == "eval" else f"{name}.{what}.json")


@lru_cache(maxsize=None)
def _train_split(path: Path) -> tuple[int, ...]:
    from phizoo.train.data import open_dataset, split_indices

    return tuple(split_indices(open_dataset(path), "train"))


def _subset_size(n_train: int, fraction: float) -> int:
    return max(1, int(np.ceil(fraction * n_train)))


def train_subset(task: str, fraction: float) -> list[int]:
    """The first ⌈fraction·N⌉ indices of a fixed (seed-0) permutation of the train split: the
    smaller training sets are nested in the larger ones."""
    train = _train_split(TASKS[task].path)
    order = np.random.default_rng(0).permutation(len(train))
    return sorted(int(train[i]) for i in order[:_subset_size(len(train), fraction)])


PRESET = "cpu"   # the tests set "test"


@lru_cache(maxsize=None)
def task_elements(path: Path) -> tuple[int, ...]:
    """The atomic numbers in a task's data (MACE's one-hot element embedding is fixed at build time)."""
    from phizoo.train.data import open_dataset

    ds = open_dataset(path)
    return tuple(sorted({int(z) for i in range(len(ds)) for z in ds.get_record(i)["z"]}))


def config(task: str, model: str, variant: str, seed: int) -> dict:
    t = TASKS[task]
    spec = {"name": model, "preset": PRESET, "dtype": "float32", "charge_spin": t.charged, **VARIANTS[variant]}
    if model == "mace":  # its presets know H, C, N, O, F, P, S, Cl; the tasks also hold Na, Ag
        spec["overrides"] = {**spec.get("overrides", {}), "elements": list(task_elements(t.path))}
    return {"model": spec,
            "loss": dict(t.loss), "epochs": t.epochs, "batch_size": t.batch_size, "val_batch_size": 64,
            "optimizer": {"lr": 1e-3, "weight_decay": 0.0}, "schedule": {"warmup_epochs": 1},
            "seed": seed, "monitor": "val_loss", "progress": False,
            "evaluate_test": False}  # the test split is evaluated once, by evaluate() below


# ----------------------------------------------------------------------------- one run (worker)

def run_one(task: str, model: str, variant: str, fraction: float, seed: int) -> dict:
    """Train (or resume) one run and evaluate its best checkpoint on the test split."""
    import torch

    from phizoo.train import train_from_config
    from phizoo.train.data import open_dataset, split_indices

    torch.set_num_threads(1)
    out = run_dir(task, model, variant, fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(TASKS[task].path)
    splits = {"train": train_subset(task, fraction), "val": split_indices(ds, "val"),
              "test": split_indices(ds, "test")}
    t0 = time.perf_counter()
    trainer, summary = train_from_config(config(task, model, variant, seed), ds, splits, output_dir=out,
                                         resume=(out / "trainer_state.pt").exists())
    result = evaluate(out / "best", ds, splits["test"], neutral=not TASKS[task].charged)
    result.update(task=task, model=model, variant=variant, n_train=len(splits["train"]), seed=seed,
                  train_time_s=time.perf_counter() - t0, best_epoch=summary.get("best_epoch"))
    write_json(out / "eval.json", result)
    write_json(ledger_path(task, model, variant, fraction, seed), result, indent=None)
    return result


def evaluate(stem: Path, ds, indices: list[int], neutral: bool = False) -> dict:
    """Test errors of a checkpoint (float64, ``phizoo.eval.evaluate``), every frame's energy error
    with its meta, and the Coulomb charges against the reference charges where both exist.

    On a ``neutral`` task the energy is even in the charges (E(−q) = E(q) when every Σq = 0), so
    energies and forces cannot fix the latent charges' global sign: ``mae_e`` is then taken after
    aligning it, s = sign(Σ q_pred q_ref), and ``sign`` records s (r keeps the raw sign)."""
    import torch

    from phizoo.eval import evaluate as evaluate_model
    from phizoo.pretrained import load_checkpoint

    model = load_checkpoint(stem, dtype=torch.float64).eval()
    metrics, pred = evaluate_model(model, ds, indices, return_predictions=True)
    errors = 1e3 * (pred["energy_pred"] - pred["energy_true"])
    res = {"energy_mae_meV": metrics["energy_mae_meV"], "forces_mae_meV_per_A": metrics.get("forces_mae_meV_per_A"),
           "frames": [{"index": int(i), "energy_error_meV": float(e), "meta": ds.get_record(int(i))["meta"]}
                      for i, e in zip(pred["index"], errors)]}
    if "charges_mae_e" in metrics:
        res["charges"] = {"mae_e": metrics["charges_mae_e"], "pearson_r": metrics["charges_pearson_r"]}
        if neutral:
            q, ref = pred["charges_pred"], pred["charges_true"]
            sign = 1.0 if float(q @ ref) >= 0 else -1.0
            res["charges"].update(mae_e=float(np.abs(sign * q - ref).mean()), sign=sign)
    return res


def nve_one(task: str, model: str, variant: str) -> dict | None:
    """NVE stability of the full-size seed-0 run (module docstring); reuses ``nve.json`` when the
    weights are unchanged."""
    import torch
    from ase import Atoms

    from phizoo.eval import nve_stability
    from phizoo.pretrained import load_checkpoint
    from phizoo.train.data import open_dataset, split_indices

    out = run_dir(task, model, variant, 1.0, 0)
    if not (out / "eval.json").exists():
        return None
    sha = json.loads((out / "best.json").read_text())["integrity"]["weights_sha256"]
    done = ledger_path(task, model, variant, 1.0, 0, "nve")
    previous = read_json(done) or {}
    if previous.get("weights_sha256") == sha:
        return previous
    torch.set_num_threads(1)
    ds = open_dataset(TASKS[task].path)
    rec = ds.get_record(int(split_indices(ds, "test")[0]))
    atoms = Atoms(numbers=rec["z"], positions=rec["pos"], cell=np.reshape(rec.get("cell", np.zeros(9)), (3, 3)),
                  pbc=np.reshape(rec.get("pbc", np.zeros(3, bool)), 3))
    for key, info in (("total_charge", "charge"), ("spin", "spin")):  # as the ASE calculator reads them
        if key in rec:
            atoms.info[info] = float(rec[key][0])
    result = nve_stability(load_checkpoint(out / "best", dtype=torch.float64).eval(), atoms,
                           temperature_K=TASKS[task].nve_temperature, **NVE)
    result.update(task=task, model=model, variant=variant, weights_sha256=sha, frame=rec.get("meta"))
    write_json(out / "nve.json", result, indent=None)
    write_json(done, result, indent=None)
    return result


# ----------------------------------------------------------------------------- driver

def generate(tasks) -> None:
    for task in tasks:
        t = TASKS[task]
        if not t.path.exists():
            t.path.parent.mkdir(parents=True, exist_ok=True)
            for command in data_commands(t):
                subprocess.run([sys.executable, "-m", "phizoo.cli.main", *command], check=True, cwd=ROOT,
                               env=_one_thread())


def data_commands(t: Task) -> list[list[str]]:
    """The ``phizoo`` command lines that make a task's LMDB (each resumes when rerun)."""
    if not t.md22:
        return [["data", "generate", *t.generate, "-o", str(t.path), "--seed", "0"]]
    npz = str(t.path.with_suffix(".npz"))
    return [["data", "xtb-md", "--molecule", t.generate[0], "-o", npz, "--frames", "1000", "--stride", "10",
             "--equilibration", "1000", "--seed", "0", "-q"],
            ["data", "convert", "md22", npz, "-o", str(t.path), "--molecule", t.generate[0], "--train-size", "500",
             "-q"]]


def _one_thread() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _in_workers(jobs: int, step: str, todo: list[tuple[tuple, Path]], log_name: str) -> None:
    """``python long_range.py <step> <args>`` for each (args, run directory) in ``todo``, ``jobs`` at a
    time, one thread each, output appended to ``<run directory>/<log_name>``."""
    def one(item):
        r, out = item
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(out / log_name, "a") as log:
            rc = subprocess.run([sys.executable, __file__, step, *map(str, r)], cwd=ROOT, env=_one_thread(),
                                stdout=log, stderr=subprocess.STDOUT).returncode
        return f"{step} {'/'.join(map(str, r))}: {'ok' if rc == 0 else f'FAILED (exit {rc}, see {out / log_name})'} " \
               f"in {time.time() - t0:.0f} s"

    with ThreadPoolExecutor(jobs) as pool:
        for msg in pool.map(one, todo):
            print(msg, flush=True)


def train(jobs: int, tasks=None, models=None, variants=None) -> None:
    runs = [r for r in plan(tasks, models, variants) if TASKS[r[0]].path.exists()]
    todo = [r for r in runs if not ledger_path(*r).exists()]
    print(f"{len(runs)} runs planned, {len(todo)} to do, {jobs} at a time", flush=True)
    _in_workers(jobs, "worker", [(r, run_dir(*r)) for r in todo], "train.log")


def nve(jobs: int, tasks=None, variants=None) -> None:
    todo = [((t, "painn", v), run_dir(t, "painn", v, 1.0, 0)) for t in tasks or TASKS if TASKS[t].nve_temperature
            for v in variants or variants_for(t)]
    todo = [(r, out) for r, out in todo if (out / "eval.json").exists()]  # the weights are here
    print(f"{len(todo)} NVE runs, {jobs} at a time", flush=True)
    _in_workers(jobs, "nve-worker", todo, "nve.log")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["data", "train", "nve", "report", "worker", "nve-worker"])
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS))
    p.add_argument("--models", nargs="+")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS))
    a = p.parse_args(argv)
    if a.step == "worker":
        task, model, variant, fraction, seed = a.args
        run_one(task, model, variant, float(fraction), int(seed))
    elif a.step == "nve-worker":
        nve_one(*a.args)
    elif a.step == "nve":
        nve(a.jobs, a.tasks, a.variants)
    elif a.step == "data":
        generate(a.tasks or [t for t in TASKS if t not in SLOW_DATA])
    elif a.step == "train":
        train(a.jobs, a.tasks, a.models, a.variants)
    else:
        from studies.long_range_report import report

        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
