r"""E2GNN: efficient equivariant GNN with a scalar–vector dual representation and a global
virtual node (Yang et al., "Efficient equivariant model for machine learning interatomic
potentials", npj Computational Materials 2024).

Per atom: scalars ``x`` [N, F] and vectors ``v`` [N, 3, F] (l = 1, Cartesian). Per virtual
node ``g``: scalars ``x_g`` [C, F] and vectors ``v_g`` [C, 3, F]. Every layer:

1. virtual node -> atoms   x_i += MLP([x_i, x_g(i)]),   v_i += W (v_i + v_g(i))
2. message (j -> i)        a_ij = MLP(x_j) ⊙ filter(r_ij) ⊙ env(r_ij)  = (a¹, a², a³)
                           x_i = (x_i + Σ_j a³_ij) / √2
                           v_i += Σ_j (a¹_ij v_j + a²_ij e_ij) / √F,  e_ij = (r_i - r_j)/|r_i - r_j|
3. update                  (U v, V v) = W v;  (b¹, b², b³) = MLP([x, |V v|])
                           x += b² / √2 + x ⊙ tanh(b³);   v += b¹ ⊙ U v
4. atoms -> virtual node   x_g += MLP([mean_{i∈g} x_i, x_g]),  v_g += W' (mean_{i∈g} v_i + v_g)

``layer_features`` are the atom scalars after step 3 of every layer (what the Φ-Module reads).

Virtual node (``virtual_node=``):

* ``"screened"`` (default): every atom has its own view of the global node, the *screened
  diffusion* of the atom features over the radius graph, ``g = μ_v (L + μ_v I)⁻¹ h`` with
  ``L`` the graph Laplacian (polynomial-envelope weights, zero with zero slope and curvature at
  the cutoff) and ``μ_v = virtual_node_mu``. As ``μ_v → 0`` this is the mean over the connected
  component (``μ(L + μ)⁻¹ → `` projector onto ``L``'s null space), i.e. the paper's one node per
  molecule; for ``μ_v > 0`` it is a smooth function of the positions, so the energy stays C¹
  when fragments meet or part, and block-diagonal, so far-apart fragments add (size consistent).
  Screening length ≈ √(deg/μ_v) graph hops. Solves as in the Φ-Module (``phizoo.heads.phi.poisson``).
* ``"component"``: one node per connected component (size consistent, but the energy jumps
  when two components merge: kept for the checkpoints trained with it).
* ``"molecule"``: one node per molecule (the paper's code; not size consistent). ``"none"``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..nn.graph import Graph
from ..nn.mlp import mlp, smooth_norm
from ..nn.radial import polynomial_envelope
from ..heads.phi.poisson import ScreenedLaplacian, screened_solve
from ..registry import register_model
from .backbone import Backbone, BackboneOutput
from .potential import MAX_Z

VIRTUAL_NODE_MODES = ("screened", "component", "molecule", "none")


class VirtualNodes:
    """How atoms and virtual nodes exchange: ``count`` rows of virtual-node state, ``gather``
    [count, ...] -> [N, ...], ``pool`` [N, C] -> [count, C]."""

    def __init__(self, mode: str, graph: Graph, weights: torch.Tensor, mu: float):
        if mode == "screened":
            self.count, self.index = graph.batch.shape[0], None
            self.mu = weights.new_tensor(mu)
            self.weights = weights
            self.op = ScreenedLaplacian(graph.edge_index, weights, self.mu, graph.batch, graph.num_graphs)
        else:
            self.index, self.count = (graph.batch, int(graph.num_graphs)) if mode == "molecule" else graph.components()

    def gather(self, g: torch.Tensor) -> torch.Tensor:
        return g if self.index is None else g[self.index]

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return self.mu * screened_solve(self.weights, self.mu, h, self.op)
        return scatter(h, self.index, dim=0, dim_size=self.count, reduce="mean")


class ScaledSiLU(nn.Module):
    """SiLU(x) / 0.6 (keeps activations of unit scale; used throughout E2GNN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x) * (1.0 / 0.6)


