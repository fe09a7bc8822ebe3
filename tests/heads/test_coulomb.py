"""Physics of the Coulomb head (phizoo/heads): energies against analytic values and Madelung's
constant, the 1/r tail far beyond the cutoff, Ewald/PME against the direct sum, supercells,
forces and stress against finite differences, and the total-charge constraint."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk, make_supercell
from torch_geometric.data import Batch, Data

import phizoo
from phizoo.heads.electrostatics import K_E, coulomb_energy, direct_energy, periodic_energy
from tests.molecules import random_molecule

MADELUNG_NACL = 1.747564594633  # rock salt, referred to the nearest-neighbour distance


def coulomb_model(name="painn", phi=False, seed=0, dtype=torch.float64, **options):
    torch.manual_seed(seed)
    model = phizoo.build_model(name, phi=phi, preset="test", dtype=dtype, coulomb=True, coulomb_options=options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def single(pos, q=None):
    return torch.zeros(len(pos), dtype=torch.long)


# ---------------------------------------------------------------- fixed charges

def test_point_charges_against_analytic_sum():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-3, 3, size=(7, 3))
    q = rng.normal(size=7)
    for sigma in (1.0, 0.3):
        ref = 0.5 * sum(K_E * q[i] * q[j] * math.erf(np.linalg.norm(pos[i] - pos[j]) / (math.sqrt(2) * sigma))
                        / np.linalg.norm(pos[i] - pos[j]) for i in range(7) for j in range(7) if i != j)
        e = direct_energy(torch.tensor(q), torch.tensor(pos), single(pos), 1, sigma)
        assert abs(float(e[0]) - ref) < 1e-10 * max(1.0, abs(ref))
    # far apart compared with σ the smearing is invisible: plain point charges
    far = pos * 20
    point = 0.5 * sum(K_E * q[i] * q[j] / np.linalg.norm(far[i] - far[j]) for i in range(7) for j in range(7) if i != j)
    e = direct_energy(torch.tensor(q), torch.tensor(far), single(far), 1, 1.0)
    assert abs(float(e[0]) - point) < 1e-9 * abs(point)


def test_smeared_kernel_is_finite_at_contact():
    """Two Gaussian clouds on top of each other: k_e q₁q₂ √(2/π)/σ, no divergence."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [1e-6, 0.0, 0.0]], dtype=torch.float64)
    e = direct_energy(torch.tensor([1.0, 1.0], dtype=torch.float64), pos, single(pos), 1, 0.8)
    assert abs(float(e[0]) - K_E * math.sqrt(2 / math.pi) / 0.8) < 1e-8


def test_batched_direct_sum_equals_separate_sums():
    mols = [random_molecule(n, seed=n) for n in (3, 11, 6)]
    qs = [torch.randn(m.z.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(i))
          for i, m in enumerate(mols)]
    b = Batch.from_data_list(mols)
    together = direct_energy(torch.cat(qs), b.pos, b.batch, 3, 1.0)
    alone = torch.cat([direct_energy(q, m.pos, single(m.pos), 1, 1.0) for q, m in zip(qs, mols)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- periodic

def rock_salt_cubic(a=5.64):
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
    q = torch.tensor([1.0 if z == 11 else -1.0 for z in atoms.numbers], dtype=torch.float64)
    return atoms, q


@pytest.mark.parametrize("method", ["ewald", "pme"])
@pytest.mark.parametrize("a", [5.64, 6.2])
def test_nacl_madelung_constant(method, a):
    """Unit point charges (σ = 0.05 Å ≪ a) on rock salt: E per ion pair = −M k_e / (a/2)."""
    atoms, q = rock_salt_cubic(a)
    e = periodic_energy(q, torch.tensor(atoms.positions), torch.tensor(np.asarray(atoms.cell)), 0.05, method)
    per_pair = float(e) / (len(atoms) / 2)
    expected = -MADELUNG_NACL * K_E / (a / 2)
    assert abs(per_pair - expected) < 2e-5 * abs(expected), (per_pair, expected)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_supercell_energy_is_extensive(method):
    rng = np.random.default_rng(3)
    cell = np.array([[5.0, 0.2, 0.0], [0.0, 5.5, 0.3], [0.4, 0.0, 6.0]])
    frac = rng.uniform(size=(5, 3))
    q = rng.normal(size=5)
    q -= q.mean()
    pos = frac @ cell
    e1 = periodic_energy(torch.tensor(q), torch.tensor(pos), torch.tensor(cell), 1.0, method)
    shifts = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)]) @ cell
    pos8 = (pos[None] + shifts[:, None]).reshape(-1, 3)
    e8 = periodic_energy(torch.tensor(np.tile(q, 8)), torch.tensor(pos8), torch.tensor(2 * cell), 1.0, method)
    assert abs(float(e8) - 8 * float(e1)) < (1e-6 if method == "ewald" else 1e-4) * abs(8 * float(e1))


