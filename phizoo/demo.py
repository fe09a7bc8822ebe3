"""``make demo``: load a Φ model, predict energy, forces and charges, run a short NVE MD.

Uses the shipped pretrained Φ-ViSNet when ``pretrained/manifest.json`` lists it; until
weights ship, it says so and demonstrates the same workflow on a Φ-PaiNN checkpoint it
writes and reloads through the same code path (sha256-checked safetensors + JSON card).
"""
from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import torch
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

import phizoo
from phizoo.pretrained import CheckpointError, register_in_manifest, save_checkpoint


def get_model(tmpdir: str):
    try:
        return phizoo.load_model("visnet", phi=True), "shipped pretrained Φ-ViSNet"
    except (CheckpointError, KeyError) as err:
        print(f"[demo] {err}")
        print("[demo] No pretrained Φ-ViSNet ships yet: writing an untrained Φ-PaiNN (cpu preset) checkpoint,\n"
              "       registering it in a temporary manifest and loading it back through load_model().\n"
              "       Numbers below come from UNTRAINED weights and are not physical.")
    torch.manual_seed(0)
    fresh = phizoo.build_model("painn", phi=True, preset="cpu")
    stem = f"{tmpdir}/pretrained/painn-phi-demo"
    save_checkpoint(fresh, stem, dataset={"name": "none (untrained)"}, notes="demo checkpoint")
    import os

    os.symlink(phizoo.registry.repo_root() / "zoo_configs", f"{tmpdir}/zoo_configs")
    os.environ["PHIZOO_HOME"] = tmpdir
    register_in_manifest(stem, "painn-phi-demo", dataset="demo", default=True)
    return phizoo.load_model("painn", phi=True), "untrained Φ-PaiNN (demo checkpoint)"


def main() -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model, label = get_model(tmp)
        print(f"\nmodel: {label}; {model.num_parameters():,} parameters; cutoff {model.cutoff} Å; "
              f"Φ k={model.phi.k}, ρ {model.phi.rho}")
        atoms = molecule("CH3CH2OH")
        atoms.calc = phizoo.PhiZooCalculator(model)
        t0 = time.perf_counter()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        charges = atoms.get_charges()
        print(f"\nethanol: E = {energy:.4f} eV   ({(time.perf_counter() - t0) * 1e3:.1f} ms)")
        print(f"{'atom':>5s} {'Fx':>9s} {'Fy':>9s} {'Fz':>9s} {'charge':>9s}   (eV/Å, e)")
        for sym, f, q in zip(atoms.get_chemical_symbols(), forces, charges):
            print(f"{sym:>5s} {f[0]:9.4f} {f[1]:9.4f} {f[2]:9.4f} {q:9.4f}")
        print(f"net force {np.abs(forces.sum(0)).max():.2e} eV/Å, net charge {charges.sum():+.4f} e")

        thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
        dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
        etot = []
        dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=10)
        t0 = time.perf_counter()
        dyn.run(200)
        dt = time.perf_counter() - t0
        etot = np.array(etot)
        print(f"\nNVE MD, 200 steps of 0.5 fs ({dt:.1f} s, {dt / 200 * 1e3:.1f} ms/step): "
              f"total-energy drift {1e3 * (etot[-1] - etot[0]):+.3f} meV, fluctuation {1e3 * np.ptp(etot):.3f} meV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
