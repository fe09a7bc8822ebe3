"""PaiNN: polarizable atom interaction neural network (Schütt, Unke, Gastegger, ICML 2021).

Per atom: scalars s [N, F] and vectors v [N, 3, F]. Each layer = message (continuous
filter on the neighbour's scalars, gating its vectors and the bond direction) +
update (mixing of scalars with norms and inner products of linear maps of v).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..nn.graph import Graph
from ..nn.mlp import mlp, safe_norm
from ..nn.radial import RadialBasis, cosine_cutoff
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .potential import MAX_Z


class PaiNNMessage(nn.Module):
    def __init__(self, F: int, num_rbf: int):
        super().__init__()
        self.F = F
        self.phi = mlp([F, F, 3 * F])
        self.filter = nn.Linear(num_rbf, 3 * F)

    def forward(self, s, v, rbf, fcut, unit, graph: Graph):
        src, dst = graph.src, graph.dst
        x = self.phi(s)[src] * (self.filter(rbf) * fcut)
        ds, dvv, dvs = torch.split(x, self.F, dim=-1)
        dv = v[src] * dvv.unsqueeze(1) + dvs.unsqueeze(1) * unit.unsqueeze(-1)
        n = s.shape[0]
        return (s + scatter(ds, dst, dim=0, dim_size=n, reduce="sum"),
                v + scatter(dv, dst, dim=0, dim_size=n, reduce="sum"))


class PaiNNUpdate(nn.Module):
    def __init__(self, F: int):
        super().__init__()
        self.F = F
        self.uv = nn.Linear(F, 2 * F, bias=False)
        self.mix = mlp([2 * F, F, 3 * F])

    def forward(self, s, v):
        Uv, Vv = torch.split(self.uv(v), self.F, dim=-1)
        a = self.mix(torch.cat([s, safe_norm(Vv, dim=1)], dim=-1))
        avv, asv, ass = torch.split(a, self.F, dim=-1)
        return s + ass + asv * (Uv * Vv).sum(1), v + avv.unsqueeze(1) * Uv


@register_model("painn")
class PaiNN(Backbone):
    """Args: hidden_channels F, num_layers, num_rbf (Bessel), cutoff (Å)."""

    def __init__(self, hidden_channels: int = 128, num_layers: int = 3, num_rbf: int = 20, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = float(cutoff)
        self.feature_dim = hidden_channels
        self.layer_feature_dims = [hidden_channels] * num_layers
        self.embedding = nn.Embedding(MAX_Z + 1, hidden_channels)
        self.rbf = RadialBasis(num_rbf, cutoff, basis="bessel", envelope_name=None)
        self.messages = nn.ModuleList(PaiNNMessage(hidden_channels, num_rbf) for _ in range(num_layers))
        self.updates = nn.ModuleList(PaiNNUpdate(hidden_channels) for _ in range(num_layers))

    def forward(self, z: torch.Tensor, graph: Graph) -> BackboneOutput:
        s = self.embedding(z)
        v = s.new_zeros(s.shape[0], 3, s.shape[1])
        rbf = self.rbf(graph.dist)
        fcut = cosine_cutoff(graph.dist, self.cutoff).unsqueeze(-1)
        unit = graph.vec / graph.dist.unsqueeze(-1)
        layers = []
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, rbf, fcut, unit, graph)
            s, v = update(s, v)
            layers.append(s)
        return BackboneOutput(features=s, layer_features=layers)
