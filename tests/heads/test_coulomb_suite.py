"""Every registered backbone with the Coulomb head (and with Φ + Coulomb): the shared suite's
symmetry, batching, force and continuity checks (helpers from tests/models/test_model_suite.py),
plus periodic cells (supercells, lattice translations, stress by finite differences)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import make_supercell
from torch_geometric.data import Data

import phizoo
from tests.models.test_model_suite import close, finite_difference_forces, run
from tests.models.test_periodic import evaluate, rock_salt, water_box
from tests.molecules import approaching_pair, ase_molecule, random_molecule, random_orthogonal, transformed

# every backbone with and without Φ (uniform correction), and the local correction on two of them
VARIANTS = [(name, phi, "uniform") for name in phizoo.list_models() for phi in (False, True)] + \
    [("painn", False, "local"), ("mace", True, "local")]
IDS = [f"{n}-{'phi-' if p else ''}coulomb{'-local' if c == 'local' else ''}" for n, p, c in VARIANTS]


def make_coulomb_model(name: str, phi: bool, dtype=torch.float64, seed: int = 0, **options):
    torch.manual_seed(seed)
    model = phizoo.build_model(name, phi=phi, preset="test", dtype=dtype, coulomb=True, coulomb_options=options)
    with torch.no_grad():  # randomised, so that the charges (and every other term) are not small
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        if hasattr(model.phi, "gamma"):
            model.phi.gamma.fill_(1.0)
        # charges of chemical size: the largest |q| of a reference molecule 0.5 e
        q = model.eval()(random_molecule(9, seed=1), compute_forces=False)["coulomb_charges"]
        model.coulomb.net[-1].weight.mul_(0.5 / float(q.abs().max()))
        model.coulomb.net[-1].bias.mul_(0.5 / float(q.abs().max()))
    return model.eval()


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def model(request):
    name, phi, correction = request.param
    return make_coulomb_model(name, phi, correction=correction)


def sibling(model, **kw):
    """A model built like the fixture's (same backbone, Φ flag and correction)."""
    return make_coulomb_model(model.spec["model"], model.spec["phi"], correction=model.coulomb.correction, **kw)


def test_charges_are_not_trivial(model):
    out = run(model, random_molecule(9, seed=1))
    assert float(out["coulomb_charges"].abs().max()) > 0.1
    assert abs(float(out["coulomb_energy"][0])) > 1e-4


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "rotoreflection"])
def test_invariance_and_equivariance(model, reflect):
    mol = random_molecule(9, seed=1)
    R = random_orthogonal(7, reflect=reflect)
    ref = run(model, mol)
    out = run(model, transformed(mol, R=R, shift=[3.0, -1.0, 2.5]))
    close(out["energy"], ref["energy"])
    close(out["forces"], ref["forces"] @ R.T)
    close(out["coulomb_charges"], ref["coulomb_charges"])
    close(out["dipole"], ref["dipole"] @ R.T)


def test_permutation_and_batch_independence(model):
    a, b, c = random_molecule(7, 4), random_molecule(12, 5), random_molecule(5, 6)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    alone = [run(model, m) for m in (a, b, c)]
    shuffled = run(model, transformed(b, perm=perm))
    close(shuffled["energy"], alone[1]["energy"])
    close(shuffled["coulomb_charges"], alone[1]["coulomb_charges"][perm])
    out = run(model, c, a, b)
    for slot, i in enumerate([2, 0, 1]):
        close(out["energy"][slot], alone[i]["energy"][0])
        close(out["dipole"][slot], alone[i]["dipole"][0])
    close(out["coulomb_charges"], torch.cat([alone[i]["coulomb_charges"] for i in (2, 0, 1)]))


