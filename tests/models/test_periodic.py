"""Periodic systems for every registered model, base and Φ (float64, ``test`` preset, random weights):
a water box and rock salt (primitive cell, 2 atoms: every atom sees its own images).

* a 2×2×2 supercell has 8 × the energy of its cell (1e-6 relative);
* energy invariant to translations (including moving atoms by lattice vectors) and to a rotation
  of cell + atoms, with forces rotating along;
* stress = (1/V) ∂E/∂ε against central finite differences of the energy under strain;
* the ASE calculator returns the same stress.
"""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, make_supercell
from scipy.spatial.transform import Rotation
from torch_geometric.data import Batch, Data

import phizoo
from tests.models.test_model_suite import make_model

VARIANTS = [(name, phi) for name in phizoo.list_models() for phi in (False, True)]
IDS = [f"{n}{'-phi' if p else ''}" for n, p in VARIANTS]


def water_box(seed: int = 0) -> Atoms:
    """8 water molecules on a jittered 2×2×2 grid in a slightly triclinic 6.2 Å cell."""
    rng = np.random.default_rng(seed)
    cell = np.array([[6.2, 0.0, 0.0], [0.4, 6.1, 0.0], [-0.3, 0.2, 6.3]])
    mono = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    pos, sym = [], []
    for f in np.array(np.meshgrid([0.25, 0.75], [0.25, 0.75], [0.25, 0.75])).reshape(3, -1).T:
        rot = Rotation.random(random_state=rng).as_matrix()
        pos.extend(f @ cell + mono @ rot.T + rng.normal(scale=0.05, size=3))
        sym += ["O", "H", "H"]
    return Atoms(sym, positions=np.array(pos), cell=cell, pbc=True)


def rock_salt() -> Atoms:
    """NaCl primitive fcc cell (2 atoms; lattice vectors 3.99 Å, shorter than the 4 Å cutoff), rattled."""
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.rattle(0.05, seed=1)
    return atoms


SYSTEMS = {"water": water_box, "nacl": rock_salt}


def to_data(atoms: Atoms) -> Data:
    return Data(z=torch.tensor(atoms.numbers), pos=torch.tensor(atoms.positions),
                cell=torch.tensor(np.asarray(atoms.cell)).reshape(1, 3, 3), pbc=torch.tensor(atoms.pbc).reshape(1, 3))


def evaluate(model, atoms: Atoms, stress: bool = False):
    out = model(Batch.from_data_list([to_data(atoms)]), compute_stress=stress)
    return {k: v.detach() for k, v in out.items()}


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def model(request):
    return make_model(*request.param)


@pytest.mark.parametrize("system", SYSTEMS)
def test_supercell_is_extensive(model, system):
    atoms = SYSTEMS[system]()
    e1 = float(evaluate(model, atoms)["energy"][0])
    e8 = float(evaluate(model, make_supercell(atoms, 2 * np.eye(3)))["energy"][0])
    assert abs(e8 - 8 * e1) <= 1e-6 * abs(8 * e1), (e8, 8 * e1)


@pytest.mark.parametrize("system", SYSTEMS)
def test_translations_and_rotation(model, system):
    atoms = SYSTEMS[system]()
    ref = evaluate(model, atoms)
    moved = atoms.copy()
    lattice = np.array([[1, 0, 0], [0, -1, 2], [3, 1, -1]])[np.arange(len(atoms)) % 3]  # lattice vectors per atom
    moved.positions += lattice @ np.asarray(atoms.cell) + np.array([0.37, -1.1, 2.3])
    out = evaluate(model, moved)
    torch.testing.assert_close(out["energy"], ref["energy"], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=1e-8, atol=1e-9)
    rot = Rotation.random(random_state=3).as_matrix()
    turned = atoms.copy()
    turned.set_cell(np.asarray(atoms.cell) @ rot.T, scale_atoms=False)
    turned.positions = atoms.positions @ rot.T
    out = evaluate(model, turned)
    torch.testing.assert_close(out["energy"], ref["energy"], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(out["forces"], ref["forces"] @ torch.tensor(rot).T, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("system", SYSTEMS)
def test_stress_matches_finite_differences(model, system):
    atoms = SYSTEMS[system]()
    stress = evaluate(model, atoms, stress=True)["stress"][0].numpy()
    assert np.allclose(stress, stress.T, atol=1e-12)
    h, vol, num = 1e-5, atoms.get_volume(), np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] = eps[j, i] = sign * h / (1 if i == j else 2)
                strained = atoms.copy()
                strained.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
                e.append(float(evaluate(model, strained)["energy"][0]))
            num[i, j] = (e[0] - e[1]) / (2 * h) / vol
    np.testing.assert_allclose(stress, num, atol=1e-7 * max(1.0, np.abs(num).max()), rtol=1e-5)


def test_calculator_stress_equals_model(model):
    atoms = water_box()
    atoms.calc = phizoo.PhiZooCalculator(model)
    s = evaluate(model, atoms, stress=True)["stress"][0].numpy()
    voigt = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    np.testing.assert_allclose(atoms.get_stress(), voigt, rtol=1e-10, atol=1e-12)
    assert np.isclose(atoms.get_potential_energy(), float(evaluate(model, atoms)["energy"][0]), rtol=1e-12)
