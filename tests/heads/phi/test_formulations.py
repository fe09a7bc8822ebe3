"""The two Φ formulations side by side: the continuous default is continuous when molecules meet,
the paper's k-modes-per-component formulation jumps (documented); the paper's eigenvector gauge
invariance; neutrality and the charge scale of the continuous one."""
import pytest
import torch
from torch_geometric.data import Data

import phizoo
from phizoo.heads.phi import spectral
from tests.models.test_model_suite import close, make_model, run
from tests.molecules import approaching_pair, ase_molecule, batch, random_molecule


def contact_jump(model, a, b, direction=(1.0, 0.3, -0.2)):
    """E(closest pair at r_c − 1e-7) − E(at r_c + 1e-7) in eV: two components merge."""
    u = torch.tensor(direction, dtype=torch.float64)
    contact = approaching_pair(a, b, model.cutoff, u / u.norm())
    n = a.z.numel()
    e = [float(run(model, Data(z=contact.z, pos=torch.cat([contact.pos[:n], contact.pos[n:] + d * u / u.norm()])))
               ["energy"][0]) for d in (-1e-7, 1e-7)]
    return e[0] - e[1]


@pytest.mark.parametrize("name", phizoo.list_models())
def test_paper_formulation_jumps_where_continuous_does_not(name):
    a, b = ase_molecule("CH3CH2OH"), ase_molecule("H2O")
    paper = make_model(name, True, phi_options={"formulation": "paper"})
    continuous = make_model(name, True)
    assert abs(contact_jump(paper, a, b)) > 1e-5
    assert abs(contact_jump(continuous, a, b)) < 1e-6


def _gauge_scrambled_eigh(seed):
    gen = torch.Generator().manual_seed(seed)

    def eigh(L):
        lam, U = torch.linalg.eigh(L)
        U = U * torch.where(torch.rand(U.shape[:-2] + (1, U.shape[-1]), generator=gen, dtype=U.dtype) < 0.5, -1.0, 1.0)
        for c in range(L.shape[0]):  # random rotation inside every degenerate cluster
            lc = lam[c]
            tol = 1e-9 * max(1.0, float(lc.abs().max()))
            start = 0
            for end in range(1, lc.numel() + 1):
                if end == lc.numel() or float(lc[end] - lc[end - 1]) > tol:
                    m = end - start
                    if m > 1:
                        q, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=U.dtype))
                        U[c, :, start:end] = U[c, :, start:end] @ q
                    start = end
        return lam, U

    return eigh


@pytest.mark.parametrize("mol", ["C6H6", "C60"])
def test_paper_formulation_eigenvector_gauge_changes_nothing(mol, monkeypatch):
    model = make_model("painn", True, phi_options={"formulation": "paper"})
    data = ase_molecule(mol)
    ref = run(model, data)
    monkeypatch.setattr(spectral, "symeig", _gauge_scrambled_eigh(13))
    out = run(model, data)
    close(out["energy"], ref["energy"])
    close(out["forces"], ref["forces"], atol=1e-7, rtol=1e-6)
    close(out["charges"], ref["charges"])


def test_paper_formulation_float32_long_chain_finite():
    """The occupation derivative of the paper's smeared projector no longer overflows in float32."""
    from tests.molecules import alkane

    m32 = make_model("painn", True, phi_options={"formulation": "paper"}).to(torch.float32)
    out = run(m32, alkane(150))
    assert torch.isfinite(out["forces"]).all()


def test_continuous_charges_are_neutral_per_fragment_and_scale_fixed():
    model = make_model("painn", True)
    a, b = random_molecule(8, 1), random_molecule(6, 2)
    pair = Data(z=torch.cat([a.z, b.z]), pos=torch.cat([a.pos, b.pos + torch.tensor([30.0, 0, 0], dtype=torch.float64)]))
    q = run(model, pair)["charges"]
    close(q[:8].sum(), torch.zeros((), dtype=q.dtype), atol=1e-12, rtol=0)
    close(q[8:].sum(), torch.zeros((), dtype=q.dtype), atol=1e-12, rtol=0)
    assert not hasattr(model.phi, "gamma")  # no free scale: E_ES = ½ φ·ρ fixes it


def test_net_charge_option_places_the_total_charge():
    model = make_model("painn", True, phi_options={"net_charge": True})
    mol = random_molecule(7, 3)
    out = {}
    for q in (-1.0, 1.0):
        data = batch(mol)
        data.total_charge = torch.tensor([q], dtype=torch.float64)
        out[q] = run(model, data)
        close(out[q]["charges"].sum(), torch.tensor(q, dtype=torch.float64), atol=1e-10, rtol=0)
    assert abs(float(out[1.0]["energy"][0] - out[-1.0]["energy"][0])) > 1e-6


def test_unknown_option_for_a_formulation_is_refused():
    with pytest.raises(ValueError, match="'k' does not exist for the 'continuous' formulation"):
        phizoo.build_model("painn", phi=True, preset="test", phi_options={"k": 3})
    with pytest.raises(ValueError, match="formulation 'spectral' is unknown"):
        phizoo.build_model("painn", phi=True, preset="test", phi_options={"formulation": "spectral"})


@pytest.mark.parametrize("name", phizoo.list_models())
def test_charge_aware_phi_charges_sum_to_the_total_charge(name):
    torch.manual_seed(0)
    model = phizoo.build_model(name, phi=True, preset="test", dtype=torch.float64, charge_spin=True).eval()
    mol = random_molecule(7, 4)
    mol.z = torch.tensor([6, 6, 7, 8, 6, 1, 1])  # 35 electrons
    for q, spin in ((1.0, 1), (-1.0, 1), (2.0, 2)):
        data = batch(mol)
        data.total_charge = torch.tensor([q], dtype=torch.float64)
        data.spin = torch.tensor([spin])
        out = run(model, data)
        close(out["charges"].sum(), torch.tensor(q, dtype=torch.float64), atol=1e-6, rtol=0)


def test_paper_formulation_refuses_periodic_systems():
    model = make_model("painn", True, phi_options={"formulation": "paper"})
    data = batch(random_molecule(4, 5))
    data.cell = torch.eye(3, dtype=torch.float64)[None] * 6.0
    data.pbc = torch.tensor([[True, True, True]])
    with pytest.raises(ValueError, match="paper formulation .* does not support periodic"):
        model(data)
