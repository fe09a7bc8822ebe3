"""PaiNN: polarizable atom interaction neural network (Schütt, Unke, Gastegger, ICML 2021).

Per atom: scalars s [N, F] and vectors v [N, 3, F]. Each layer = message (continuous
filter on the neighbour's scalars, gating its vectors and the bond direction) +
update (mixing of scalars with norms and inner products of linear maps of v).

The norm in the update is the smooth ``n_ε(Vv) = √(‖Vv‖² + ε²) − ε`` (``phizoo.nn.mlp.smooth_norm``,
ε = 0.1), not ``‖Vv‖``: ``Vv`` vanishes at symmetric sites (methane's carbon), where ``‖·‖`` has a
cusp. (Before issue 15 it was ``√(‖Vv‖² + 10⁻⁸)``: C^∞ in name, but its force on methane's carbon
flipped by 0.33 eV/Å within 10⁻⁴ Å of the symmetric geometry, a cusp in practice.)
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.graph import Graph
from ..nn.mlp import mlp, smooth_norm
from ..nn.radial import RadialBasis, cosine_cutoff
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .potential import MAX_Z


def symmetric_pairs(edge_index: torch.Tensor, num_nodes: int):
    """``(half, pair)`` for a symmetric edge list sorted by (target, source) (what ``build_graph``
    returns): ``half`` [E/2] = the edges with source < target (one per atom pair), ``pair`` [E] =
    the position in ``half`` of every edge's pair. ``(None, None)`` when the list is not of that
    form (then everything is computed per edge). The radial filters depend on r_ij = r_ji only, so
    they are computed once per pair: half the filter matmuls, forward and backward."""
    src, dst = edge_index[0], edge_index[1]
    E = src.shape[0]
    if E == 0:
        return None, None
    key = dst * num_nodes + src
    rkey = src * num_nodes + dst
    rev = torch.searchsorted(key, rkey).clamp_(max=E - 1)
    if not torch.equal(key[rev], rkey):  # not symmetric, or not sorted
        return None, None
    lower = src < dst
    rank = torch.cumsum(lower, 0) - 1
    pair = torch.where(lower, rank, rank[rev])
    return lower.nonzero().squeeze(1), pair


class PaiNNMessage(nn.Module):
    def __init__(self, F: int, num_rbf: int):
        super().__init__()
        self.F = F
        self.phi = mlp([F, F, 3 * F])
        self.filter = nn.Linear(num_rbf, 3 * F)

    def filter_weights(self) -> list[torch.Tensor]:
        """Three [num_rbf + 1, F] blocks (ds, dvv, dvs) of the filter, bias as the last row, so that
        ``[rbf·C, C] @ block = (W rbf + b)·C``: the cutoff C is folded into the matmul."""
        w = torch.cat([self.filter.weight, self.filter.bias.unsqueeze(-1)], dim=-1)
        return [blk.t() for blk in torch.split(w, self.F, dim=0)]

    def forward(self, s, v, rbf_c, pair, unit, src, dst, dst3):
        """s [N, F]; v [3, N, F] (component-major) or ``None`` (all zero: first layer); rbf_c [P, R+1]
        = [rbf·C, C] per pair; pair [E] (or ``None`` when P = E): the row of rbf_c of every edge;
        unit [3, E, 1] bond directions; dst3 = [dst, dst + N, dst + 2N].

        ``ds_ij = φ_s(s_j) W_s(r_ij)``, ``dv_ij = v_j ⊙ φ_vv(s_j) W_vv(r_ij) + r̂_ij φ_vs(s_j) W_vs(r_ij)``,
        summed over j into i. ``v_j ⊙ φ_vv(s_j)`` is formed on the atoms before the gather."""
        N, F = s.shape[0], self.F
        w_s, w_vv, w_vs = (rbf_c @ w if pair is None else torch.index_select(rbf_c @ w, 0, pair)
                           for w in self.filter_weights())
        p_s, p_vv, p_vs = torch.split(self.phi(s), F, dim=-1)
        s = s.index_add(0, dst, torch.index_select(p_s, 0, src) * w_s)
        dv = unit * (torch.index_select(p_vs, 0, src) * w_vs)  # [3, E, F]
        if v is None:  # zero vectors: the v_j ⊙ dvv term and its gradient vanish
            return s, dv.new_zeros(3 * N, F).index_add_(0, dst3, dv.view(-1, F)).view(3, N, F)
        dv = dv + torch.index_select(v * p_vv, 1, src) * w_vv
        return s, v.reshape(3 * N, F).index_add(0, dst3, dv.view(-1, F)).view(3, N, F)


class PaiNNUpdate(nn.Module):
    def __init__(self, F: int):
        super().__init__()
        self.F = F
        self.uv = nn.Linear(F, 2 * F, bias=False)
        self.mix = mlp([2 * F, F, 3 * F])

    def forward(self, s, v):
        """s [N, F], v [3, N, F] (component-major)."""
        Uv, Vv = torch.split(self.uv(v), self.F, dim=-1)
        a = self.mix(torch.cat([s, smooth_norm(Vv, dim=0)], dim=-1))
        avv, asv, ass = torch.split(a, self.F, dim=-1)
        return s + ass + asv * (Uv * Vv).sum(0), v + avv * Uv


@register_model("painn")
class PaiNN(Backbone):
    """Args: hidden_channels F, num_layers, num_rbf (Bessel), cutoff (Å).

    Layout/speed: vectors are stored component-major, ``[3, N, F]``, so that every broadcast over the
    three components (and the reductions over them in the backward pass) runs over whole contiguous
    ``[E, F]`` slabs; gathers are ``index_select`` and sums ``index_add`` (no scatter with a broadcast
    index); the cosine cutoff is folded into the filter matmul; ``v_j ⊙ φ_vv(s_j)`` is formed per atom
    before the gather; the first layer skips the terms of the (zero) input vectors.
    """

    def __init__(self, hidden_channels: int = 128, num_layers: int = 3, num_rbf: int = 20, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = float(cutoff)
        self.feature_dim = hidden_channels
        self.layer_feature_dims = [hidden_channels] * num_layers
        self.embedding = nn.Embedding(MAX_Z + 1, hidden_channels)
        self.rbf = RadialBasis(num_rbf, cutoff, basis="bessel", envelope_name=None)
        self.messages = nn.ModuleList(PaiNNMessage(hidden_channels, num_rbf) for _ in range(num_layers))
        self.updates = nn.ModuleList(PaiNNUpdate(hidden_channels) for _ in range(num_layers))

    def forward(self, z: torch.Tensor, graph: Graph, extra: torch.Tensor | None = None) -> BackboneOutput:
        s = self.embedding(z) if extra is None else self.embedding(z) + extra
        n = s.shape[0]
        half, pair = symmetric_pairs(graph.edge_index, n) if graph.shifts is None else (None, None)
        dist = graph.dist if half is None else torch.index_select(graph.dist, 0, half)
        fcut = cosine_cutoff(dist, self.cutoff).unsqueeze(-1)
        rbf_c = torch.cat([self.rbf(dist) * fcut, fcut], dim=-1)  # [P, num_rbf + 1], one row per pair
        unit = (graph.vec / graph.dist.unsqueeze(-1)).t().contiguous().unsqueeze(-1)  # [3, E, 1]
        src, dst = graph.src, graph.dst
        dst3 = torch.cat([dst, dst + n, dst + 2 * n])
        v = None  # all-zero vectors before the first message
        layers = []
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, rbf_c, pair, unit, src, dst, dst3)
            s, v = update(s, v)
            layers.append(s)
        return BackboneOutput(features=s, layer_features=layers)
