r"""The continuous Φ-Module (phizoo's default): a screened Poisson equation on the whole batch.

The paper projects an α-Net field onto the ``k`` lowest Laplacian modes of each connected
component, ``φ = U_k U_kᵀ s``, and ties ``ρ = Lφ``. Counting modes per component makes the
energy jump whenever components merge or split. Here the hard projector is replaced by a
smooth spectral filter with a fixed spectral scale ``μ``:

    φ = f(L) s,   f(λ) = 1 / (1 + λ/μ),   i.e.   (L + μ I) φ = μ s          (screened Poisson)
    ρ = L φ  (= μ (s − φ)),               E_ES = ½ Σ_i φ_i ρ_i = ½ φᵀ L φ ≥ 0   per structure

In the eigenbasis ``L = Σ u_i λ_i u_iᵀ`` the coefficients of φ are those of ``s`` times
``1/(1 + λ_i/μ)``: modes with ``λ ≪ μ`` pass, ``λ ≫ μ`` are suppressed as ``μ/λ`` — the paper's
"k lowest modes" with a smooth edge instead of a mode count. Properties by construction:

* a matrix function of ``L``: independent of eigenvector signs and of degenerate bases;
* ``L`` of a batch is block-diagonal, and so is ``(L + μ)⁻¹``: structures are independent and
  far-apart fragments add (size consistency) with no connected components computed;
* edges enter with weights ``w(r) → 0`` with zero slope at the cutoff, and ``(L + μ)⁻¹`` is
  smooth in ``L`` (spectrum ≥ μ > 0): the energy is C¹ under every topology change;
* ``1ᵀ(L + μ)⁻¹ = 1ᵀ/μ`` and ``1ᵀL = 0``: every connected component is neutral, Σρ = 0,
  so there is no PDE or charge loss to train (both would be identically zero). ρ is computed
  as ``μ (s − φ)`` where the solve is a dense Cholesky (no second pass over the edges; Σρ = 0
  to the rounding of the solve) and as ``L φ`` on the CG path (Σρ = 0 to rounding of the sum);
* no learnable scale γ: E_ES fixes the scale of φ and ρ (up to a common sign).

``μ`` is learned (``μ = μ_min + exp(θ)``, dimensionless, in units of the edge weights); the
screening length is ≈ √(deg/μ) graph hops. With ``net_charge`` a second α-Net channel gives
logits ``t``; the structure's total charge ``Q`` is placed as ``Q·softmax_structure(t)``:
``ρ = Lφ + Q p`` (Σρ = Q exactly) and ``E_ES = ½ φ·ρ``.

Cost: one Cholesky per batch (structures ≤ ``poisson.DENSE_MAX`` atoms) or O(E) CG
iterations, plus one α-Net on the concatenated layer features.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import scatter, softmax

from ...nn.graph import Graph
from ...nn.mlp import mlp
from .laplacian import edge_weights, laplacian_matvec
from .output import PhiOutput
from .poisson import ScreenedLaplacian, screened_solve


class ContinuousPhi(nn.Module):
    """Continuous Φ head.

    Args:
        feature_dims: widths of the scalar features after each backbone layer.
        cutoff: graph cutoff (Å, the backbone's).
        mu: initial spectral scale μ (> mu_min). learn_mu: train μ.
        mu_min: lower bound of μ (bounds the condition number (λ_max + μ)/μ of the solves).
        hidden: α-Net width. weight: edge-weight envelope, ``"cosine"`` or ``"polynomial"``.
        net_charge: place the total charge Q with learned per-atom weights (charge-aware models).
        init_scale: scale of the α-Net's last layer at initialisation (E_ES starts small).
    """

    formulation = "continuous"

    def __init__(self, feature_dims: list[int], cutoff: float, mu: float = 0.2, learn_mu: bool = True,
                 mu_min: float = 0.01, hidden: int = 32, weight: str = "polynomial", net_charge: bool = False,
                 init_scale: float = 0.1):
        super().__init__()
        if not mu > mu_min > 0:
            raise ValueError(f"phi mu must exceed mu_min > 0, got mu={mu}, mu_min={mu_min}")
        edge_weights(torch.zeros(1), 1.0, weight)  # validates the envelope name
        self.cutoff, self.weight, self.mu_min, self.net_charge = float(cutoff), weight, float(mu_min), bool(net_charge)
        self.alpha_net = mlp([sum(feature_dims), hidden, 2 if net_charge else 1])
        # A constant field s is in the null space of E_ES (φ = s, ρ = 0): an output bias would
        # only collect rounding noise (which Adam amplifies into full-size steps). Drop it.
        self.alpha_net[-1].bias = None
        with torch.no_grad():
            self.alpha_net[-1].weight.mul_(init_scale)
        self.log_mu = nn.Parameter(torch.tensor(math.log(mu - mu_min)), requires_grad=learn_mu)
        self.num_layers = len(feature_dims)

    @property
    def mu(self) -> torch.Tensor:
        return self.mu_min + self.log_mu.exp()

    def forward(self, layer_features: list[torch.Tensor], graph: Graph,
                total_charge: torch.Tensor | None = None) -> PhiOutput:
        """layer_features: [N, F_l] per layer; total_charge: [B] e (used with ``net_charge``)."""
        if len(layer_features) != self.num_layers:
            raise ValueError(f"Φ-Module built for {self.num_layers} layers, got features of {len(layer_features)}")
        out = self.alpha_net(torch.cat(layer_features, dim=-1))
        s = out[:, :1]
        w = edge_weights(graph.dist, self.cutoff, self.weight)
        mu = self.mu.to(s.dtype)
        op = ScreenedLaplacian(graph.edge_index, w, mu, graph.batch, graph.num_graphs)
        phi = (mu * screened_solve(w, mu, s, op))[:, 0]
        rho = mu * (s[:, 0] - phi) if op.dense else laplacian_matvec(graph.edge_index, w, phi)
        if self.net_charge:
            q = phi.new_zeros(graph.num_graphs) if total_charge is None else total_charge.to(phi).reshape(-1)
            rho = rho + q[graph.batch] * softmax(out[:, 1], graph.batch, num_nodes=phi.shape[0])
        B = graph.num_graphs
        return PhiOutput(
            phi=phi,
            charges=rho,
            energy=0.5 * scatter(phi * rho, graph.batch, dim=0, dim_size=B, reduce="sum"),
            pde_residual=None,
            total_charge=scatter(rho, graph.batch, dim=0, dim_size=B, reduce="sum"),
        )
