r"""ViSNet: vector-scalar interactive message passing (Wang et al., Nat. Commun. 15, 313 (2024)).

Every atom carries scalars ``x`` [N, F] and "vectors" ``vec`` [N, (lmax+1)²-1, F]: the l = 1
(3 components, x/y/z) and, for ``lmax = 2``, the l = 2 (5 components) spherical-harmonic
channels stacked along dim 1. Every edge carries scalar features ``f_ij`` [E, F] that are
updated in every layer (runtime geometry calculation: the update reads the vectors of both
end atoms, which encodes angles and dihedrals without enumerating triplets/quadruplets).

The functional forms are those of ``torch_geometric.nn.models.ViSNet`` (itself the authors'
code); ``load_pyg_visnet_state`` copies a PyG ViSNet into a phizoo ``Potential`` so that
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


# ----------------------------------------------------------------------------- PyG weights

@torch.no_grad()
def load_pyg_visnet_state(potential, pyg_model) -> None:
    """Copy a ``torch_geometric.nn.models.ViSNet`` into a phizoo ``Potential`` with a ViSNet backbone,
    so that ``potential(data)["energy"]`` equals PyG's ``y`` (and forces its ``-dy/dpos``).

    Mapping (PyG → phizoo), ``rep = pyg_model.representation_model``:

    ============================================  ====================================================
    ``rep.embedding``                              ``backbone.embedding`` (rows 0…max_z-1)
    ``rep.distance_expansion.{means,betas}``       ``backbone.rbf.{means,betas}``
    ``rep.neighbor_embedding.embedding``           ``backbone.nb_embedding`` (rows 0…max_z-1)
    ``rep.neighbor_embedding.distance_proj``       ``backbone.rbf_proj`` rows [0, F)
    ``rep.edge_embedding.edge_proj``               ``backbone.rbf_proj`` rows [F, 2F)
    ``rep.neighbor_embedding.combine``             ``backbone.combine``
    layer ``l``: ``layernorm``                     ``layers[l].layernorm``
    ``vec_layernorm.weight``                       ``layers[l].vec_weight`` (must be ones if not trainable)
    ``q_proj, k_proj, v_proj``                     ``layers[l].qkv`` (row blocks)
    ``dk_proj, dv_proj, f_proj``                   ``layers[l].edge_proj`` (row blocks; no f_proj in the last)
    ``vec_proj, w_trg_proj, w_src_proj``           ``layers[l].vec_proj`` (rows: vec_proj, w_trg, w_src)
    ``s_proj`` (bias must be 0)                    ``layers[l].s_proj``
    ``o_proj``                                     ``layers[l].o_proj``
    ``rep.out_norm``, ``rep.vec_out_norm.weight``  ``backbone.out_norm``, ``backbone.out_vec_weight``
    output block 0 ``vec1_proj, vec2_proj``        ``backbone.out_vec_proj`` (row blocks)
    output block 0 ``update_net[0], [2]``          ``backbone.out_mlp[0], [2]``
    output block 1 ``vec1_proj``                   ``backbone.out_norm_proj``
    output block 1 ``update_net[0]``               ``potential.head[0]``
    output block 1 ``update_net[2]`` (row 0)       ``potential.head[2]`` (row 1, the vector gate, is unused
                                                   for energies in PyG too)
    ``prior_model.atomref`` (Z < max_z)            ``potential.element_energies`` (other Z: 0)
    ``std``                                        ``potential.scale`` (``shift`` = 0, ``mean`` must be 0)
    ============================================  ====================================================
    """
    bb = potential.backbone
    rep = pyg_model.representation_model
    F = bb.hidden_channels
    if not isinstance(bb, ViSNet):
        raise TypeError("potential.backbone must be a phizoo ViSNet")
    checks = {
        "hidden_channels": (rep.hidden_channels, F), "num_layers": (rep.num_layers, len(bb.layers)),
        "num_heads": (rep.num_heads, bb.num_heads), "lmax": (rep.lmax, bb.lmax),
        "cutoff": (float(rep.cutoff), bb.cutoff), "num_rbf": (rep.num_rbf, bb.rbf.means.numel()),
    }
    for key, (theirs, ours) in checks.items():
        if theirs != ours:
            raise ValueError(f"{key} differs: PyG {theirs}, phizoo {ours}")
    if rep.vecnorm_type not in (None, "none"):
        raise NotImplementedError(f"vecnorm_type={rep.vecnorm_type!r} is not implemented in phizoo's ViSNet")
    if type(rep.vis_mp_layers[0]).__name__ != "ViS_MP":
        raise NotImplementedError("the vertex variant (ViS_MP_Vertex) is not implemented in phizoo's ViSNet")
    if float(pyg_model.mean) != 0.0:
        raise ValueError("PyG mean is added per molecule; phizoo's shift is per atom: only mean = 0 maps")
    head = potential.head
    if head[0].out_features != bb.half or head[0].in_features != bb.feature_dim:
        raise ValueError(f"the Potential head must be {bb.feature_dim} -> {bb.half} -> 1 (head_hidden = F // 2)")

    def cp(dst, src):
        dst.copy_(src.to(dst))

    def cp_linear(dst: nn.Linear, *srcs: nn.Linear, rows=None):
        w = torch.cat([s.weight for s in srcs], dim=0)
        cp(dst.weight if rows is None else dst.weight[rows], w)
        if dst.bias is not None:
            b = torch.cat([s.bias for s in srcs], dim=0)
            cp(dst.bias if rows is None else dst.bias[rows], b)

    def cp_vecnorm(ours, theirs):
        if ours is None:
            if not torch.all(theirs.weight == 1):
                raise ValueError("PyG vector-norm weight is not one: build phizoo with trainable_vecnorm=True")
        else:
            cp(ours, theirs.weight)

    maxz = rep.embedding.num_embeddings
    for table in (bb.embedding, bb.nb_embedding):
        table.weight.zero_()
    cp(bb.embedding.weight[:maxz], rep.embedding.weight)
    cp(bb.nb_embedding.weight[:maxz], rep.neighbor_embedding.embedding.weight)
    cp(bb.rbf.means, rep.distance_expansion.means)
    cp(bb.rbf.betas, rep.distance_expansion.betas)
    cp_linear(bb.rbf_proj, rep.neighbor_embedding.distance_proj, rep.edge_embedding.edge_proj)
    cp_linear(bb.combine, rep.neighbor_embedding.combine)
    for ours, theirs in zip(bb.layers, rep.vis_mp_layers):
        if theirs.s_proj.bias is not None and bool(theirs.s_proj.bias.ne(0).any()):
            raise ValueError("PyG s_proj has a non-zero bias: phizoo's ViSNet has none (it would break "
                             "smoothness at the cutoff); see the README, ViSNet section")
        cp(ours.layernorm.weight, theirs.layernorm.weight)
        cp(ours.layernorm.bias, theirs.layernorm.bias)
        cp_vecnorm(ours.vec_weight, theirs.vec_layernorm)
        cp_linear(ours.qkv, theirs.q_proj, theirs.k_proj, theirs.v_proj)
        edge_srcs = [theirs.dk_proj, theirs.dv_proj] + ([] if ours.last_layer else [theirs.f_proj])
        cp_linear(ours.edge_proj, *edge_srcs)
        vec_srcs = [theirs.vec_proj] + ([] if ours.last_layer else [theirs.w_trg_proj, theirs.w_src_proj])
        cp_linear(ours.vec_proj, *vec_srcs)
        cp(ours.s_proj.weight, theirs.s_proj.weight)
        cp_linear(ours.o_proj, theirs.o_proj)
    cp(bb.out_norm.weight, rep.out_norm.weight)
    cp(bb.out_norm.bias, rep.out_norm.bias)
    cp_vecnorm(bb.out_vec_weight, rep.vec_out_norm)
    blk0, blk1 = pyg_model.output_model.output_network
    cp_linear(bb.out_vec_proj, blk0.vec1_proj, blk0.vec2_proj)
    cp_linear(bb.out_mlp[0], blk0.update_net[0])
    cp_linear(bb.out_mlp[2], blk0.update_net[2])
    cp_linear(bb.out_norm_proj, blk1.vec1_proj)
    cp_linear(head[0], blk1.update_net[0])
    cp(head[2].weight, blk1.update_net[2].weight[:1])
    cp(head[2].bias, blk1.update_net[2].bias[:1])
    potential.element_energies.zero_()
    atomref = pyg_model.prior_model.atomref.weight[:, 0] if pyg_model.prior_model is not None else None
    if atomref is not None:
        cp(potential.element_energies[: atomref.numel()], atomref)
    cp(potential.scale, pyg_model.std)
    potential.shift.zero_()
