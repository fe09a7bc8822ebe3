r"""ViSNet: vector-scalar interactive message passing (Wang et al., Nat. Commun. 15, 313 (2024)).

Every atom carries scalars ``x`` [N, F] and "vectors" ``vec`` [N, (lmax+1)²-1, F]: the l = 1
(3 components, x/y/z) and, for ``lmax = 2``, the l = 2 (5 components) spherical-harmonic
channels stacked along dim 1. Every edge carries scalar features ``f_ij`` [E, F] that are
updated in every layer (runtime geometry calculation: the update reads the vectors of both
end atoms, which encodes angles and dihedrals without enumerating triplets/quadruplets).

The functional forms are those of ``torch_geometric.nn.models.ViSNet`` (itself the authors'
code); ``load_pyg_visnet_state`` (``visnet_pyg.py``) copies a PyG ViSNet into a phizoo ``Potential`` so that
energies and forces agree to float64 round-off (``tests/models/test_visnet.py``):

* geometry: ``d_ij`` = real spherical harmonics of the unit bond vector ``(pos_j-pos_i)/r``
  (e3nn, ``normalization="norm"``: l = 1 is (x, y, z), each l-block has norm 1);
  ``rbf`` = exp-normal smearing times the cosine cutoff ``C(r)``.
* embedding: ``x_i = W_c [emb(z_i), Σ_j emb'(z_j) ⊙ (W_d rbf_ij + b) C(r_ij)]``,
  ``f_ij = (x_i + x_j) ⊙ (W_e rbf_ij + b)``, ``vec = 0``.
* ViS-MP layer (``x̃ = LayerNorm(x)``, ``ṽ = vec`` (times a learned weight with
  ``trainable_vecnorm``)):
  ``q, k, v = W x̃``; ``dk, dv = SiLU(W f_ij)``;
  ``a_ij = SiLU(Σ_head q_i k_j dk) C(r_ij)`` per head; ``m_ij = v_j ⊙ dv ⊙ a_ij``;
  ``s¹, s² = SiLU(W_s m_ij)``; ``μ_ij = ṽ_j s¹ + d_ij s²``;
  ``(u¹, u², u³) = W ṽ``; ``(o¹, o², o³) = W Σ_j m_ij + b``;
  ``Δx = (u¹·u²) o² + o³``, ``Δvec = u³ o¹ + Σ_j μ_ij``;
  ``Δf_ij = SiLU(W f_ij + b) ⊙ (rej(W_t ṽ_i, d_ij) · rej(W_s ṽ_j, -d_ij))`` (not in the
  last layer), with ``rej(w, d) = w - (w·d) d`` and ``·`` the sum over all components.
* self-loops: PyG's (and the authors') radius graph has ``loop=True``: every atom also
  receives a message from itself (``r = 0``, ``d = 0``, ``C = 1``) and has its own edge
  feature ``f_ii = 2 x_i ⊙ (W_e rbf(0) + b)``. phizoo computes these as per-atom terms
  (no self-loop edges, no gathers for them).
* output: ``x = LayerNorm(x)``; the first gated-equivariant block of ViSNet's
  ``EquivariantScalar`` head, ``(h, g) = MLP([x, ‖W₁ vec‖])``, ``v' = g ⊙ W₂ vec``, gives the
  backbone ``features = [SiLU(h), ‖W₃ v'‖]`` [N, 2⌊F/2⌋]; the ``Potential`` energy head
  ``Linear → SiLU → Linear`` (width ⌊F/2⌋) is then exactly the scalar path of ViSNet's second
  gated block. ``layer_features`` (Φ-Module input) = each layer's output as the network
  reads it: the next layer's ``LayerNorm(x)``, and the output ``LayerNorm(x)`` after the last
  layer (the residual stream itself is never read unnormalised; its scale grows with depth).

Differences from PyG's ViSNet (all in the README, *Models in detail*):

* ``W_s`` (PyG ``s_proj``) has no bias. With a bias, ``SiLU(b)`` multiplies ``ṽ_j`` in the
  vector message of every edge whatever its length, so the energy jumps when a neighbour
  crosses the cutoff. Without it, every edge term is ``O(C(r))`` and vanishes with zero
  slope at the cutoff. PyG initialises that bias to zero; a PyG model with a non-zero bias
  cannot be mapped.
* **smooth norms** (deliberate, issue 15): the output head reads ``n_ε(W₁ vec)`` and
  ``n_ε(W₃ v')`` with ``n_ε(x) = √(‖x‖² + ε²) − ε`` (``phizoo.nn.mlp.smooth_norm``,
  ``norm_eps = ε = 0.1`` by default) where PyG uses ``‖x‖``. At a symmetric site the vectors
  vanish (methane's carbon: Td has no invariant l = 1 or l = 2 vector), ``‖x‖`` has a cusp
  there and its gradient is a unit vector in the direction of the rounding noise: PyG's forces
  on rotated methane differ from the rotated forces by ~10-100 % of their size and jump by
  their full size over 10⁻⁶ Å (``tests/models/test_visnet.py`` shows both). ``n_ε`` is C^∞;
  ``norm_eps = 0`` restores the exact norm (with a zero, not NaN, gradient at 0) and then
  phizoo equals PyG weight for weight.
* for ``lmax = 2`` the 8-component ``d_ij`` has ``|d|² = 2`` and the two rejections cancel
  in the dot product: ``rej(a, d)·rej(b, -d) = a·b + (|d|²-2)(a·d)(b·d) = a·b``; phizoo
  evaluates the right-hand side (``lmax = 1``: ``a·b - (a·d)(b·d)``).
* no ``max_num_neighbors`` truncation, element tables over Z = 0…118 (PyG: ``max_z`` = 100),
  ``vecnorm_type="max_min"`` and the ``vertex`` variant are not implemented, ``mean`` must be 0
  (PyG adds it per molecule, ``Potential.shift`` per atom).

Layout/speed: q/k/v, dk/dv/edge gate, the five vector projections, the two radial
projections and the two output-block vector projections are single matmuls; gathers are
separate ``index_select`` calls (their backward is a plain ``index_add``, no concatenation);
the first layer skips every term that reads the (zero) vectors.
"""
from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn
from torch.nn import functional as F_

