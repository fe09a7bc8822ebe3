"""The sparse (large-component) k-mode projector gives the dense path's energies, forces and charges."""
import pytest
import torch
from torch_geometric.data import Data

import phizoo
from phizoo.heads.phi import sparse, spectral
from tests.models.test_model_suite import close, finite_difference_forces, run
from tests.molecules import ase_molecule, random_molecule


def chain(n, seed):
    """A long, thin molecule: its low Laplacian spectrum is sparse, so only a few modes are solved."""
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(n, dtype=torch.float64)
    pos = torch.stack([1.3 * i, 0.4 * (i % 2), 0.3 * ((i // 2) % 2)], -1) + 0.05 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    z = torch.tensor([6, 6, 7, 6, 8, 1])[torch.randint(0, 6, (n,), generator=g)]
    return Data(z=z, pos=pos)


@pytest.fixture(scope="module", params=[{}, {"rho": "untied"}, {"laplacian": "normalized"}],
                ids=["tied", "untied", "normalized"])
def model(request):
    torch.manual_seed(0)
    m = phizoo.build_model("painn", phi=True, preset="test", dtype=torch.float64,
                           phi_options={"formulation": "paper", "k": 6, **request.param})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
        m.phi.gamma.fill_(1.0)
    return m.eval()


def _both(model, *mols, monkeypatch, limit):
    dense = run(model, *mols)
    with monkeypatch.context() as mp:
        mp.setattr(spectral, "DENSE_MAX", limit)
        sparse = run(model, *mols)
    return dense, sparse


def test_sparse_matches_dense_on_a_large_molecule_in_a_mixed_batch(model, monkeypatch):
    big, small, tiny = random_molecule(160, 1), random_molecule(12, 2), random_molecule(3, 3)
    dense, sparse = _both(model, small, big, tiny, monkeypatch=monkeypatch, limit=40)
    close(sparse["energy"], dense["energy"], atol=1e-9, rtol=1e-9)
    close(sparse["forces"], dense["forces"], atol=1e-8, rtol=1e-7)
    close(sparse["charges"], dense["charges"], atol=1e-9, rtol=1e-7)
    assert float(dense["electrostatic_energy"].abs().max()) > 1e-6


def test_sparse_matches_dense_on_degenerate_c60(model, monkeypatch):
    dense, sparse = _both(model, ase_molecule("C60"), monkeypatch=monkeypatch, limit=20)
    close(sparse["energy"], dense["energy"], atol=1e-9, rtol=1e-9)
    close(sparse["forces"], dense["forces"], atol=1e-8, rtol=1e-7)


def test_sparse_forces_match_finite_differences(model, monkeypatch):
    mol = random_molecule(30, 4)
    monkeypatch.setattr(spectral, "DENSE_MAX", 10)
    close(run(model, mol)["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


def test_long_molecule_uses_a_few_modes_and_matches_dense(model, monkeypatch):
    solved = []
    original = sparse.lowest_modes

    def spy(L, k, tau, factor):
        lam, U = original(L, k, tau, factor)
        solved.append((L.shape[0], U.shape[1]))
        return lam, U

    monkeypatch.setattr(sparse, "lowest_modes", spy)
    dense, sparse_out = _both(model, chain(400, 5), random_molecule(8, 6), monkeypatch=monkeypatch, limit=100)
    assert solved and all(m < n // 4 for n, m in solved), solved
    close(sparse_out["energy"], dense["energy"], atol=1e-9, rtol=1e-9)
    close(sparse_out["forces"], dense["forces"], atol=1e-8, rtol=1e-7)
    close(sparse_out["charges"], dense["charges"], atol=1e-9, rtol=1e-7)
