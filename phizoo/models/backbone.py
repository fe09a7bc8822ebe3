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
    in ``__init__`` and implement ``forward(z, graph, extra=None) -> BackboneOutput``."""

    cutoff: float
    feature_dim: int
    layer_feature_dims: list[int]

    @property
    def embedding_dim(self) -> int:
        """Width of the initial per-atom scalar embedding (what ``extra`` must match)."""
        emb = self.embedding
        return emb.embedding_dim if isinstance(emb, nn.Embedding) else emb.irreps_out.dim

    def forward(self, z: torch.Tensor, graph: Graph, extra: torch.Tensor | None = None) -> BackboneOutput:
        """``extra`` [N, embedding_dim]: optional per-atom features (e.g. the total charge/spin
        embedding) added to the scalar element embedding before the first interaction."""
        raise NotImplementedError  # pragma: no cover - interface