def centrosymmetric_cluster():
    """A neutral, centrosymmetric cluster (zero dipole): image interactions fall off as L⁻⁵."""
    rng = np.random.default_rng(5)
    half = rng.uniform(-2.5, 2.5, size=(4, 3))
    qh = rng.normal(size=4)
    qh -= qh.mean()
    return np.concatenate([half, -half]), np.concatenate([qh, qh])


def cluster_energy(pos0, q, L, method, periodic=True):
    """(E, forces, ∂E/∂ε) of the cluster centred in a cubic cell of edge L (or isolated)."""
    from phizoo.models.periodic import apply_strain

    pos = torch.tensor(pos0 + L / 2).requires_grad_(True)
    cell = torch.eye(3, dtype=torch.float64)[None] * L
    b = single(pos0)
    spos, scell, eps = apply_strain(pos, cell, b)
    e = coulomb_energy(q, spos, b, 1, scell if periodic else None,
                       torch.ones(1, 3, dtype=torch.bool) if periodic else None, 1.0, method)
    g_pos, g_eps = torch.autograd.grad(e.sum(), (pos, eps))
    return float(e[0].detach()), -g_pos, g_eps[0]


def test_large_cell_converges_to_direct_sum():
    """Ewald: energy, forces and strain derivative of a zero-dipole cluster in cubic cells of 40 and
    60 Å against the direct sum: the differences are the images' quadrupole interactions, ∝ L⁻⁵
    (ratio 1.5⁵ = 7.6 between the two cells), and at 60 Å below 1e-5 of the values (2e-5 for the
    strain derivative, of which the L⁻⁵ term is a few times the energy gap)."""
    pos0, q = centrosymmetric_cluster()
    q = torch.tensor(q)
    ed, fd, sd = cluster_energy(pos0, q, 40.0, "ewald", periodic=False)
    (e40, f40, s40), (e60, f60, s60) = (cluster_energy(pos0, q, L, "ewald") for L in (40.0, 60.0))
    assert abs(e60 - ed) < 1e-5 * abs(ed)
    assert float((f60 - fd).abs().max()) < 1e-5 * float(fd.abs().max())
    assert float((s60 - sd).abs().max()) < 2e-5 * float(sd.abs().max())
    assert abs((e40 - ed) / (e60 - ed) - 1.5**5) < 0.02 * 1.5**5
    ratio = float((f40 - fd).abs().max() / (f60 - fd).abs().max())
    assert abs(ratio - 1.5**5) < 0.05 * 1.5**5


def test_pme_agrees_with_ewald():
    """PME (mesh spacing s/2, 5 nodes): within 2e-6 (energy; 6e-7 measured) and 1e-4 (forces, strain derivative)
    of Ewald for the cluster in a 30 Å cell."""
    pos0, q = centrosymmetric_cluster()
    q = torch.tensor(q)
    (ee, fe, se), (ep, fp, sp) = (cluster_energy(pos0, q, 30.0, m) for m in ("ewald", "pme"))
    assert abs(ep - ee) < 2e-6 * abs(ee)
    assert float((fp - fe).abs().max()) < 1e-4 * float(fe.abs().max())
    assert float((sp - se).abs().max()) < 1e-4 * float(se.abs().max())


