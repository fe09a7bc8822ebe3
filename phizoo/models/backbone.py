"""What a backbone is: (z, graph) -> per-atom scalar features, layer by layer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.graph import Graph


@dataclass
class BackboneOutput:
    """features: [N, F] final scalar features (energy head input).
    layer_features: scalar features after each interaction layer, each [N, F_l] (Φ-Module input)."""

    features: torch.Tensor
    layer_features: list[torch.Tensor]


class Backbone(nn.Module):
    """Base class. Subclasses set ``cutoff`` (Å), ``feature_dim`` and ``layer_feature_dims``
    in ``__init__`` and implement ``forward(z, graph) -> BackboneOutput``."""

    cutoff: float
    feature_dim: int
    layer_feature_dims: list[int]

    def forward(self, z: torch.Tensor, graph: Graph) -> BackboneOutput:  # pragma: no cover - interface
        raise NotImplementedError
