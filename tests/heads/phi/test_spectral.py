"""The smeared k-mode projector: analytic cases, gauge invariance, exact gradients at degeneracies."""
import numpy as np
import pytest
import torch

from phizoo.nn.graph import build_graph
from phizoo.heads.phi import spectral
from phizoo.heads.phi.laplacian import dense_laplacian, edge_weights, pack_components
from phizoo.heads.phi.spectral import lowpass_project
from tests.heads.phi.test_formulations import _gauge_scrambled_eigh
from tests.molecules import ase_molecule, batch, random_molecule

D = torch.float64


def cycle_laplacian(n):
    W = torch.zeros(1, n, n, dtype=D)
    idx = torch.arange(n)
    W[0, idx, (idx + 1) % n] = 1.0
    W[0, (idx + 1) % n, idx] = 1.0
    return W


def lap(W):
    return torch.diag_embed(W.sum(-1)) - W


def molecule_laplacian(name, cutoff=4.0):
    b = batch(ase_molecule(name))
    g = build_graph(b.pos, b.batch, cutoff, 1)
    blocks = pack_components(g.edge_index, g.batch)
    return dense_laplacian(blocks, g.edge_index, edge_weights(g.dist, cutoff)), blocks.mask


def test_occupations_sum_to_k_and_split_degenerate_clusters_evenly():
    # 6-cycle: eigenvalues 0, 1, 1, 3, 3, 4. k = 2 cuts through the pair at 1.
    lam, _ = torch.linalg.eigh(lap(cycle_laplacian(6)))
    w, v, a, mu, smeared = spectral.occupations(lam, torch.ones_like(lam, dtype=torch.bool), 2, 0.05)
    assert torch.isclose(w.sum(), torch.tensor(2.0, dtype=D))
    assert torch.isclose(w[0, 1], w[0, 2]) and torch.isclose(w[0, 1], torch.tensor(0.5, dtype=D), atol=1e-6)
    assert abs(float(mu) - 1.0) < 1e-6  # Fermi level sits on the degenerate pair


def test_small_components_keep_all_modes():
    W = cycle_laplacian(3)
    S = torch.randn(1, 3, 2, dtype=D)
    Y = lowpass_project(lap(W), S, torch.ones(1, 3, dtype=torch.bool), k=4, tau=0.05)
    torch.testing.assert_close(Y, S)


def test_well_separated_spectrum_gives_the_hard_projector():
    lam = torch.tensor([0.0, 1.0, 2.0, 100.0, 110.0], dtype=D)  # gap of a factor 50 ≫ e^τ
    Q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=D))
    L = (Q * lam) @ Q.T
    S = torch.randn(1, 5, 1, dtype=D)
    Y = lowpass_project(L[None], S, torch.ones(1, 5, dtype=torch.bool), k=3, tau=0.05)
    hard = Q[:, :3] @ (Q[:, :3].T @ S[0])
    torch.testing.assert_close(Y[0], hard, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["C6H6", "C60"])
def test_projection_of_arbitrary_fields_is_gauge_invariant(name, monkeypatch):
    L, mask = molecule_laplacian(name)
    S = torch.randn(1, L.shape[-1], 3, dtype=D, generator=torch.Generator().manual_seed(0))
    for k in (2, 4, 9):
        ref = lowpass_project(L, S, mask, k, 0.05)
        with monkeypatch.context() as m:
            m.setattr(spectral, "symeig", _gauge_scrambled_eigh(k))
            torch.testing.assert_close(lowpass_project(L, S, mask, k, 0.05), ref, atol=1e-10, rtol=0)


