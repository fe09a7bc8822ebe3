"""Radial functions: cutoff envelopes and radial bases (bases come from e3nn)."""
from __future__ import annotations

import math

import torch
from e3nn.math import soft_one_hot_linspace


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """½(cos(πr/rc) + 1) for r < rc, else 0. Value and slope vanish at rc. Shape of ``r``."""
    return torch.where(r < cutoff, 0.5 * (torch.cos(math.pi * r / cutoff) + 1.0), torch.zeros_like(r))


def _poly_coefficients(p: int) -> tuple[float, float, float]:
    return -0.5 * (p + 1) * (p + 2), float(p * (p + 2)), -0.5 * p * (p + 1)


class _PolynomialEnvelope(torch.autograd.Function):
    """One autograd node instead of eight; its backward is built from differentiable ops of the
    saved input, so force training and Hessians (higher derivatives) see the exact derivatives."""

    @staticmethod
    def forward(ctx, r, cutoff: float, p: int):
        ctx.save_for_backward(r)
        ctx.cutoff, ctx.p = cutoff, p
        a, b, c = _poly_coefficients(p)
        x = (r / cutoff).clamp(max=1.0)
        return 1.0 + x.pow(p) * (a + x * (b + c * x))

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        p, a, b, c = ctx.p, *_poly_coefficients(ctx.p)
        # d/dx = x^(p-1) (p a + (p+1) b x + (p+2) c x²), zero at x = 1 (and beyond, clamped)
        x = (r / ctx.cutoff).clamp(max=1.0)
        return grad * x.pow(p - 1) * (p * a + x * ((p + 1) * b + (p + 2) * c * x)) / ctx.cutoff, None, None


def polynomial_envelope(r: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """Polynomial envelope of Klicpera et al. (2020): 1 at 0; value, slope and curvature 0 at rc.

    u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2), x = r/rc (Horner form, one
    power); the coefficients sum to −1, so u is exactly 0 at x = 1 and, clamped, beyond."""
    return _PolynomialEnvelope.apply(r, float(cutoff), int(p))


ENVELOPES = {"cosine": cosine_cutoff, "polynomial": polynomial_envelope}


def envelope(name: str):
    try:
        return ENVELOPES[name]
    except KeyError:
        raise ValueError(f"unknown envelope {name!r}; choose one of {sorted(ENVELOPES)}") from None


class RadialBasis(torch.nn.Module):
    """Radial basis from e3nn (``bessel``, ``gaussian``, ...), optionally times a cutoff envelope.

    Input r: [E] Å. Output: [E, num_basis]; with an envelope, exactly 0 (with zero slope)
    at the cutoff. A layer that adds a bias after the basis must apply the envelope itself,
    after that layer (see PaiNN).
    """

    def __init__(self, num_basis: int, cutoff: float, basis: str = "bessel", envelope_name: str | None = "cosine"):
        super().__init__()
        self.num_basis = num_basis
        self.cutoff = float(cutoff)
        self.basis = basis
        self.envelope = envelope(envelope_name) if envelope_name else None

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        rbf = soft_one_hot_linspace(r, 0.0, self.cutoff, self.num_basis, basis=self.basis, cutoff=True)
        if self.envelope is None:
            return rbf
        return rbf * self.envelope(r, self.cutoff).unsqueeze(-1)