from ..nn.graph import Graph
from ..nn.mlp import NORM_EPS, smooth_norm
from ..nn.radial import cosine_cutoff
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .potential import MAX_Z


def _xavier_blocks(weight: torch.Tensor, n: int) -> None:
    """Xavier-uniform init of each of ``n`` row blocks (= the separate layers that were fused)."""
    for w in weight.data.chunk(n, dim=0):
        nn.init.xavier_uniform_(w)


def _linear(fan_in: int, fan_out: int, blocks: int = 1, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(fan_in, fan_out, bias=bias)
    _xavier_blocks(lin.weight, blocks)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class ExpNormalRBF(nn.Module):
    """``C(r) exp(-β (exp(-α r) - μ_k)²)``, α = 5/r_c, μ_k from exp(-r_c) to 1 (ViSNet/TorchMD-Net)."""

    def __init__(self, num_rbf: int, cutoff: float, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.alpha = 5.0 / self.cutoff
        start = math.exp(-self.cutoff)
        dtype = torch.get_default_dtype()
        means = torch.linspace(start, 1.0, num_rbf, dtype=torch.float64).to(dtype)
        betas = torch.full((num_rbf,), (2.0 / num_rbf * (1.0 - start)) ** -2, dtype=torch.float64).to(dtype)
        if trainable:
            self.means, self.betas = nn.Parameter(means), nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return cosine_cutoff(r, self.cutoff) * torch.exp(-self.betas * (torch.exp(-self.alpha * r) - self.means) ** 2)


class ViSMP(nn.Module):
    """One ViS-MP layer (see the module docstring); returns the residual updates."""

    def __init__(self, F: int, num_heads: int, last_layer: bool, trainable_vecnorm: bool):
        super().__init__()
        if F % num_heads:
            raise ValueError(f"hidden_channels ({F}) must be divisible by num_heads ({num_heads})")
        self.F, self.H, self.last_layer = F, num_heads, last_layer
        self.layernorm = nn.LayerNorm(F)
        self.vec_weight = nn.Parameter(torch.ones(F)) if trainable_vecnorm else None
        self.qkv = _linear(F, 3 * F, 3)
        # dk, dv (+ the edge-update gate in all but the last layer): all read f_ij, one matmul
        self.edge_proj = _linear(F, (2 if last_layer else 3) * F, 2 if last_layer else 3)
        nvec = 3 if last_layer else 5  # u¹, u², u³ (+ W_t, W_s for the edge update)
        self.vec_proj = _linear(F, nvec * F, nvec, bias=False)
        self.s_proj = _linear(F, 2 * F, 1, bias=False)
        self.o_proj = _linear(F, 3 * F, 1)

    def forward(self, xn, vec, f, f_self, src, dst, cut, d, rej_coeff: float):
        """``xn = self.layernorm(x)`` (computed by the caller, who also hands it to the Φ-Module).
        ``vec = None`` means all vectors are zero (first layer): the terms that read them are
        skipped (they are exactly zero, and so are their gradients)."""
        N, E, F, H = xn.shape[0], src.shape[0], self.F, self.H
        q, k, v = self.qkv(xn).split(F, dim=-1)
        # dk, dv [, edge-update gate]; with zero vectors the edge update vanishes: no gate needed
        w, bias = self.edge_proj.weight, self.edge_proj.bias
        if vec is None:
            w, bias = w[: 2 * F], bias[: 2 * F]
        ef = F_.silu(F_.linear(f, w, bias)).split(F, dim=-1)
        ef_s = F_.silu(F_.linear(f_self, w, bias)).split(F, dim=-1)
        dk, dv, dk_s, dv_s = ef[0], ef[1], ef_s[0], ef_s[1]
        k_j, v_j = torch.index_select(torch.cat([k, v], -1), 0, src).split(F, dim=-1)
        q_i = torch.index_select(q, 0, dst)

        # attention-weighted scalar messages, edges and self-loops (r = 0, d = 0, C = 1)
        attn = F_.silu((q_i * k_j * dk).view(E, H, F // H).sum(-1)) * cut.unsqueeze(-1)
        m = ((v_j * dv).view(E, H, F // H) * attn.unsqueeze(-1)).view(E, F)
        attn_s = F_.silu((q * k * dk_s).view(N, H, F // H).sum(-1))
        m_s = ((v * dv_s).view(N, H, F // H) * attn_s.unsqueeze(-1)).view(N, F)
        agg_x = m_s.index_add(0, dst, m)
        o1, o2, o3 = self.o_proj(agg_x).split(F, dim=-1)

        # vector messages  μ_ij = ṽ_j s¹ + d_ij s²  (self-loop: ṽ_i s¹, as d = 0)
        s1, s2 = F_.silu(self.s_proj(m)).split(F, dim=-1)
        mu = s2.unsqueeze(1) * d.unsqueeze(-1)
        if vec is None:
            dvec = torch.zeros(N, d.shape[1], F, dtype=mu.dtype, device=mu.device).index_add_(0, dst, mu)
            return o3, dvec, None, None  # u = 0, w_dot = 0: no edge update either
        if self.vec_weight is not None:
            vec = vec * self.vec_weight
        s1_s = F_.silu(F_.linear(m_s, self.s_proj.weight[:F]))
        mu = mu + torch.index_select(vec, 0, src) * s1.unsqueeze(1)
        agg_vec = (vec * s1_s.unsqueeze(1)).index_add(0, dst, mu)

        vp = self.vec_proj(vec).split(F, dim=-1)  # u¹, u², u³ [, W_t ṽ, W_s ṽ], each [N, M, F]
        u1, u2, u3 = vp[:3]
        dx = (u1 * u2).sum(1) * o2 + o3
        dvec = u3 * o1.unsqueeze(1) + agg_vec
        if self.last_layer:
            return dx, dvec, None, None
        # edge update (runtime geometry): rej(W_t ṽ_i, d)·rej(W_s ṽ_j, -d)
        w_t, w_s = vp[3], vp[4]
        a_i = torch.index_select(w_t, 0, dst)
        b_j = torch.index_select(w_s, 0, src)
        w_dot = (a_i * b_j).sum(1)
        if rej_coeff != 0.0:
            w_dot = w_dot + rej_coeff * (a_i * d.unsqueeze(-1)).sum(1) * (b_j * d.unsqueeze(-1)).sum(1)
        df = ef[2] * w_dot
        df_self = ef_s[2] * (w_t * w_s).sum(1)
        return dx, dvec, df, df_self


@register_model("visnet")
class ViSNet(Backbone):
    """ViSNet backbone.

    Args:
        hidden_channels: F. num_layers: ViS-MP layers. num_heads: attention heads (divide F).
        num_rbf: exp-normal radial functions. cutoff: Å. lmax: 1 or 2 (spherical harmonics).
        trainable_rbf: learn the RBF centres/widths. trainable_vecnorm: learned per-channel
            scale of the vector features before each layer and at the output.
        norm_eps: ε of the smooth norms in the output head (units of the vector features);
            0 = PyG's exact norm, which has a cusp where the vectors vanish (module docstring).
    """

    def __init__(self, hidden_channels: int = 256, num_layers: int = 9, num_heads: int = 8, num_rbf: int = 32,
                 cutoff: float = 5.0, lmax: int = 2, trainable_rbf: bool = False, trainable_vecnorm: bool = False,
                 norm_eps: float = NORM_EPS):
        super().__init__()
        if lmax not in (1, 2):
            raise ValueError(f"lmax must be 1 or 2, got {lmax}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not norm_eps >= 0:
            raise ValueError(f"norm_eps must be >= 0, got {norm_eps}")
        self.norm_eps = float(norm_eps)
        F = hidden_channels
        self.hidden_channels, self.lmax, self.num_heads = F, lmax, num_heads
        self.cutoff = float(cutoff)
        self.half = F // 2
        self.feature_dim = 2 * self.half
        self.layer_feature_dims = [F] * num_layers
        self.sh_irreps = list(range(1, lmax + 1))
        # rej(a,d)·rej(b,-d) = a·b + (|d|² - 2)(a·d)(b·d), |d|² = lmax for norm-normalised harmonics
        self.rej_coeff = float(lmax - 2)

        self.embedding = nn.Embedding(MAX_Z + 1, F)
        self.nb_embedding = nn.Embedding(MAX_Z + 1, F)
        self.rbf = ExpNormalRBF(num_rbf, cutoff, trainable_rbf)
        self.rbf_proj = _linear(num_rbf, 2 * F, 2)  # [neighbour-embedding filter, edge embedding]
        self.combine = _linear(2 * F, F)
        self.layers = nn.ModuleList(
            ViSMP(F, num_heads, last_layer=(i == num_layers - 1), trainable_vecnorm=trainable_vecnorm)
            for i in range(num_layers)
        )
        self.out_norm = nn.LayerNorm(F)
        self.out_vec_weight = nn.Parameter(torch.ones(F)) if trainable_vecnorm else None
        # first gated-equivariant output block: W₁ (F→F) and W₂ (F→F/2) fused; MLP 2F→F→2·F/2
        self.out_vec_proj = nn.Linear(F, F + self.half, bias=False)
        nn.init.xavier_uniform_(self.out_vec_proj.weight.data[:F])
        nn.init.xavier_uniform_(self.out_vec_proj.weight.data[F:])
        self.out_mlp = nn.Sequential(_linear(2 * F, F), nn.SiLU(), _linear(F, 2 * self.half))
        # W₃ of the second gated block (its scalar MLP is the Potential's energy head)
        self.out_norm_proj = _linear(self.half, self.half, bias=False)

    def geometry(self, graph: Graph):
        r = graph.dist
        unit = graph.vec / r.unsqueeze(-1)
        d = o3.spherical_harmonics(self.sh_irreps, unit, normalize=False, normalization="norm")
        return r, d, cosine_cutoff(r, self.cutoff), self.rbf(r)

    def forward(self, z: torch.Tensor, graph: Graph, extra: torch.Tensor | None = None) -> BackboneOutput:
        src, dst = graph.src, graph.dst
        F = self.hidden_channels
        r, d, cut, rbf = self.geometry(graph)
        rbf0 = self.rbf(r.new_zeros(1))  # self-loop radial features (r = 0)
        w_nb, w_edge = self.rbf_proj(rbf).split(F, dim=-1)
        w_nb = w_nb * cut.unsqueeze(-1)
        w_edge_self = self.rbf_proj(rbf0)[:, F:]

        x = self.embedding(z) if extra is None else self.embedding(z) + extra
        n = x.shape[0]
        nb = x.new_zeros(n, F).index_add_(0, dst, self.nb_embedding(torch.index_select(z, 0, src)) * w_nb)
        x = self.combine(torch.cat([x, nb], dim=-1))
        f = (torch.index_select(x, 0, dst) + torch.index_select(x, 0, src)) * w_edge
        f_self = 2.0 * x * w_edge_self
        vec = None  # zero vectors: the first layer skips the terms that read them

        layers = []
        for i, layer in enumerate(self.layers):
            xn = layer.layernorm(x)
            if i:
                layers.append(xn)  # the previous layer's output, as the network reads it
            dx, dvec, df, df_self = layer(xn, vec, f, f_self, src, dst, cut, d, self.rej_coeff)
            x = x + dx
            vec = dvec if vec is None else vec + dvec
            if df is not None:
                f = f + df
                f_self = f_self + df_self

        x = self.out_norm(x)
        layers.append(x)
        if self.out_vec_weight is not None:
            vec = vec * self.out_vec_weight
        w1, w2 = self.out_vec_proj(vec).split([F, self.half], dim=-1)
        h, g = self.out_mlp(torch.cat([x, smooth_norm(w1, dim=1, eps=self.norm_eps)], dim=-1)).split(self.half, dim=-1)
        v1 = g.unsqueeze(1) * w2
        features = torch.cat([F_.silu(h), smooth_norm(self.out_norm_proj(v1), dim=1, eps=self.norm_eps)], dim=-1)
        return BackboneOutput(features=features, layer_features=layers)
