"""Every registered model, base and Φ, float64, on molecules with degenerate geometry and spectra:
methane (Td), SF6 (Oh), C60 (Ih), benzene (D6h) and CO2 (D∞h).

At a symmetric site the equivariant vector features vanish up to rounding (no l = 1 or l = 2
vector is invariant under Td or Oh), so a model that feeds ``‖v‖`` into the energy has a cusp
there: its forces follow the rounding noise (not equivariant) and flip across the symmetric
geometry. The random molecules of ``test_model_suite.py`` never hit such points. Checks:

* rotations with and without inversion, and translations, through e3nn's own
  ``e3nn.util.test.assert_equivariant`` (energy as ``0e``, forces as ``1o``; e3nn 0.6's l = 1 basis is
  (x, y, z)): error ≤ 1e-10 · max|F|;
* rotated, reflected, translated and permuted at once: forces equivariant to ≤ 1e-10 relative;
* the molecule's own point-group operations ``g`` (found numerically, with the atom permutation
  ``σ`` they induce): ``F[σ] = F gᵀ``, i.e. the forces have the molecule's symmetry — the force
  on a site of full symmetry (methane's C, SF6's S, CO2's C) vanishes;
* finite-difference forces *near* the symmetric geometry (10⁻⁷ Å off it, central differences
  with steps of 10⁻⁵ Å that straddle it): a cusp makes the two sides disagree. A negative
  control (ViSNet with PyG's exact norm, ``norm_eps = 0``) shows that this check fails on one.

Models come from ``test_model_suite.make_model`` (``test`` preset, randomised weights).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from e3nn.util.test import assert_equivariant

from tests.models.test_model_suite import IDS, VARIANTS, make_model, run
from tests.molecules import SYMMETRIC_MOLECULES, batch, random_orthogonal, transformed

MOLS = list(SYMMETRIC_MOLECULES)
REL = 1e-10


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def model(request):
    return make_model(*request.param)


def _forces(model, mol):
    return run(model, mol)["forces"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---------------------------------------------------------------- point-group operations

def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def symmetry_operations(mol, tol: float = 1e-6, most: int = 12):
    """Up to ``most`` point-group operations ``(g [3,3], σ [N])`` of ``mol`` other than the identity:
    ``g (x_i - c) + c = x_σ(i)`` with ``z_σ(i) = z_i`` (c = centroid). Candidates: inversion, and
    proper and improper rotations by 2πj/n (n = 2…6) about axes through atoms, atom-pair midpoints
    (all pairs up to 12 atoms, bonded pairs < 1.6 Å beyond) and normals of atom pairs. Each is accepted only if it maps the molecule onto itself to ``tol`` Å."""
    pos = mol.pos.numpy() - mol.pos.numpy().mean(0)
    z = mol.z.numpy()
    n = len(pos)
    pairs = [(i, j) for i in range(n) for j in range(i) if n <= 12 or np.linalg.norm(pos[i] - pos[j]) < 1.6]
    vecs = list(pos) + [(pos[i] + pos[j]) / 2 for i, j in pairs] + [np.cross(p, q) for p in pos[:8] for q in pos[:8]]
    axes: list[np.ndarray] = []
    for v in vecs:
        n = np.linalg.norm(v)
        if n > 1e-3 and not any(abs(abs(a @ v / n) - 1) < 1e-9 for a in axes):
            axes.append(v / n)
    cands = [-np.eye(3)] + [s * _rotation(a, j * 2 * math.pi / k) for a in axes for k in (2, 3, 4, 5, 6)
                            for j in range(1, k) for s in (1, -1)]
    ops, seen = [], []
    for g in cands:
        moved = pos @ g.T
        d = np.linalg.norm(moved[:, None, :] - pos[None, :, :], axis=-1)
        sigma = d.argmin(1)
        if d[np.arange(len(pos)), sigma].max() < tol and np.array_equal(z[sigma], z) \
                and len(set(sigma.tolist())) == len(pos) and not np.allclose(g, np.eye(3)) \
                and not any(np.allclose(g, h) for h in seen):
            seen.append(g)
            ops.append((torch.tensor(g), torch.tensor(sigma)))
            if len(ops) == most:
                break
    return ops


@pytest.mark.parametrize("name", MOLS)
def test_molecules_are_symmetric(name):
    """The builders give the point groups they claim: enough operations, improper ones included."""
    ops = symmetry_operations(SYMMETRIC_MOLECULES[name](), most=100)
    dets = {round(float(torch.linalg.det(g))) for g, _ in ops}
    assert dets == {1, -1}
    assert len(ops) >= {"CH4 (Td)": 23, "SF6 (Oh)": 30, "C60 (Ih)": 30, "C6H6 (D6h)": 20, "CO2 (Dinfh)": 9}[name]


# ---------------------------------------------------------------- equivariance

@pytest.mark.parametrize("name", MOLS)
def test_e3nn_assert_equivariant(model, name):
    """e3nn's equivariance test: random rotations, with and without parity and translation."""
    mol = SYMMETRIC_MOLECULES[name]()
    torch.manual_seed(0)  # e3nn draws its transformations from torch's global generator

    def energy_and_forces(pos):
        out = run(model, type(mol)(z=mol.z, pos=pos))
        return out["energy"].reshape(1, 1), out["forces"]  # e3nn 0.6's l = 1 basis is (x, y, z)

    scale = float(_forces(model, mol).abs().max())
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn transforms the inputs in the default dtype
    try:
        errors = assert_equivariant(energy_and_forces, args_in=[mol.pos], irreps_in=["cartesian_points"],
                                    irreps_out=["0e", "1o"], ntrials=3, tolerance=float("inf"))
    finally:
        torch.set_default_dtype(default)
    energy = float(run(model, mol)["energy"].abs().max())
    for case, err in errors.items():
        assert float(err[0]) <= REL * max(1.0, energy), (case, err)
        assert float(err[1]) <= REL * scale, (case, float(err[1]) / scale)


