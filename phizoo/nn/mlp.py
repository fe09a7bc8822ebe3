"""Small building blocks shared by the models."""
from __future__ import annotations

import torch
from torch import nn


def mlp(dims: list[int], activation: type[nn.Module] = nn.SiLU, final_activation: bool = False) -> nn.Sequential:
    """Dense layers ``dims[0] -> ... -> dims[-1]`` with ``activation`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


def safe_norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8, keepdim: bool = False) -> torch.Tensor:
    """sqrt(|x|² + eps): finite gradient at x = 0 (features start at zero in PaiNN-like models)."""
    return torch.sqrt(x.pow(2).sum(dim=dim, keepdim=keepdim) + eps)