def test_partly_periodic_refused():
    pos = torch.zeros(2, 3, dtype=torch.float64)
    pos[1, 0] = 1.0
    with pytest.raises(NotImplementedError, match="periodic along"):
        coulomb_energy(torch.tensor([1.0, -1.0]), pos, single(pos), 1, torch.eye(3)[None] * 10.0,
                       torch.tensor([[True, True, False]]))


# ---------------------------------------------------------------- the head in a model

def ion_pair(r, zs=(11, 17)):
    return Data(z=torch.tensor(zs), pos=torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]], dtype=torch.float64))


def test_two_ions_follow_coulombs_law_far_beyond_the_cutoff():
    """6–30 Å apart (cutoff 4 Å): the charges are those of isolated atoms, constant, and
    E(r) = E_short + k_e q₁q₂/r; the force on each ion is k_e q₁q₂/r² along the axis (and matches
    finite differences)."""
    model = coulomb_model()
    assert model.cutoff < 6.0
    rs = [6.0, 8.5, 12.0, 20.0, 30.0]
    outs = [model(ion_pair(r)) for r in rs]
    q = outs[0]["coulomb_charges"].detach()
    assert abs(float(q[0])) > 1e-2 and abs(float(q.sum())) < 1e-12
    for r, out in zip(rs, outs):
        torch.testing.assert_close(out["coulomb_charges"].detach(), q, rtol=1e-12, atol=1e-12)
        pair = K_E * float(q[0] * q[1]) / r
        # erf(r/(√2σ)) = 1 − 2e-9 at r = 6 Å (σ = 1 Å): the bare 1/r law to 1e-8
        assert abs(float(out["coulomb_energy"][0]) - pair) < 1e-8 * abs(pair)
        f = out["forces"].detach()
        assert abs(float(f[1, 0]) - pair / r) < 1e-7 * abs(pair / r)
        torch.testing.assert_close(f[0], -f[1], rtol=1e-12, atol=1e-14)
    e = [float(o["energy"][0]) for o in outs]
    for i in range(1, len(rs)):  # differences of total energies: the 1/r law, nothing else
        expected = K_E * float(q[0] * q[1]) * (1 / rs[i] - 1 / rs[0])
        assert abs(e[i] - e[0] - expected) < 1e-9
    h = 1e-5
    fd = -(float(model(ion_pair(10.0 + h), compute_forces=False)["energy"][0])
           - float(model(ion_pair(10.0 - h), compute_forces=False)["energy"][0])) / (2 * h)
    assert abs(float(model(ion_pair(10.0))["forces"][1, 0]) - fd) < 1e-7


@pytest.mark.parametrize("options", [{}, {"correction": "weighted"}, {"correction": "local"}, {"charges": "phi"},
                                     {"charges": "phi", "correction": "weighted"}])
def test_total_charge_is_imposed(options):
    model = coulomb_model(phi=True, dtype=torch.float32, **options)
    mols = [random_molecule(n, seed=n) for n in (5, 9, 14)]
    for m, q in zip(mols, (0.0, 1.0, -2.0)):
        m.total_charge = torch.tensor([q])
    out = model(Batch.from_data_list(mols))
    parts = torch.split(out["coulomb_charges"].detach(), [5, 9, 14])
    sums = torch.stack([c.sum() for c in parts])
    target = torch.tensor([0.0, 1.0, -2.0])
    # float32 rounding of an n-term sum (and of the correction added to each term): ≤ n·eps·(Σ|q_i| + 1)
    bound = torch.tensor([len(c) * torch.finfo(torch.float32).eps * float(c.abs().sum() + 1) for c in parts])
    assert ((sums - target).abs() <= bound).all(), (sums, bound)
    assert "charges" in out and not torch.equal(out["charges"], out["coulomb_charges"])  # Φ's ρ kept apart


