"""``make demo``: the main job with shipped weights, offline.

1. ``phizoo.load_model("visnet", phi=True)``: the pretrained Φ-ViSNet (QM9, default weights;
   sha256-checked against ``pretrained/manifest.json``): energy, forces and Φ charges of a molecule.
2. A short NVE MD with the Φ-ViSNet trained on MD22-format Ac-Ala3-NHMe with GFN2-xTB labels
   (``pretrained="md22-xtb-ac-ala3"``), through the ASE calculator.
3. A live leaderboard of every shipped QM9 checkpoint on QM9 test molecules (the QM9 database is
   converted from the installed ``qm9pack`` on first use, ~15 s), next to the study in
   ``LEADERBOARD.md``.
"""
from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import molecule
from ase.io import read
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet

import phizoo
from phizoo.pretrained import available_pretrained, manifest_path, read_card

QM9_DB = Path("data/qm9.lmdb")
LEADERBOARD_STRUCTURES = 1000


def properties(model, label: str) -> None:
    atoms = molecule("CH3CH2OH")
    atoms.calc = phizoo.PhiZooCalculator(model)
    t0 = time.perf_counter()
    energy, forces, charges = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_charges()
    ms = (time.perf_counter() - t0) * 1e3
    card = model.card
    test = card["metrics"].get("test", {})
    phi = model.phi
    about_phi = (f"Φ {phi.formulation}, μ = {float(phi.mu):.3g}" if phi.formulation == "continuous"
                 else f"Φ {phi.formulation}, k={phi.k}, ρ {phi.rho}")
    print(f"\n== {label}: {model.num_parameters():,} parameters, cutoff {model.cutoff} Å, {about_phi}"
          f"\n   trained on {card['dataset'].get('name')} ({card['dataset'].get('level_of_theory')}), "
          f"test energy MAE {test.get('energy_mae_meV', float('nan')):.1f} meV")
    print(f"\nethanol (ase.build): E = {energy:.4f} eV ({ms:.1f} ms)")
    print(f"{'atom':>5s} {'Fx':>9s} {'Fy':>9s} {'Fz':>9s} {'charge':>9s}   (eV/Å, e)")
    for sym, f, q in zip(atoms.get_chemical_symbols(), forces, charges):
        print(f"{sym:>5s} {f[0]:9.4f} {f[1]:9.4f} {f[2]:9.4f} {q:9.4f}")
    print(f"net force {np.abs(forces.sum(0)).max():.1e} eV/Å, net charge {charges.sum():+.1e} e")


def short_md(model, steps: int = 400) -> None:
    path = resources.files("phizoo.data") / "structures" / "Ac-Ala3-NHMe.xyz"
    atoms = read(str(path))
    atoms.calc = phizoo.PhiZooCalculator(model)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    etot, temp = [], []
    dyn.attach(lambda: (etot.append(atoms.get_total_energy()), temp.append(atoms.get_temperature())), interval=20)
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = time.perf_counter() - t0
    etot = np.array(etot)
    print(f"\n== NVE MD of Ac-Ala3-NHMe (42 atoms) with Φ-ViSNet [md22-xtb-ac-ala3], {steps} steps of 0.5 fs "
          f"({dt:.1f} s, {dt / steps * 1e3:.1f} ms/step)")
    print(f"   total energy: drift {1e3 * (etot[-1] - etot[0]):+.2f} meV, fluctuation {1e3 * np.ptp(etot):.2f} meV; "
          f"mean T {np.mean(temp):.0f} K; charges O {atoms.get_charges()[atoms.numbers == 8].mean():+.3f} e, "
          f"N {atoms.get_charges()[atoms.numbers == 7].mean():+.3f} e (mean)")


def live_leaderboard() -> None:
    from phizoo.data import convert_qm9
    from phizoo.eval.leaderboard import leaderboard, markdown_table
    from phizoo.train.data import open_dataset, split_indices

    entries = [e for e in available_pretrained() if e["dataset"] == "qm9"]
    if not QM9_DB.exists():  # the shipped models' split: sizes from their card, the converter's default seed
        print(f"\n[demo] converting QM9 from the installed qm9pack to {QM9_DB} (once) ...")
        options = read_card(manifest_path().parent / entries[0]["card"])["dataset"]["source"]["options"]
        convert_qm9(None, QM9_DB, **{k: options[k] for k in ("train_size", "val_size", "test_size")})
    ds = open_dataset(QM9_DB)
    ids = [e["id"] for e in entries]
    idx = split_indices(ds, "test")[:LEADERBOARD_STRUCTURES]
    rows = leaderboard(ids, ds, indices=idx, names=ids, memory=False)
    print(f"\n== leaderboard: shipped QM9 checkpoints, first {len(idx)} test molecules "
          f"(full study: LEADERBOARD.md)\n")
    print(markdown_table(rows))


def main() -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    properties(phizoo.load_model("visnet", phi=True), "pretrained Φ-ViSNet (default: QM9)")
    short_md(phizoo.load_model("visnet", phi=True, pretrained="md22-xtb-ac-ala3"))
    live_leaderboard()
    return 0


if __name__ == "__main__":
    sys.exit(main())
