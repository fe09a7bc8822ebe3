"""Radial functions: cutoff envelopes and radial bases (bases come from e3nn)."""
from __future__ import annotations

import math

import torch
from e3nn.math import soft_one_hot_linspace


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """½(cos(πr/rc) + 1) for r < rc, else 0. Value and slope vanish at rc. Shape of ``r``."""
    return torch.where(r < cutoff, 0.5 * (torch.cos(math.pi * r / cutoff) + 1.0), torch.zeros_like(r))


def polynomial_envelope(r: torch.Tensor, cutoff: float, p: int = 6) -> torch.Tensor:
    """Polynomial envelope of Klicpera et al. (2020): 1 at 0; value, slope and curvature 0 at rc."""
    # 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2), in Horner form (one power); the
    # coefficients sum to −1, so at x = 1 (and beyond, clamped, with zero gradient) it is exactly 0
    x = (r / cutoff).clamp(max=1.0)
    return 1.0 + x.pow(p) * (-0.5 * (p + 1) * (p + 2) + x * (p * (p + 2) - 0.5 * p * (p + 1) * x))


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
