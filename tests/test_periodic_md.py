"""Molecular dynamics of a small periodic water box through ASE: NVT (Langevin), NPT (Berendsen
and ase.md.npt's Nosé–Hoover/Parrinello–Rahman) and a cell relaxation all run and change the cell
as they should."""
import numpy as np
import pytest
import torch
from ase import units
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.npt import NPT
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS

import phizoo
from tests.models.test_periodic import water_box


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return phizoo.build_model("painn", preset="test", dtype=torch.float64).eval()


def box(model):
    atoms = water_box()
    atoms.calc = phizoo.PhiZooCalculator(model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    return atoms


def test_nvt_langevin(model):
    atoms = box(model)
    cell = atoms.cell.copy()
    Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(1)).run(5)
    assert np.isfinite(atoms.get_potential_energy()) and np.allclose(atoms.cell, cell)


@pytest.mark.parametrize("kind", ["berendsen", "npt"])
def test_npt_changes_the_cell(model, kind):
    atoms = box(model)
    volume = atoms.get_volume()
    if kind == "berendsen":
        dyn = NPTBerendsen(atoms, 0.5 * units.fs, temperature_K=300, pressure_au=1.0 * units.bar,
                           taut=10 * units.fs, taup=20 * units.fs, compressibility_au=4.57e-5 / units.bar)
    else:
        atoms.set_cell(np.asarray(atoms.cell), scale_atoms=False)  # ase.md.npt wants an upper-triangular cell
        atoms.set_cell(atoms.cell.standard_form()[0], scale_atoms=True)
        dyn = NPT(atoms, 0.5 * units.fs, temperature_K=300, externalstress=1.0 * units.bar, ttime=10 * units.fs,
                  pfactor=(20 * units.fs) ** 2 * 2.0 * units.GPa)
    dyn.run(5)
    assert np.isfinite(atoms.get_potential_energy())
    assert abs(atoms.get_volume() - volume) > 1e-8 * volume


def test_cell_relaxation_lowers_the_energy(model):
    atoms = water_box()
    atoms.calc = phizoo.PhiZooCalculator(model)
    e0, v0 = atoms.get_potential_energy(), atoms.get_volume()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.05, steps=10)
    assert atoms.get_potential_energy() < e0 and atoms.get_volume() != v0