def _directional_check(W, S, mask, k, tau, seed, h=1e-6):
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(S.shape, dtype=D, generator=gen)

    def f(W):
        return (lowpass_project(lap(W), S, mask, k, tau) * G).sum()

    Wg = W.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(Wg), Wg)
    assert torch.isfinite(g).all()
    dW = torch.randn(W.shape, dtype=D, generator=gen)
    dW = (dW + dW.transpose(-1, -2)) * (W != 0)  # perturb existing edges symmetrically
    fd = (f(W + h * dW) - f(W - h * dW)) / (2 * h)
    assert abs(float(fd - (g * dW).sum())) < 1e-6 * max(1.0, abs(float(fd)))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_gradient_exact_at_degenerate_spectrum(k):
    W = cycle_laplacian(6)
    S = torch.randn(1, 6, 2, dtype=D, generator=torch.Generator().manual_seed(k))
    _directional_check(W, S, torch.ones(1, 6, dtype=torch.bool), k, 0.05, seed=k)


def test_gradient_wrt_positions_with_padding_and_several_components():
    mols = [random_molecule(n, seed=n) for n in (3, 8, 12)]
    b = batch(*mols)
    S = None
    gen = torch.Generator().manual_seed(0)

    def f(pos):
        nonlocal S
        g = build_graph(pos, b.batch, 3.0, 3)
        blocks = pack_components(g.edge_index, g.batch)
        if S is None:
            S = torch.randn(blocks.num_components, blocks.n_max, 2, dtype=D, generator=gen) * blocks.mask[..., None]
        L = dense_laplacian(blocks, g.edge_index, edge_weights(g.dist, 3.0))
        return (lowpass_project(L, S, blocks.mask, 4, 0.1) * S.flip(-1)).sum()

    pos = b.pos.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(pos), pos)
    dpos = torch.randn(pos.shape, dtype=D, generator=gen)
    h = 1e-6
    fd = (f(b.pos + h * dpos) - f(b.pos - h * dpos)) / (2 * h)
    assert abs(float(fd - (grad * dpos).sum())) < 1e-6 * max(1.0, abs(float(fd)))


def test_mixed_second_derivative_for_force_training():
    """d/dS of the gradient w.r.t. L (what a force loss backpropagates) matches finite differences."""
    W = cycle_laplacian(6)
    mask = torch.ones(1, 6, dtype=torch.bool)
    gen = torch.Generator().manual_seed(2)
    S0 = torch.randn(1, 6, 2, dtype=D, generator=gen)
    G = torch.randn(1, 6, 2, dtype=D, generator=gen)
    dW = torch.randn(1, 6, 6, dtype=D, generator=gen)
    dW = (dW + dW.transpose(-1, -2)) * (W != 0)

    def grad_dot(S, create_graph=False):
        Wg = W.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((lowpass_project(lap(Wg), S, mask, 2, 0.1) * G).sum(), Wg, create_graph=create_graph)
        return (g * dW).sum()

    S = S0.clone().requires_grad_(True)
    (gS,) = torch.autograd.grad(grad_dot(S, create_graph=True), S)
    dS = torch.randn(S0.shape, dtype=D, generator=gen)
    h = 1e-6
    fd = (grad_dot(S0 + h * dS) - grad_dot(S0 - h * dS)) / (2 * h)
    assert abs(float(fd - (gS * dS).sum())) < 1e-6 * max(1.0, abs(float(fd)))


def test_smearing_is_relative_for_large_sparse_spectra():
    """A 200-site path graph: lowest eigenvalues ~1e-4..1e-2, still ~k occupied modes, exact gradient."""
    n, k = 200, 5
    W = torch.zeros(1, n, n, dtype=D)
    idx = torch.arange(n - 1)
    W[0, idx, idx + 1] = W[0, idx + 1, idx] = 1.0
    lam = torch.linalg.eigvalsh(lap(W))
    w, *_ = spectral.occupations(lam, torch.ones(1, n, dtype=torch.bool), k, 0.05)
    assert float(lam[0, k]) < 0.01
    assert torch.isclose(w.sum(), torch.tensor(float(k), dtype=D))
    assert float(w[0, : k - 1].min()) > 0.99 and float(w[0, k + 1 :].max()) < 0.01
    S = torch.randn(1, n, 2, dtype=D, generator=torch.Generator().manual_seed(3))
    _directional_check(W, S, torch.ones(1, n, dtype=torch.bool), k, 0.05, seed=4)