@pytest.mark.parametrize("name", MOLS)
@pytest.mark.parametrize("reflect", [False, True], ids=["rotated", "reflected"])
def test_rotated_reflected_permuted(model, name, reflect):
    mol = SYMMETRIC_MOLECULES[name]()
    ref = _forces(model, mol)
    for seed in (1, 2, 3):
        R = random_orthogonal(seed, reflect=reflect)
        perm = torch.randperm(mol.z.numel(), generator=torch.Generator().manual_seed(seed))
        out = _forces(model, transformed(mol, R=R, shift=[0.7, -1.3, 2.1], perm=perm))
        assert _rel(out, (ref @ R.T)[perm]) <= REL


@pytest.mark.parametrize("name", MOLS)
def test_forces_have_the_point_group_symmetry(model, name):
    """F_σ(i) = g F_i for every operation g of the molecule; the force on a fully symmetric site is 0."""
    mol = SYMMETRIC_MOLECULES[name]()
    f = _forces(model, mol)
    assert float(f.abs().max()) > 1e-6  # not trivially zero
    ops = symmetry_operations(mol)
    assert len(ops) >= 9
    for g, sigma in ops:
        assert _rel(f[sigma], f @ g.T) <= REL, float(torch.linalg.det(g))


# ---------------------------------------------------------------- finite differences near the symmetric point

def fd_forces(model, mol, atoms, h=1e-5):
    """Central differences −(E(x + h e) − E(x − h e)) / 2h for the listed atoms, [len(atoms), 3]."""
    out = torch.zeros(len(atoms), 3, dtype=mol.pos.dtype)
    for row, i in enumerate(atoms):
        for d in range(3):
            e = []
            for s in (h, -h):
                m = transformed(mol)
                m.pos[i, d] += s
                e.append(run(model, m, compute_forces=False)["energy"][0])
            out[row, d] = -(e[0] - e[1]) / (2 * h)
    return out


def _near(mol, delta=1e-7, seed=5):
    """``mol`` displaced by ``delta`` Å along a random unit direction per atom: off the symmetric point
    by much less than the finite-difference step, so every central difference straddles it."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(mol.pos.shape, generator=g, dtype=mol.pos.dtype)
    m = transformed(mol)
    m.pos = m.pos + delta * u / u.norm(dim=1, keepdim=True)
    return m


def _fd_atoms(mol):
    return list(range(mol.z.numel())) if mol.z.numel() <= 12 else [0, 1, 17, 42]


@pytest.mark.parametrize("name", MOLS)
def test_finite_differences_near_symmetric_geometry(model, name):
    mol = _near(SYMMETRIC_MOLECULES[name]())
    atoms = _fd_atoms(mol)
    f = _forces(model, mol)[atoms]
    scale = max(1.0, float(f.abs().max()))
    torch.testing.assert_close(fd_forces(model, mol, atoms), f, atol=1e-6 * scale, rtol=1e-5)


def test_finite_difference_check_catches_a_cusp():
    """Negative control: ViSNet with PyG's exact norm (norm_eps = 0) has a cusp at methane's symmetric
    geometry; the two checks above fail on it (its smooth default passes them)."""
    cusp = make_model("visnet", False)
    cusp.backbone.norm_eps = 0.0
    mol = _near(SYMMETRIC_MOLECULES["CH4 (Td)"]())
    f = _forces(cusp, mol)[[0]]
    assert _rel(fd_forces(cusp, mol, [0]), f) > 1e-3
    # 1e-9 Å off the symmetric point (not at it: whether the vectors there sum to exactly zero or to
    # rounding noise depends on the edge order), the cusp's forces follow the displacement's
    # direction and break the symmetry at O(1); the smooth default breaks it at O(1e-9)
    exact = SYMMETRIC_MOLECULES["CH4 (Td)"]()
    g, sigma = symmetry_operations(exact)[0]
    off = _near(exact, delta=1e-9)
    f0 = _forces(cusp, off)
    assert _rel(f0[sigma], f0 @ g.T) > 1e-3
    smooth = _forces(make_model("visnet", False), off)
    assert _rel(smooth[sigma], smooth @ g.T) < 1e-6
