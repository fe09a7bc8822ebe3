"""The paper's Φ-Module (Zhdanov & Kurenkov, arXiv 2505.14606), kept as ``formulation="paper"``.

Discontinuous by design: the ``k`` modes are counted per connected component, so the energy
jumps when two components merge or split (two molecules coming within the cutoff; shown by
``tests/heads/phi/test_formulations.py``). Use the continuous default (``continuous.py``) for MD.

Per connected component of every molecule (see ``laplacian.py``):

1. ``L`` = Laplacian of the backbone's radius graph with smooth weights ``w(r_ij)``.
2. α-Net: after each interaction layer ``l`` a small per-atom MLP turns the scalar
   features ``h_l`` [N, F_l] into fields ``s_l`` (one channel for φ, one for ρ when ρ is
   untied). Their spectral coefficients are ``α_l = U_kᵀ s_l``; summed over layers,
   ``φ = U_k Σ_l α_l = P_k Σ_l s_l`` with ``P_k`` the projector onto the k smoothest
   modes (``spectral.py``). Projection, not a convolution over atom index, makes the
   coefficients permutation-equivariant and the result independent of eigenvector signs.
   ``alpha_net="gated"`` multiplies each layer's field by a gate computed from the mean
   features of the component (still permutation invariant, lets the coefficients depend
   on the whole component).
3. ρ: ``tied`` (default) ρ = L φ = U_k Λ_k α (neutral by construction, PDE residual ≡ 0);
        ``untied`` ρ = P_k Σ_l s^ρ_l (own coefficients β_l; the PDE residual couples φ and ρ).
4. ``E_ES = ½ Σ_i φ_i ρ_i`` per component, summed per molecule, times a learnable γ.
5. Losses returned per molecule: ``mean_i (Lφ - ρ)_i²`` with the same L, and Σρ - Q.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter, subgraph

from ...nn.graph import Graph
from ...nn.mlp import mlp
from . import spectral
from .output import PhiOutput
from .laplacian import dense_laplacian, edge_weights, laplacian_matvec, pack_components, sparse_laplacian
from .sparse import sparse_lowpass_project
from .spectral import lowpass_project

RHO_MODES = ("untied", "tied")
ALPHA_NETS = ("projection", "gated")


class PaperPhi(nn.Module):
    """Φ head in the paper's formulation.

    Args:
        feature_dims: width of the scalar features handed over after each layer.
        cutoff: graph cutoff in Å (the backbone's).
        k: number of Laplacian modes per component.
        rho: ``"tied"`` (default) or ``"untied"``.
        alpha_net: ``"projection"`` (default) or ``"gated"``.
        laplacian: ``"combinatorial"`` (default, L = D - W) or ``"normalized"``.
        weight: edge weight envelope, ``"cosine"`` (default) or ``"polynomial"``.
        smearing: width τ of the occupation step at mode k (eigenvalue units).
        hidden: α-Net width. gamma_init: initial scale γ of E_ES.
    """

    formulation = "paper"

    def __init__(
        self,
        feature_dims: list[int],
        cutoff: float,
        k: int = 9,
        rho: str = "tied",
        alpha_net: str = "projection",
        laplacian: str = "combinatorial",
        weight: str = "cosine",
        smearing: float = 0.05,
        hidden: int = 32,
        gamma_init: float = 0.1,
    ):
        super().__init__()
        if rho not in RHO_MODES:
            raise ValueError(f"phi rho must be one of {RHO_MODES}, got {rho!r}")
        if alpha_net not in ALPHA_NETS:
            raise ValueError(f"phi alpha_net must be one of {ALPHA_NETS}, got {alpha_net!r}")
        if k < 1:
            raise ValueError(f"phi k must be >= 1, got {k}")
        self.cutoff, self.k, self.rho, self.alpha_net_kind = float(cutoff), int(k), rho, alpha_net
        self.laplacian, self.weight, self.smearing = laplacian, weight, float(smearing)
        channels = 2 if rho == "untied" else 1
        self.alpha_nets = nn.ModuleList(mlp([f, hidden, channels]) for f in feature_dims)
        if rho == "tied":
            # A constant field is in every P_k (zero mode) and L·1 = 0: with tied ρ a bias on
            # the field changes nothing, so it would only collect rounding noise (which Adam
            # amplifies to full-size steps). Drop it.
            for net in self.alpha_nets:
                net[-1].bias = None
        self.gates = nn.ModuleList(mlp([f, hidden, channels]) for f in feature_dims) if alpha_net == "gated" else None
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def forward(self, layer_features: list[torch.Tensor], graph: Graph,
                total_charge: torch.Tensor | None = None) -> PhiOutput:
        """``total_charge`` is not used: ρ is neutral (tied) or pushed towards Q by the charge loss."""
        if getattr(graph, "shifts", None) is not None:
            raise ValueError("the paper formulation of the Φ-Module does not support periodic systems (k modes "
                             "per connected component are not supercell consistent); use formulation: continuous")
        if len(layer_features) != len(self.alpha_nets):
            raise ValueError(f"Φ-Module built for {len(self.alpha_nets)} layers, got features of {len(layer_features)}")
        comp, n_comp = graph.components()
        field = 0.0
        for i, h in enumerate(layer_features):
            s = self.alpha_nets[i](h)
            if self.gates is not None:
                pooled = scatter(h, comp, dim=0, dim_size=n_comp, reduce="mean")
                s = s * torch.sigmoid(self.gates[i](pooled))[comp]
            field = field + s
        weights = edge_weights(graph.dist, self.cutoff, self.weight)
        Y = self._project(field, graph, weights)
        phi = Y[:, 0]
        L_phi = laplacian_matvec(graph.edge_index, weights, phi, self.laplacian)
        rho = Y[:, 1] if self.rho == "untied" else L_phi
        B = graph.num_graphs
        e_es = 0.5 * scatter(phi * rho, graph.batch, dim=0, dim_size=B, reduce="sum")
        return PhiOutput(
            phi=phi,
            charges=rho,
            energy=self.gamma * e_es,
            pde_residual=scatter((L_phi - rho).pow(2), graph.batch, dim=0, dim_size=B, reduce="mean"),
            total_charge=scatter(rho, graph.batch, dim=0, dim_size=B, reduce="sum"),
        )

    def _project(self, field: torch.Tensor, graph: Graph, weights: torch.Tensor) -> torch.Tensor:
        """P_k of every component applied to ``field`` [N, ch]: batched dense eigensolver for
        components of at most ``spectral.DENSE_MAX`` atoms, the sparse solver for larger ones."""
        comp, n_comp = graph.components()
        sizes = torch.bincount(comp, minlength=n_comp)
        large = sizes > spectral.DENSE_MAX
        if not bool(large.any()):
            return self._project_dense(field, graph.edge_index, weights, graph.batch, (comp, n_comp))
        Y = torch.zeros_like(field)
        small = ~large[comp]
        if bool(small.any()):
            nodes = small.nonzero()[:, 0]
            ei, w = subgraph(nodes, graph.edge_index, weights, relabel_nodes=True, num_nodes=field.shape[0])
            labels, inverse = torch.unique(comp[nodes], return_inverse=True)
            Y = Y.index_put((nodes,), self._project_dense(field[nodes], ei, w, graph.batch[nodes],
                                                           (inverse, int(labels.numel()))))
        for c in large.nonzero()[:, 0].tolist():
            nodes = (comp == c).nonzero()[:, 0]
            ei, w = subgraph(nodes, graph.edge_index, weights, relabel_nodes=True, num_nodes=field.shape[0])
            rows, cols, vals = sparse_laplacian(ei, w, nodes.numel(), self.laplacian)
            Yc = sparse_lowpass_project(rows, cols, vals, nodes.numel(), field[nodes], self.k, self.smearing)
            Y = Y.index_put((nodes,), Yc)
        return Y

    def _project_dense(self, field, edge_index, weights, batch, components) -> torch.Tensor:
        blocks = pack_components(edge_index, batch, components)
        L = dense_laplacian(blocks, edge_index, weights, self.laplacian)
        return blocks.from_dense(lowpass_project(L, blocks.to_dense(field), blocks.mask, self.k, self.smearing))
