"""The shared model test suite: every registered backbone, with and without Φ, runs all of it.

Models are built with the ``test`` preset of ``zoo_configs/<name>.yaml`` in float64 and
their parameters are randomised, so that every term (including E_ES) contributes. Φ-variants
use the default (continuous) formulation; the paper's has its own tests in ``tests/heads/phi``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import nanotube
from torch_geometric.data import Data

import phizoo
from tests.molecules import (alkane, approaching_pair, ase_molecule, ase_molecule_from, batch, cutoff_crossing,
                             merged, random_molecule, random_orthogonal, transformed, water_cluster)

VARIANTS = [(name, phi) for name in phizoo.list_models() for phi in (False, True)]
IDS = [f"{n}-{'phi' if p else 'base'}" for n, p in VARIANTS]


def make_model(name: str, phi: bool, dtype=torch.float64, seed: int = 0, phi_options: dict | None = None):
    torch.manual_seed(seed)
    model = phizoo.build_model(name, phi=phi, preset="test", dtype=dtype, phi_options=phi_options)
    with torch.no_grad():  # randomise so no term hides behind a zero initialisation
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        if hasattr(model.phi, "gamma"):
            model.phi.gamma.fill_(1.0)
        if hasattr(model.phi, "alpha_net"):  # E_ES of the size of the backbone's energies
            model.phi.alpha_net[-1].weight.mul_(10.0)
    model.eval()
    return model


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def model(request):
    return make_model(*request.param)


def run(model, *mols, **kw):
    out = model(batch(*mols), **kw)
    return {k: v.detach() for k, v in out.items()}


def close(a, b, atol=1e-8, rtol=1e-7):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- symmetry

@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "rotoreflection"])
def test_e3_invariance_and_force_equivariance(model, reflect):
    mol = random_molecule(9, seed=1)
    R = random_orthogonal(7, reflect=reflect)
    ref = run(model, mol)
    out = run(model, transformed(mol, R=R, shift=[3.0, -1.0, 2.5]))
    close(out["energy"], ref["energy"])
    close(out["forces"], ref["forces"] @ R.T)
    if model.phi is not None:
        close(out["charges"], ref["charges"])
        close(out["phi"], ref["phi"])


def test_permutation(model):
    mol = random_molecule(10, seed=2)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    ref = run(model, mol)
    out = run(model, transformed(mol, perm=perm))
    close(out["energy"], ref["energy"])
    close(out["forces"], ref["forces"][perm])
    if model.phi is not None:
        close(out["charges"], ref["charges"][perm])


def test_batch_independence(model):
    a, b, c = random_molecule(7, 4), random_molecule(12, 5), random_molecule(5, 6)
    alone = [run(model, m) for m in (a, b, c)]
    for order in ([1, 0, 2], [2, 1, 0]):
        mols = [(a, b, c)[i] for i in order]
        out = run(model, *mols)
        sizes = [int(m.z.numel()) for m in mols]
        forces = torch.split(out["forces"], sizes)
        charges = torch.split(out["charges"], sizes) if model.phi is not None else None
        for slot, i in enumerate(order):
            close(out["energy"][slot], alone[i]["energy"][0])
            close(forces[slot], alone[i]["forces"])
            if charges is not None:
                close(charges[slot], alone[i]["charges"])


def test_size_consistency(model):
    a, b = random_molecule(8, 8), random_molecule(6, 9)
    ea, eb = run(model, a), run(model, b)
    both = run(model, merged(a, b, [100.0, 0.0, 0.0]))
    close(both["energy"][0], ea["energy"][0] + eb["energy"][0])
    close(both["forces"], torch.cat([ea["forces"], eb["forces"]]))


# ---------------------------------------------------------------- forces

def finite_difference_forces(model, mol, h=1e-5):
    pos = mol.pos.clone()
    fd = torch.zeros_like(pos)
    for i in range(pos.shape[0]):
        for d in range(3):
            e = []
            for s in (h, -h):
                p = pos.clone()
                p[i, d] += s
                moved = transformed(mol, shift=0.0)
                moved.pos = p
                e.append(run(model, moved, compute_forces=False)["energy"][0])
            fd[i, d] = -(e[0] - e[1]) / (2 * h)
    return fd


def test_forces_match_finite_differences(model):
    mol = random_molecule(6, seed=10)
    close(run(model, mol)["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


def test_cutoff_continuity(model):
    rc = model.cutoff
    below, above = (run(model, cutoff_crossing(rc, d)) for d in (-1e-7, 1e-7))
    scale = below["forces"].abs().max()
    assert abs(float(below["energy"][0] - above["energy"][0])) < 1e-6 * max(1.0, float(scale))
    close(below["forces"], above["forces"], atol=1e-4 * max(1.0, float(scale)), rtol=0)
    # and the pair really crosses: the graph differs on the two sides
    far = run(model, cutoff_crossing(rc, 0.5))
    assert torch.isfinite(far["energy"]).all()


# ---------------------------------------------------------------- degenerate spectra

@pytest.mark.parametrize("name", ["C6H6", "C60"])
def test_degenerate_spectra_finite_and_invariant(model, name):
    mol = ase_molecule(name)
    ref = run(model, mol)
    assert torch.isfinite(ref["energy"]).all() and torch.isfinite(ref["forces"]).all()
    R = random_orthogonal(11)
    perm = torch.randperm(mol.z.numel(), generator=torch.Generator().manual_seed(12))
    out = run(model, transformed(mol, R=R, perm=perm))
    close(out["energy"], ref["energy"], atol=1e-7, rtol=1e-7)
    close(out["forces"], (ref["forces"] @ R.T)[perm], atol=1e-6, rtol=1e-6)
    if model.phi is not None:
        close(out["charges"], ref["charges"][perm], atol=1e-7, rtol=1e-6)


def test_degenerate_benzene_finite_differences(model):
    mol = ase_molecule("C6H6")
    close(run(model, mol)["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- small and sparse systems

@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_molecules(model, n):
    mol = random_molecule(n, seed=20 + n)
    out = run(model, mol)
    assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()
    close(out["forces"].sum(0), torch.zeros(3, dtype=out["forces"].dtype), atol=1e-10, rtol=0)
    if n == 1:
        close(out["forces"], torch.zeros_like(out["forces"]), atol=1e-12, rtol=0)
    if n == 2:  # central forces: along the bond
        bond = mol.pos[1] - mol.pos[0]
        close(torch.linalg.cross(out["forces"][0], bond), torch.zeros(3, dtype=bond.dtype), atol=1e-10, rtol=0)
    if n == 3:
        close(out["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


def test_isolated_atoms(model):
    h = random_molecule(1, seed=30)
    o = transformed(h, shift=0.0)
    o.z = torch.tensor([8])
    pair = merged(h, o, [50.0, 0.0, 0.0])
    out = run(model, pair)
    close(out["energy"][0], run(model, h)["energy"][0] + run(model, o)["energy"][0])
    close(out["forces"], torch.zeros_like(out["forces"]), atol=1e-12, rtol=0)


def test_float32_agrees_with_float64(model):
    name, phi = model.spec["model"], model.spec["phi"]
    m32 = make_model(name, phi).to(torch.float32)
    mol = random_molecule(9, seed=31)
    e64, e32 = run(model, mol), run(m32, transformed(mol, shift=0.0))
    assert e32["energy"].dtype == torch.float64  # references are summed in float64
    assert e32["forces"].dtype == torch.float32
    close(e32["energy"], e64["energy"], atol=1e-4, rtol=1e-4)
    close(e32["forces"].double(), e64["forces"], atol=1e-3, rtol=1e-3)


# ---------------------------------------------------------------- training

def pair_potential(mol):
    """Analytic reference: harmonic springs between atoms closer than 2 Å (eV, eV/Å)."""
    pos = mol.pos.clone().requires_grad_(True)
    r = torch.cdist(pos, pos)
    iu = torch.triu_indices(len(pos), len(pos), 1)
    d = r[iu[0], iu[1]]
    e = (0.5 * (d - 1.3).pow(2) * (d < 2.0)).sum() - 0.5 * len(pos)
    (g,) = torch.autograd.grad(e, pos)
    return e.detach(), -g


def test_training_step_reduces_loss(model):
    """A freshly initialised model learns an analytic potential: energy + force loss falls."""
    name, phi = model.spec["model"], model.spec["phi"]
    torch.manual_seed(42)
    student = phizoo.build_model(name, phi=phi, preset="test", dtype=torch.float64).train()
    mols = [random_molecule(n, seed=50 + n) for n in (4, 6, 7, 9)]
    data = batch(*mols)
    refs = [pair_potential(m) for m in mols]
    e_ref = torch.stack([e for e, _ in refs])
    f_ref = torch.cat([f for _, f in refs])
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)

    def loss_fn():
        out = student(data)
        loss = (out["energy"] - e_ref).pow(2).mean() + (out["forces"] - f_ref).pow(2).mean()
        if "pde_residual" in out:
            loss = loss + 0.1 * out["pde_residual"].mean() + 0.01 * out["charge_error"].abs().mean()
        return loss

    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------- checkpoints

def test_state_dict_survives_deepcopy_and_strict_load(model):
    """EMA and fine-tuning copy models with ``copy.deepcopy``; the copy must have the same state-dict
    keys and load strictly into a freshly built model (e3nn fx constants are not weights)."""
    import copy

    name = type(model.backbone).__module__.rsplit(".", 1)[-1]
    twin = copy.deepcopy(model)
    assert sorted(twin.state_dict()) == sorted(model.state_dict())
    fresh = make_model(name, model.phi is not None, seed=1)
    fresh.load_state_dict(twin.state_dict(), strict=True)
    mol = random_molecule(6, seed=9)
    close(run(fresh, mol)["energy"], run(model, mol)["energy"])


# ---------------------------------------------------------------- topology changes

def test_molecules_meeting_and_parting(model):
    """Water approaches ethanol until their closest atoms cross the cutoff (two components merge):
    the energy is continuous at the contact, and on a 0.005 Å scan across it the energy changes
    equal the work of the forces (Simpson's rule), so there is no jump anywhere."""
    a, b = ase_molecule("CH3CH2OH"), ase_molecule("H2O")
    u = torch.tensor((1.0, 0.3, -0.2), dtype=torch.float64)
    u = u / u.norm()
    contact = approaching_pair(a, b, model.cutoff, u)  # closest pair exactly at the cutoff
    n = a.z.numel()

    def at(t):  # b moved by t along u from the contact
        out = run(model, Data(z=contact.z, pos=torch.cat([contact.pos[:n], contact.pos[n:] + t * u])))
        return float(out["energy"][0]), float(out["forces"][n:].sum(0) @ u)

    assert abs(at(-1e-7)[0] - at(1e-7)[0]) < 1e-6
    h = 0.005
    e, f = map(np.array, zip(*(at(t) for t in np.arange(-20, 21) * h)))
    work = -(h / 3) * (f[:-2:2] + 4 * f[1:-1:2] + f[2::2])
    # Simpson is O(h⁵) where E is smooth, O(h²·ΔF') at the C¹ kinks where other pairs cross a
    # cosine cutoff: allow that (≤ 0.1·h·max|Δf|), far below any jump of the paper formulation
    kink = 0.1 * h * float(np.abs(np.diff(f)).max())
    np.testing.assert_allclose(e[2::2] - e[:-2:2], work, rtol=1e-4, atol=1e-6 + kink)


# ---------------------------------------------------------------- second derivatives

def test_hessian_matches_finite_differences_of_forces(model):
    mol = random_molecule(4, seed=40)
    pos = mol.pos.clone().requires_grad_(True)
    moved = transformed(mol, shift=0.0)
    moved.pos = pos
    forces = model(batch(moved), create_graph=True)["forces"].reshape(-1)
    hess = torch.stack([torch.autograd.grad(f, pos, retain_graph=True)[0].reshape(-1) for f in forces])
    fd = torch.zeros_like(hess)
    h = 1e-5
    for k in range(pos.numel()):
        fk = []
        for s in (h, -h):
            p = mol.pos.clone().reshape(-1)
            p[k] += s
            m2 = transformed(mol, shift=0.0)
            m2.pos = p.reshape(-1, 3)
            fk.append(run(model, m2)["forces"].reshape(-1))
        fd[:, k] = (fk[0] - fk[1]) / (2 * h)
    scale = float(hess.abs().max())
    close(hess, fd, atol=1e-5 * max(1.0, scale), rtol=1e-5)


# ---------------------------------------------------------------- float32 on large structures

LARGE = {"alkane-2000": lambda: alkane(666), "water-cluster-2001": lambda: water_cluster(667, seed=1),
         "nanotube-1600": lambda: ase_molecule_from(nanotube(10, 0, length=40))}


@pytest.mark.parametrize("structure", sorted(LARGE))
def test_float32_forces_on_large_structures(model, structure):
    """Long chains (the lowest Laplacian eigenvalues ~1e-6), a 170 Å (10,0) carbon nanotube and a compact
    2,000-atom cluster: float32 forces finite and within 1e-3 (relative to the largest force) of float64."""
    mol = LARGE[structure]()
    name, phi = model.spec["model"], model.spec["phi"]
    m32 = make_model(name, phi).to(torch.float32)
    f64 = run(model, mol)["forces"]
    f32 = run(m32, transformed(mol, shift=0.0))["forces"]
    assert torch.isfinite(f32).all()
    scale = float(f64.abs().max())
    close(f32.double(), f64, atol=1e-3 * scale, rtol=0)
