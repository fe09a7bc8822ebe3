"""The Φ-Module: a head that any backbone can host.

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

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..nn.graph import Graph
from ..nn.mlp import mlp
from .laplacian import dense_laplacian, edge_weights, pack_components
from .spectral import lowpass_project

RHO_MODES = ("untied", "tied")
ALPHA_NETS = ("projection", "gated")


@dataclass
class PhiOutput:
    """Per-atom φ and ρ [N]; per-molecule E_ES (eV, γ applied) [B], PDE residual [B], Σρ [B]."""

    phi: torch.Tensor
    charges: torch.Tensor
    energy: torch.Tensor
    pde_residual: torch.Tensor
    total_charge: torch.Tensor


class PhiModule(nn.Module):
    """Φ head.

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

    def forward(self, layer_features: list[torch.Tensor], graph: Graph) -> PhiOutput:
        if len(layer_features) != len(self.alpha_nets):
            raise ValueError(f"Φ-Module built for {len(self.alpha_nets)} layers, got features of {len(layer_features)}")
        blocks = pack_components(graph.edge_index, graph.batch, graph.components())
        field = 0.0
        for i, h in enumerate(layer_features):
            s = self.alpha_nets[i](h)
            if self.gates is not None:
                pooled = scatter(h, blocks.comp, dim=0, dim_size=blocks.num_components, reduce="mean")
                s = s * torch.sigmoid(self.gates[i](pooled))[blocks.comp]
            field = field + s
        L = dense_laplacian(blocks, graph.edge_index, edge_weights(graph.dist, self.cutoff, self.weight), self.laplacian)
        Y = lowpass_project(L, blocks.to_dense(field), blocks.mask, self.k, self.smearing)
        phi_d = Y[..., 0:1]
        L_phi = L @ phi_d
        rho_d = Y[..., 1:2] if self.rho == "untied" else L_phi
        phi, rho = blocks.from_dense(phi_d)[:, 0], blocks.from_dense(rho_d)[:, 0]
        residual = blocks.from_dense(L_phi - rho_d)[:, 0]
        B = graph.num_graphs
        e_es = 0.5 * scatter(phi * rho, graph.batch, dim=0, dim_size=B, reduce="sum")
        return PhiOutput(
            phi=phi,
            charges=rho,
            energy=self.gamma * e_es,
            pde_residual=scatter(residual.pow(2), graph.batch, dim=0, dim_size=B, reduce="mean"),
            total_charge=scatter(rho, graph.batch, dim=0, dim_size=B, reduce="sum"),
        )