class GaussianRBF(nn.Module):
    """Gaussians on the scaled distance x = r / r_c: exp(-(x - μ_k)² / 2Δ²), μ_k = k/(K-1), Δ = 1/(K-1).

    No envelope here: E2GNN applies it after the learned filter (see ``E2GNN.forward``).
    """

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        if num_rbf < 1:
            raise ValueError(f"num_rbf must be >= 1, got {num_rbf}")
        self.cutoff = float(cutoff)
        self.register_buffer("centers", torch.linspace(0.0, 1.0, num_rbf) if num_rbf > 1 else torch.zeros(1))
        width = 1.0 / (num_rbf - 1) if num_rbf > 1 else 1.0
        self.coeff = -0.5 / width**2

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = (r / self.cutoff).unsqueeze(-1)
        return torch.exp(self.coeff * (x - self.centers) ** 2)


class E2GNNLayer(nn.Module):
    """One E2GNN interaction: virtual node -> atoms, message, update, atoms -> virtual node.

    Args:
        F: channels. virtual_node: exchange with the virtual node.
        update_virtual: compute step 4 (the last layer's is never read, so it is not built).
    """

    def __init__(self, F: int, virtual_node: bool = True, update_virtual: bool = True):
        super().__init__()
        self.F = F
        self.virtual_node = virtual_node
        self.update_virtual = virtual_node and update_virtual
        if virtual_node:
            # MLP([x_i, x_g]) with its first layer split into an atom part and a virtual-node
            # part, so the virtual-node part runs on C rows and is gathered afterwards.
            self.vn_to_atom_x = nn.Linear(F, F)
            self.vn_to_atom_g = nn.Linear(F, F, bias=False)
            self.vn_to_atom_rest = nn.Sequential(ScaledSiLU(), nn.Linear(F, F), ScaledSiLU())
            self.vn_to_atom_vec = nn.Linear(F, F, bias=False)
        self.message_mlp = mlp([F, max(F // 2, 1), 3 * F], activation=ScaledSiLU)
        self.update_vec = nn.Linear(F, 2 * F, bias=False)
        self.update_mlp = mlp([2 * F, F, 3 * F], activation=ScaledSiLU)
        if self.update_virtual:
            self.atom_to_vn_x = mlp([2 * F, F, F], activation=ScaledSiLU, final_activation=True)
            self.atom_to_vn_vec = nn.Linear(F, F, bias=False)

    def forward(self, x, vec, gx, gvec, vn: VirtualNodes | None, filt, unit, src, dst):
        n, F = x.shape
        # 1. virtual node -> atoms
        if self.virtual_node:
            x = x + self.vn_to_atom_rest(self.vn_to_atom_x(x) + vn.gather(self.vn_to_atom_g(gx)))
            vec = vec + self.vn_to_atom_vec(vec + vn.gather(gvec))
        # 2. message j -> i (filt carries the envelope, 1/√3 and, on its first 2F channels, 1/√F)
        a1, a2, a3 = torch.split(self.message_mlp(x)[src] * filt, F, dim=-1)
        dvec = a1.unsqueeze(1) * vec[src] + a2.unsqueeze(1) * unit.unsqueeze(-1)
        x = (x + scatter(a3, dst, dim=0, dim_size=n, reduce="sum")) * (1.0 / math.sqrt(2.0))
        vec = vec + scatter(dvec, dst, dim=0, dim_size=n, reduce="sum")
        # 3. update
        uv, vv = torch.split(self.update_vec(vec), F, dim=-1)
        b1, b2, b3 = torch.split(self.update_mlp(torch.cat([x, smooth_norm(vv, dim=1)], dim=-1)), F, dim=-1)
        x = x + b2 * (1.0 / math.sqrt(2.0)) + x * torch.tanh(b3)
        vec = vec + b1.unsqueeze(1) * uv
        # 4. atoms -> virtual node (pooled over the virtual node's atoms; one pooling for both)
        if self.update_virtual:
            pooled = vn.pool(torch.cat([x, vec.reshape(n, 3 * F)], dim=-1))
            num_comp = vn.count
            gx = gx + self.atom_to_vn_x(torch.cat([pooled[:, :F], gx], dim=-1))
            gvec = gvec + self.atom_to_vn_vec(pooled[:, F:].reshape(num_comp, 3, F) + gvec)
        return x, vec, gx, gvec


@register_model("e2gnn")
class E2GNN(Backbone):
    """E2GNN backbone.

    Args:
        hidden_channels: F (scalar and vector channels).
        num_layers: interaction layers.
        num_rbf: Gaussian radial functions on [0, cutoff].
        cutoff: radius-graph cutoff (Å).
        envelope_exponent: p of the polynomial envelope (value, slope and curvature 0 at the cutoff).
        virtual_node: ``"screened"`` (default), ``"component"``, ``"molecule"`` or ``"none"`` (see the
            module docstring). virtual_node_mu: μ_v of the screened virtual node.
    """

    def __init__(self, hidden_channels: int = 256, num_layers: int = 6, num_rbf: int = 128, cutoff: float = 6.0,
                 envelope_exponent: int = 5, virtual_node: str = "screened",
                 virtual_node_mu: float = 0.05):
        super().__init__()
        if virtual_node not in VIRTUAL_NODE_MODES:
            raise ValueError(f"virtual_node must be one of {VIRTUAL_NODE_MODES}, got {virtual_node!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        F = int(hidden_channels)
        self.cutoff = float(cutoff)
        self.feature_dim = F
        self.layer_feature_dims = [F] * num_layers
        self.num_layers = int(num_layers)
        self.envelope_exponent = int(envelope_exponent)
        self.virtual_node = virtual_node
        self.virtual_node_mu = float(virtual_node_mu)
        self.embedding = nn.Embedding(MAX_Z + 1, F)
        nn.init.uniform_(self.embedding.weight, -math.sqrt(3.0), math.sqrt(3.0))
        self.rbf = GaussianRBF(num_rbf, cutoff)
        # Radial filters of all layers in one linear map: [E, num_layers * 3F].
        self.filters = nn.Linear(num_rbf, num_layers * 3 * F)
        scale = torch.full((3 * F,), 1.0 / math.sqrt(3.0))
        scale[: 2 * F] /= math.sqrt(F)
        self.register_buffer("filter_scale", scale.repeat(num_layers), persistent=False)
        use_vn = virtual_node != "none"
        if use_vn:
            self.vn_embedding = nn.Parameter(torch.randn(F))
        self.layers = nn.ModuleList(
            E2GNNLayer(F, virtual_node=use_vn, update_virtual=i < num_layers - 1) for i in range(num_layers)
        )

    def forward(self, z: torch.Tensor, graph: Graph, extra: torch.Tensor | None = None) -> BackboneOutput:
        x = self.embedding(z) if extra is None else self.embedding(z) + extra
        n, F = x.shape
        vec = x.new_zeros(n, 3, F)
        src, dst = graph.src, graph.dst
        unit = -graph.vec / graph.dist.unsqueeze(-1)  # e_ij = (r_i - r_j) / r_ij, pointing at the target
        env = polynomial_envelope(graph.dist, self.cutoff, p=self.envelope_exponent).unsqueeze(-1)
        # (W·rbf + b)·env·scale for all layers as one matrix product: [rbf·env, env] @ [W, b]ᵀ·scale
        # (the envelope multiplies the bias too, so every filter vanishes smoothly at the cutoff).
        basis = torch.cat([self.rbf(graph.dist) * env, env], dim=-1)
        weight = torch.cat([self.filters.weight, self.filters.bias.unsqueeze(-1)], dim=-1) * self.filter_scale[:, None]
        filt = torch.split(basis @ weight.T, 3 * F, dim=-1)
        if self.virtual_node != "none":
            vn = VirtualNodes(self.virtual_node, graph, env.squeeze(-1), self.virtual_node_mu)
            gx = self.vn_embedding.expand(vn.count, F)
            gvec = x.new_zeros(vn.count, 3, F)
        else:
            vn, gx, gvec = None, None, None
        layers = []
        for layer, f in zip(self.layers, filt):
            x, vec, gx, gvec = layer(x, vec, gx, gvec, vn, f, unit, src, dst)
            layers.append(x)
        return BackboneOutput(features=x, layer_features=layers)