@pytest.mark.parametrize("name", ["painn", "mace"])
def test_local_correction_keeps_distant_neutral_molecules_apart(name):
    """Two neutral molecules 40 Å apart in one structure: with ``correction="local"`` each keeps
    exactly its own charges (Σq = 0 each) and E(A+B) = E(A) + E(B) + their k_e Σ q_i q_j / r_ij;
    the global ``uniform`` correction moves charge between them (the defect it avoids)."""
    from tests.molecules import ase_molecule, merged

    a, b = ase_molecule("CH3CH2OH"), ase_molecule("H2O")
    for correction in ("local", "uniform"):
        model = coulomb_model(name, correction=correction)
        alone = [model(m) for m in (a, b)]
        pair = merged(a, b, [40.0, 0.0, 0.0])
        both = model(pair)
        q = both["coulomb_charges"].detach()
        qa, qb = alone[0]["coulomb_charges"].detach(), alone[1]["coulomb_charges"].detach()
        n = a.z.numel()
        r = torch.cdist(pair.pos[:n], pair.pos[n:])
        cross = K_E * float((q[:n, None] * q[None, n:] / r).sum())  # erf = 1 at 40 Å
        gap = float(both["energy"][0] - alone[0]["energy"][0] - alone[1]["energy"][0]) - cross
        if correction == "local":
            torch.testing.assert_close(q, torch.cat([qa, qb]), rtol=0, atol=1e-12)
            assert abs(float(qa.sum())) < 1e-12 and float(qa.abs().max()) > 1e-2
            assert abs(gap) < 1e-9
        else:
            assert abs(float(q[:n].sum())) > 1e-3 and abs(gap) > 1e-3


def test_local_correction_needs_the_graph():
    head = phizoo.heads.coulomb.CoulombHead(8, correction="local")
    with pytest.raises(ValueError, match="graph"):
        head(torch.randn(3, 8), torch.randn(3, 3), torch.zeros(3, dtype=torch.long), 1, torch.zeros(1))


def test_dipole_is_sum_of_charges_times_positions():
    model = coulomb_model()
    m = random_molecule(8, seed=2)
    m.total_charge = torch.tensor([1.0])
    out = model(Batch.from_data_list([m]))
    q = out["coulomb_charges"].detach()
    centre = m.pos.mean(0)
    torch.testing.assert_close(out["dipole"][0], (q[:, None] * (m.pos - centre)).sum(0), rtol=1e-12, atol=1e-12)


def test_energy_split_adds_up():
    model = coulomb_model(phi=True)
    m = random_molecule(8, seed=4)
    out = model(Batch.from_data_list([m]))
    refs = model.element_energies[m.z].sum()
    total = out["energy_short_range"] + out["electrostatic_energy"] + out["coulomb_energy"] + refs
    torch.testing.assert_close(out["energy"], total.double(), rtol=1e-12, atol=1e-10)


def test_spec_rebuilds_strictly_and_plain_models_are_unchanged():
    model = coulomb_model(phi=True, sigma=0.7, periodic="pme")
    twin = phizoo.registry.build_from_spec(model.spec)
    twin.load_state_dict(model.state_dict(), strict=True)
    assert twin.coulomb.sigma == 0.7 and twin.coulomb.method == "pme"
    plain = phizoo.build_model("painn", phi=True, preset="test")
    assert "coulomb" not in plain.spec and not any(k.startswith("coulomb") for k in plain.state_dict())
    with pytest.raises(ValueError, match="phi=True"):
        phizoo.build_model("painn", preset="test", coulomb=True, coulomb_options={"charges": "phi"})
    with pytest.raises(KeyError, match="unknown coulomb option"):
        phizoo.build_model("painn", preset="test", coulomb=True, coulomb_options={"sigmaa": 1.0})