def test_forces_match_finite_differences(model):
    mol = random_molecule(6, seed=10)
    close(run(model, mol)["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


def test_molecules_meeting_and_parting(model):
    """Water approaches ethanol from 3 cutoffs away to contact: the Coulomb energy is continuous and
    the energy change along the path equals the work of the forces (Simpson's rule)."""
    a, b = ase_molecule("CH3CH2OH"), ase_molecule("H2O")
    u = torch.tensor((1.0, 0.3, -0.2), dtype=torch.float64)
    u = u / u.norm()
    contact = approaching_pair(a, b, model.cutoff, u)
    n = a.z.numel()

    def at(t):
        out = run(model, Data(z=contact.z, pos=torch.cat([contact.pos[:n], contact.pos[n:] + t * u])))
        return float(out["energy"][0]), float(out["forces"][n:].sum(0) @ u), float(out["coulomb_energy"][0])

    (e0, f0, _), (e1, _, _) = at(-1e-7), at(1e-7)
    assert abs(e0 - e1 - 2e-7 * f0) < 1e-6 * max(1.0, abs(e0))  # no jump beyond the slope's share
    far = at(2.0 * model.cutoff)
    assert abs(far[2]) > 1e-6  # the molecules still interact beyond the cutoff
    h = 0.005
    e, f, _ = map(np.array, zip(*(at(t) for t in np.arange(-20, 21) * h)))
    work = -(h / 3) * (f[:-2:2] + 4 * f[1:-1:2] + f[2::2])
    kink = 0.1 * h * float(np.abs(np.diff(f)).max())
    np.testing.assert_allclose(e[2::2] - e[:-2:2], work, rtol=1e-4, atol=1e-6 + kink)


def test_float32_agrees_with_float64(model):
    m32 = sibling(model).to(torch.float32)
    mol = random_molecule(9, seed=31)
    e64, e32 = run(model, mol), run(m32, transformed(mol, shift=0.0))
    close(e32["energy"], e64["energy"], atol=1e-4, rtol=1e-4)
    close(e32["forces"].double(), e64["forces"], atol=1e-3, rtol=1e-3)


def test_state_dict_loads_strictly(model):
    fresh = sibling(model, seed=1)
    fresh.load_state_dict(model.state_dict(), strict=True)
    mol = random_molecule(6, seed=9)
    close(run(fresh, mol)["energy"], run(model, mol)["energy"])


# ---------------------------------------------------------------- periodic (two backbones, both methods)

PERIODIC = [("painn", False, "ewald", "uniform"), ("mace", True, "pme", "local")]


@pytest.fixture(scope="module", params=PERIODIC, ids=[f"{n}-{m}-{c}" for n, _, m, c in PERIODIC])
def periodic_model(request):
    name, phi, method, correction = request.param
    return make_coulomb_model(name, phi, periodic=method, correction=correction)


@pytest.mark.parametrize("system", ["water", "nacl"])
def test_periodic_supercell_and_translation(periodic_model, system):
    atoms = {"water": water_box, "nacl": rock_salt}[system]()
    ref = evaluate(periodic_model, atoms)
    e8 = float(evaluate(periodic_model, make_supercell(atoms, 2 * np.eye(3)))["energy"][0])
    tol = 1e-6 if periodic_model.coulomb.method == "ewald" else 1e-4
    assert abs(e8 - 8 * float(ref["energy"][0])) <= tol * max(1.0, abs(8 * float(ref["coulomb_energy"][0])))
    moved = atoms.copy()
    moved.positions += np.array([[1, 0, 0], [0, -1, 2], [3, 1, -1]])[np.arange(len(atoms)) % 3] @ np.asarray(atoms.cell)
    out = evaluate(periodic_model, moved)
    torch.testing.assert_close(out["energy"], ref["energy"], rtol=1e-9, atol=1e-8)
    torch.testing.assert_close(out["forces"], ref["forces"], rtol=1e-7, atol=1e-8)


def test_periodic_forces_and_stress_match_finite_differences(periodic_model):
    """Ewald: against finite differences of the energy. PME's energy jumps (~1e-5 relative) where
    the mesh size changes with the cell (torch-pme rounds it up to a power of two; the 6.2 Å water
    cell sits on such a boundary), so its autograd stress is checked against Ewald's instead."""
    atoms = water_box()
    out = evaluate(periodic_model, atoms, stress=True)
    stress = out["stress"][0].numpy()
    if periodic_model.coulomb.method == "pme":
        periodic_model.coulomb.method = "ewald"
        try:
            ewald = evaluate(periodic_model, atoms, stress=True)
        finally:
            periodic_model.coulomb.method = "pme"
        np.testing.assert_allclose(stress, ewald["stress"][0].numpy(), atol=1e-4 * np.abs(stress).max(), rtol=0)
        torch.testing.assert_close(out["forces"], ewald["forces"], atol=1e-4 * float(out["forces"].abs().max()), rtol=0)
        return
    h, vol, num = 1e-5, atoms.get_volume(), np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            e = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] = eps[j, i] = sign * h / (1 if i == j else 2)
                strained = atoms.copy()
                strained.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
                e.append(float(evaluate(periodic_model, strained)["energy"][0]))
            num[i, j] = num[j, i] = (e[0] - e[1]) / (2 * h) / vol
    np.testing.assert_allclose(stress, num, atol=1e-6 * max(1.0, np.abs(num).max()), rtol=1e-5)
    for k in (0, 5):
        fd = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[k, 1] += sign * h
            fd.append(float(evaluate(periodic_model, moved)["energy"][0]))
        assert abs(float(out["forces"][k, 1]) + (fd[0] - fd[1]) / (2 * h)) < 1e-5
