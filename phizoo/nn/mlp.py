"""Small building blocks shared by the models."""
from __future__ import annotations

import torch
from torch import nn

#: Default smoothing scale ε of :func:`smooth_norm` (units of the feature vectors).
NORM_EPS = 0.1


def mlp(dims: list[int], activation: type[nn.Module] = nn.SiLU, final_activation: bool = False,
        bias: bool = True) -> nn.Sequential:
    """Dense layers ``dims[0] -> ... -> dims[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(dims) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


def smooth_norm(x: torch.Tensor, dim: int = -1, eps: float = NORM_EPS, keepdim: bool = False) -> torch.Tensor:
    r"""Smooth norm ``n_ε(x) = √(‖x‖² + ε²) − ε`` along ``dim`` (``ε = 0``: the exact norm ‖x‖).

    Why: equivariant vector features vanish at symmetric sites (the carbon of methane, the sulfur
    of SF6: no l = 1 or l = 2 vector is invariant under Td or Oh), and ``‖x‖`` has a cusp at
    ``x = 0``: its gradient ``x/‖x‖`` is a unit vector pointing wherever rounding put ``x``, so a
    model that feeds ``‖x‖`` into the energy has forces that jump there and are not
    rotation-equivariant at the symmetric geometry itself. ``n_ε`` is C^∞ with

        n_ε(x) = ‖x‖²/(2ε) + O(‖x‖⁴/ε³)   for ‖x‖ ≪ ε,     n_ε(x) = ‖x‖ − ε + O(ε²/‖x‖)  for ‖x‖ ≫ ε,
        ∇n_ε(x) = x / √(‖x‖² + ε²)        (|∇n_ε| ≤ ‖x‖/ε: rounding noise in x gives noise/ε).

    Evaluated as ``‖x‖² / (√(‖x‖² + ε²) + ε)`` (the same number without the cancellation of the
    difference for ‖x‖ ≪ ε). ``eps = 0`` returns the exact norm with a zero (finite) gradient at
    ``x = 0`` (isolated atoms); it keeps the cusp and exists to compare with models that use it.
    Shapes: x [..., D, ...] -> the same without ``dim`` (or with size 1 there when ``keepdim``).
    """
    sq = x.pow(2).sum(dim=dim, keepdim=keepdim)
    if eps > 0:
        return sq / (torch.sqrt(sq + eps * eps) + eps)
    nz = sq > 0
    return torch.where(nz, torch.sqrt(torch.where(nz, sq, torch.ones_like(sq))), torch.zeros_like(sq))
