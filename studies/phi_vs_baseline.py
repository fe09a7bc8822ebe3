"""The Φ-versus-baseline study and the shipped pretrained weights, in one command.

    python studies/phi_vs_baseline.py all          # data -> train -> publish -> report
    python studies/phi_vs_baseline.py train --jobs 2 [--datasets qm9] [--models painn] [--seeds 0]
    python studies/phi_vs_baseline.py publish      # seed-0 checkpoints -> pretrained/ + manifest
    python studies/phi_vs_baseline.py report       # LEADERBOARD.md, plots, studies/results/*.json

Every run is ``phizoo train --config zoo_configs/<model>-<dataset>.yaml`` with ``model.phi`` set
to false or true and a seed: base and Φ share the config, split and budget. Runs go to
``runs/zoo/<dataset>/<model>-<base|phi>-s<seed>``; a finished run's card is also committed to
``studies/results/ledger/zoo/`` (:mod:`studies.ledger`), so finished runs are skipped even in a
fresh checkout, and interrupted runs resume from their run directory: the command can be repeated
after a stop. Each process uses one thread (``--threads``). The
configs train to a validation plateau (``schedule.type: plateau``) within the epoch budget their
header states; each card's ``training.stopped`` says whether the plateau or the budget ended it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studies.plan import (DATA, DATASET_IDS, DEFAULT_DATASET, INDEPENDENT, MD22_MOLECULE, NPZ, PRETRAINED,  # noqa: E402
                          ZOO, checkpoint_id, finished, phizoo_cmd, plan, record, run_dir, weights)


# ----------------------------------------------------------------------------- steps

def prepare_data(datasets=None) -> None:
    if (datasets is None or "qm9" in datasets) and not DATA["qm9"].exists():
        subprocess.run(phizoo_cmd("data", "convert", "qm9", "-o", str(DATA["qm9"]), "--train-size", "10000",
                                  "--val-size", "1000", "--test-size", "10000"), check=True, cwd=ROOT)
    if (datasets is None or "md22" in datasets) and not DATA["md22"].exists():
        if not NPZ.exists():  # GFN2-xTB Langevin MD at 500 K, 2000 frames (~9 min on one idle core)
            subprocess.run(phizoo_cmd("data", "xtb-md", "--molecule", MD22_MOLECULE, "--frames", "2000",
                                      "-o", str(NPZ)), check=True, cwd=ROOT, env=_thread_env())
        subprocess.run(phizoo_cmd("data", "convert", "md22", str(NPZ), "-o", str(DATA["md22"]), "--molecule",
                                  MD22_MOLECULE, "--train-size", "1000"), check=True, cwd=ROOT)
    held_out = INDEPENDENT["md22"]
    if (datasets is None or "md22" in datasets) and not held_out.exists():
        npz = held_out.with_suffix(".npz")  # seed 1: another conformer, velocities and noise (~4 min)
        if not npz.exists():
            subprocess.run(phizoo_cmd("data", "xtb-md", "--molecule", MD22_MOLECULE, "--frames", "300", "--seed", "1",
                                      "-o", str(npz)), check=True, cwd=ROOT, env=_thread_env())
        subprocess.run(phizoo_cmd("data", "convert", "md22", str(npz), "-o", str(held_out), "--molecule",
                                  MD22_MOLECULE, "--test-only"), check=True, cwd=ROOT)


def _thread_env(threads: int = 1) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def train_one(dataset: str, model: str, phi: bool, seed: int, threads: int = 1) -> str:
    out = run_dir(dataset, model, phi, seed)
    tag = f"{dataset}/{out.name}"
    if finished(dataset, model, phi, seed):
        return f"{tag}: done before"
    out.mkdir(parents=True, exist_ok=True)
    cmd = phizoo_cmd("train", "--config", f"zoo_configs/{model}-{dataset}.yaml", "--data", str(DATA[dataset]),
                     "-o", str(out), "--seed", str(seed), "--set", f"model.phi={str(phi).lower()}", "--no-progress")
    if (out / "trainer_state.pt").exists():
        cmd.append("--resume")
    t0 = time.time()
    with open(out / "train.log", "a") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=_thread_env(threads), stdout=log, stderr=subprocess.STDOUT).returncode
    done = rc == 0 and finished(dataset, model, phi, seed)
    if done:
        record(dataset, model, phi, seed)
    status = "ok" if done else f"FAILED (exit {rc}, see {out / 'train.log'})"
    return f"{tag}: {status} in {time.time() - t0:.0f} s"


def train(jobs: int, datasets=None, models=None, seeds=None, threads: int = 1) -> None:
    runs = [r for r in plan() if (datasets is None or r[0] in datasets) and (models is None or r[1] in models)
            and (seeds is None or r[3] in seeds)]
    print(f"{len(runs)} runs, {jobs} at a time, {threads} thread(s) each", flush=True)
    with ThreadPoolExecutor(jobs) as pool:
        for msg in pool.map(lambda r: train_one(*r, threads=threads), runs):
            print(msg, flush=True)


def publish() -> None:
    """Copy each finished seed-0 run's best checkpoint to ``pretrained/``, record its sha256 in the
    manifest and its card in the ledger (runs published before are skipped)."""
    import shutil

    from phizoo.pretrained import register_in_manifest

    for dataset, model, phi, seed in plan():
        src = weights(dataset, model, phi, seed)
        if seed != 0 or src is None or src.parent == PRETRAINED:
            continue
        entry_id = checkpoint_id(dataset, model, phi)
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(src.with_suffix(suffix), PRETRAINED / f"{entry_id}{suffix}")
        register_in_manifest(PRETRAINED / entry_id, entry_id, DATASET_IDS[dataset], default=dataset == DEFAULT_DATASET)
        record(dataset, model, phi, seed)
        print(f"published {entry_id}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["data", "train", "publish", "report", "all"])
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (one thread each)")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATA), help="train only these datasets")
    p.add_argument("--models", nargs="+", choices=ZOO, help="train only these (painn-coulomb: the Coulomb-head model)")
    p.add_argument("--seeds", nargs="+", type=int, help="train only these seeds (published weights: 0)")
    p.add_argument("--threads", type=int, default=1, help="threads per training process")
    p.add_argument("--nve-models", default="painn,e2gnn,mace,visnet",
                   help="backbones whose MD22-xTB base and Φ models run the 10 ps NVE test at 300 K "
                        "(comma-separated; every shipped MD checkpoint by default)")
    args = p.parse_args(argv)
    if args.step in ("data", "train", "all"):
        prepare_data(args.datasets)
    if args.step in ("train", "all"):
        train(args.jobs, args.datasets, args.models, args.seeds, args.threads)
    if args.step in ("publish", "all"):
        publish()
    if args.step in ("report", "all"):
        from studies.report import report

        report(tuple(m for m in args.nve_models.split(",") if m), jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
