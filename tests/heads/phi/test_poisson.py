"""The screened Poisson solver: against explicit linear algebra, CG against Cholesky, and exact
derivatives (first and second order) against finite differences (torch.autograd.gradcheck)."""
import pytest
import torch

from phizoo.nn.graph import build_graph
from phizoo.heads.phi import poisson
from phizoo.heads.phi.laplacian import edge_weights
from phizoo.heads.phi.poisson import ScreenedLaplacian, screened_solve
from tests.models.test_model_suite import close
from tests.molecules import alkane, batch, random_molecule


def setup(*mols, cutoff=3.0, dtype=torch.float64):
    data = batch(*mols)
    pos = data.pos.to(dtype)
    g = build_graph(pos, data.batch, cutoff, data.num_graphs)
    return g, edge_weights(g.dist, cutoff, "polynomial")


def explicit_matrix(g, w, mu):
    n = g.batch.shape[0]
    W = torch.zeros(n, n, dtype=w.dtype).index_put((g.dst, g.src), w, accumulate=True)
    return torch.diag(W.sum(1)) - W + mu * torch.eye(n, dtype=w.dtype)


@pytest.mark.parametrize("dense_max", [poisson.DENSE_MAX, 0], ids=["cholesky", "cg"])
def test_solve_matches_explicit_linear_algebra(dense_max):
    g, w = setup(random_molecule(9, 1), random_molecule(4, 2), random_molecule(1, 3))
    mu = torch.tensor(0.3, dtype=torch.float64)
    b = torch.randn(w.new_zeros(14).shape + (3,), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op = ScreenedLaplacian(g.edge_index, w, mu, g.batch, g.num_graphs, dense_max=dense_max)
    assert op.dense == (dense_max > 0)
    close(op.solve(b), torch.linalg.solve(explicit_matrix(g, w, mu), b), atol=1e-11, rtol=1e-10)


def test_filter_in_the_eigenbasis():
    """μ(L + μ)⁻¹ s = Σ_i u_i u_iᵀ s / (1 + λ_i/μ): the paper's projector with a smooth edge."""
    g, w = setup(random_molecule(12, 4))
    mu = torch.tensor(0.5, dtype=torch.float64)
    s = torch.randn(12, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lam, U = torch.linalg.eigh(explicit_matrix(g, w, 0.0))
    expected = U @ ((U.T @ s) / (1.0 + lam / mu)[:, None])
    op = ScreenedLaplacian(g.edge_index, w, mu, g.batch, g.num_graphs)
    close(mu * op.solve(s), expected, atol=1e-12, rtol=1e-10)


def test_cg_equals_cholesky_on_a_long_chain_and_per_structure():
    """CG iterates each structure exactly as alone (per-structure inner products)."""
    chain, small = alkane(40), random_molecule(6, 5)
    g, w = setup(chain, small)
    mu = torch.tensor(0.05, dtype=torch.float64)
    b = torch.randn(w.new_zeros(g.batch.shape[0]).shape + (2,), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    dense = ScreenedLaplacian(g.edge_index, w, mu, g.batch, g.num_graphs).solve(b)
    cg = ScreenedLaplacian(g.edge_index, w, mu, g.batch, g.num_graphs, dense_max=0).solve(b)
    close(cg, dense, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dense_max", [poisson.DENSE_MAX, 0], ids=["cholesky", "cg"])
def test_gradients_first_and_second_order(dense_max):
    """Weights are symmetric (w_ij = w_ji, as from distances): one parameter per atom pair."""
    g, w = setup(random_molecule(6, 6), random_molecule(3, 7))
    lo, hi = torch.minimum(g.src, g.dst), torch.maximum(g.src, g.dst)
    pairs, pair_of_edge = torch.unique(lo * 100 + hi, return_inverse=True)
    w_pair = torch.zeros(pairs.numel(), dtype=torch.float64).index_put((pair_of_edge,), w).requires_grad_(True)
    mu = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)

    def f(w_pair, mu, b):
        w = w_pair[pair_of_edge]
        op = ScreenedLaplacian(g.edge_index, w, mu, g.batch, g.num_graphs, dense_max=dense_max)
        return screened_solve(w, mu, b, op)

    assert torch.autograd.gradcheck(f, (w_pair, mu, b), atol=1e-7)
    assert torch.autograd.gradgradcheck(f, (w_pair, mu, b), atol=1e-6)


def test_float32_long_chain_is_accurate():
    """The spectrum of A is in [μ, λ_max + μ] whatever the length: float32 solves stay accurate."""
    chain = alkane(300)
    for dense_max in (poisson.DENSE_MAX, 0):
        out = {}
        for dtype in (torch.float32, torch.float64):
            g, w = setup(chain, dtype=dtype)
            s = torch.sin(torch.arange(g.batch.shape[0], dtype=dtype))[:, None]
            op = ScreenedLaplacian(g.edge_index, w, torch.tensor(0.01, dtype=dtype), g.batch, 1, dense_max=dense_max)
            out[dtype] = op.solve(s)
        assert torch.isfinite(out[torch.float32]).all()
        close(out[torch.float32].double(), out[torch.float64], atol=1e-4 * float(out[torch.float64].abs().max()), rtol=0)
