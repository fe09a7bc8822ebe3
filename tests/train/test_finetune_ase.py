"""Own data end to end through the command line, as the README shows: extxyz files made by ASE
(EMT labels) -> ``phizoo data convert ase`` -> ``phizoo train`` on molecules -> ``phizoo finetune``
on a periodic water box (cell, pbc, stress stored) -> ``phizoo eval``; fine-tuning lowers the
error on the new data."""
import json
import subprocess
import sys

import ase.io
import numpy as np
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from tests.models.test_periodic import water_box


def labelled(atoms_list):
    out = []
    for a in atoms_list:
        a.calc = EMT()
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces()}
        if a.pbc.all():
            res["stress"] = a.get_stress()
        a.calc = SinglePointCalculator(a, **res)
        out.append(a)
    return out


def cli(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "phizoo.cli.main", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def test_convert_train_finetune_eval(tmp_path):
    mols = []
    for k in range(40):
        a = molecule(["CH3CH2OH", "H2O", "CH4"][k % 3])
        a.rattle(0.05, seed=k)
        mols.append(a)
    boxes = []
    for k in range(24):
        a = water_box(seed=k)
        a.rattle(0.03, seed=k)
        boxes.append(a)
    ase.io.write(tmp_path / "mols.extxyz", labelled(mols))
    ase.io.write(tmp_path / "water.extxyz", labelled(boxes))
    cli("data", "convert", "ase", "mols.extxyz", "-o", "mols.lmdb", "-q", "--theory", "EMT", cwd=tmp_path)
    info = cli("data", "convert", "ase", "water.extxyz", "-o", "water.lmdb", "-q", "--train-size", "16",
               "--val-size", "4", cwd=tmp_path)
    assert "stress" in info and "total_charge" in info
    (tmp_path / "cfg.yaml").write_text(
        "model: {name: painn, preset: test, dtype: float64}\nepochs: 3\nbatch_size: 8\n"
        "loss: {energy: 1.0, forces: 10.0}\noptimizer: {lr: 2.0e-3}\nevaluate_test: false\n")
    cli("train", "--config", "cfg.yaml", "--data", "mols.lmdb", "-o", "runs/base", "--no-progress", cwd=tmp_path)
    cli("eval", "runs/base/best", "--data", "water.lmdb", "--split", "test", "-o", "before", cwd=tmp_path)
    cli("finetune", "--from", "runs/base/best", "--data", "water.lmdb", "-o", "runs/water", "--refit-references",
        "--epochs", "4", "--lr", "2e-3", "--no-progress", cwd=tmp_path)
    cli("eval", "runs/water/best", "--data", "water.lmdb", "--split", "test", "-o", "after", cwd=tmp_path)
    before = json.loads(next((tmp_path / "before").glob("*.json")).read_text())
    after = json.loads(next((tmp_path / "after").glob("*.json")).read_text())
    print(f"energy MAE {before['energy_mae_meV']:.1f} -> {after['energy_mae_meV']:.1f} meV, force MAE "
          f"{before['forces_mae_meV_per_A']:.1f} -> {after['forces_mae_meV_per_A']:.1f} meV/Å")
    assert after["energy_mae_meV"] < before["energy_mae_meV"]
    assert after["forces_mae_meV_per_A"] < before["forces_mae_meV_per_A"]
