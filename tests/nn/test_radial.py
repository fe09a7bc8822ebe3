"""Cutoff envelopes: the polynomial envelope (one autograd node with a hand-written, itself
differentiable backward) against the textbook polynomial, its derivatives to second order, and
the value, slope and curvature at the cutoff."""
import pytest
import torch

from phizoo.nn.radial import cosine_cutoff, polynomial_envelope


def textbook(r, rc, p):
    x = r / rc
    u = 1 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1) - 0.5 * p * (p + 1) * x ** (p + 2)
    return torch.where(x < 1, u, torch.zeros_like(r))


@pytest.mark.parametrize("p", [5, 6])
def test_polynomial_envelope_matches_the_polynomial_and_its_derivatives(p):
    r = torch.tensor([0.2, 1.3, 2.5, 4.1, 4.99, 5.0, 5.5, 9.0], dtype=torch.float64, requires_grad=True)
    ours, ref = polynomial_envelope(r, 5.0, p), textbook(r, 5.0, p)
    torch.testing.assert_close(ours, ref, atol=1e-14, rtol=0)
    g1, g2 = (torch.autograd.grad(f.sum(), r, create_graph=True)[0] for f in (ours, ref))
    torch.testing.assert_close(g1, g2, atol=1e-13, rtol=0)
    h1, h2 = (torch.autograd.grad(g.sum(), r)[0] for g in (g1, g2))
    torch.testing.assert_close(h1, h2, atol=1e-12, rtol=0)
    inside = r.detach()[:5].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: polynomial_envelope(t, 5.0, p), (inside,))
    assert torch.autograd.gradgradcheck(lambda t: polynomial_envelope(t, 5.0, p), (inside,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_envelopes_vanish_smoothly_at_the_cutoff(dtype):
    rc = torch.tensor([3.0], dtype=dtype, requires_grad=True)
    for env in (polynomial_envelope, cosine_cutoff):
        u = env(rc, 3.0)
        (du,) = torch.autograd.grad(u.sum(), rc)
        assert float(u) == 0.0 and abs(float(du)) < 1e-6
