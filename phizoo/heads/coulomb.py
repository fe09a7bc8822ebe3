r"""The Coulomb head: per-atom charges with a fixed total, and their real electrostatic energy.

Charges (e), per structure b with total charge Q_b (``Data.total_charge``, default 0):

    q̃_i = MLP(h_i)                      latent charges from the backbone's final features h_i [N, F]
          (or ρ_i of the Φ head:          ``charges="phi"``)
    q_i = q̃_i + w_i (Q_b − Σ_{j∈b} q̃_j) / Σ_{j∈b} w_j

with w_i = 1 (``correction="uniform"``) or w_i = softplus(MLP_w(h_i)) + 10⁻³ (``"weighted"``: the
correction goes where the network puts it). Σ_{i∈b} q_i = Q_b holds exactly (to rounding).

Both spread the excess over the whole structure, so two neutral molecules far apart exchange
charge (±δ) and each one's energy depends on the other's presence. ``correction="local"``
neutralises over the backbone's cutoff neighbourhood instead, and places the net charge with the
learned weights:

    q_i = q̃_i − Σ_j K_ij q̃_j / S_j + w_i Q_b / Σ_{j∈b} w_j,   S_j = Σ_i K_ij,
    K_ij = u(r_ij) over the backbone's graph edges (periodic images included), K_ii = 1,

u the polynomial envelope of the cutoff r_c (1 at 0; value, slope and curvature 0 at r_c). K is
symmetric, so Σ_i q_i = Σ_i q̃_i − Σ_j q̃_j S_j / S_j + Q_b = Q_b exactly; in a neutral structure
every group of atoms further than r_c from the rest is neutral on its own, so neutral molecules
are size consistent; a net charge goes where the weights put it (on the ion of an ion–molecule
pair, once learned); and q is as smooth in the positions as u (no jump when molecules meet).

Energy: ``electrostatics.coulomb_energy`` of these charges, ½ Σ_{i≠j} k_e q_i q_j erf(r_ij/(√2σ))/r_ij
(direct sum over all pairs of a molecule; Ewald or PME from torch-pme for periodic cells). Nothing
here is cut off at the backbone's cutoff: two ions 30 Å apart interact with q₁q₂k_e/r.

Dipole: μ_b = Σ_i q_i (r_i − c_b) [B, 3] e·Å (``electrostatics.dipole_moment``).

Trained from energies and forces alone the charges are latent (LES-style): their scale is physical
(they enter a real 1/r law) but nothing ties them to a population analysis; with the ``charges`` /
``dipole`` loss terms (``phizoo.train.losses``) they are fitted to reference charges and dipoles.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..nn.mlp import mlp
from ..nn.radial import polynomial_envelope
from .electrostatics import METHODS, coulomb_energy, dipole_moment

CHARGE_SOURCES = ("latent", "phi")
CORRECTIONS = ("uniform", "weighted", "local")


@dataclass
class CoulombOutput:
    """charges [N] e (Σ = Q per structure), energy [B] eV (model dtype), dipole [B, 3] e·Å (float64)."""

    charges: torch.Tensor
    energy: torch.Tensor
    dipole: torch.Tensor


class CoulombHead(nn.Module):
    """Coulomb head on a backbone with ``feature_dim`` final features.

    Args:
        feature_dim: F of the backbone's final per-atom features.
        charges: ``"latent"`` (an MLP on the features) or ``"phi"`` (the Φ head's ρ; the model needs Φ).
        correction: how the total charge is imposed, ``"uniform"``, ``"weighted"`` or ``"local"``
            (module docstring).
        sigma: Gaussian smearing σ (Å) of the pair kernel erf(r/(√2σ))/r.
        hidden: hidden width of the charge MLP (default F/2).
        periodic: ``"pme"`` (default, O(N log N)) or ``"ewald"`` (O(N^1.5), for small cells) for
            periodic cells (torch-pme); both accurate to ~1e-8 in energy.
        cutoff: real-space cutoff (Å) of the periodic sum (default max(8, 6σ)); molecules use no cutoff.
    """

    def __init__(self, feature_dim: int, charges: str = "latent", correction: str = "uniform", sigma: float = 1.0,
                 hidden: int | None = None, periodic: str = "pme", cutoff: float | None = None):
        super().__init__()
        if charges not in CHARGE_SOURCES:
            raise ValueError(f"coulomb option charges={charges!r}; choose one of {CHARGE_SOURCES}")
        if correction not in CORRECTIONS:
            raise ValueError(f"coulomb option correction={correction!r}; choose one of {CORRECTIONS}")
        if periodic not in METHODS:
            raise ValueError(f"coulomb option periodic={periodic!r}; choose one of {METHODS}")
        if not sigma > 0:
            raise ValueError(f"coulomb option sigma must be > 0 Å, got {sigma!r}")
        self.source, self.correction, self.sigma = charges, correction, float(sigma)
        self.method, self.cutoff = periodic, cutoff
        outputs = (1 if charges == "latent" else 0) + (1 if correction != "uniform" else 0)
        self.net = mlp([feature_dim, hidden or max(feature_dim // 2, 1), outputs]) if outputs else None

    def forward(self, features: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, num_graphs: int,
                total_charge: torch.Tensor, cell: torch.Tensor | None = None, pbc: torch.Tensor | None = None,
                phi_charges: torch.Tensor | None = None, graph=None, graph_cutoff: float | None = None
                ) -> CoulombOutput:
        """features [N, F]; pos [N, 3] Å (strained when computing stress); batch [N];
        total_charge [B] e; cell [B, 3, 3], pbc [B, 3] or None; phi_charges [N] (``charges="phi"``);
        graph (``phizoo.nn.graph.Graph``, built from ``pos``) and its cutoff r_c (Å): ``correction="local"``."""
        raw = self.net(features) if self.net is not None else features.new_zeros(features.shape[0], 0)
        if self.source == "phi":
            if phi_charges is None:
                raise ValueError("the Coulomb head takes Φ's charges (charges='phi') but the model has no Φ head")
            q0 = phi_charges.to(features.dtype)
        else:
            q0 = raw[:, 0]
        if self.correction == "local":  # neutral per neighbourhood; Q_b (and rounding) placed by w below
            if graph is None or graph_cutoff is None:
                raise ValueError("correction='local' needs the backbone's graph and cutoff")
            q0 = local_neutral(q0, graph.edge_index, graph.dist.to(q0.dtype), graph_cutoff)
        if self.correction != "uniform":
            w = nn.functional.softplus(raw[:, -1]) + 1e-3
        else:
            w = torch.ones_like(q0)
        excess = total_charge.to(q0.dtype) - scatter(q0, batch, dim=0, dim_size=num_graphs, reduce="sum")
        wsum = scatter(w, batch, dim=0, dim_size=num_graphs, reduce="sum")
        q = q0 + w * (excess / wsum)[batch]
        energy = coulomb_energy(q, pos, batch, num_graphs, cell, pbc, self.sigma, self.method, self.cutoff)
        return CoulombOutput(charges=q, energy=energy.to(features.dtype),
                             dipole=dipole_moment(q, pos, batch, num_graphs))

    def extra_repr(self) -> str:
        return (f"charges={self.source!r}, correction={self.correction!r}, sigma={self.sigma}, "
                f"periodic={self.method!r}, cutoff={self.cutoff}")


def local_neutral(q: torch.Tensor, edge_index: torch.Tensor, dist: torch.Tensor, cutoff: float) -> torch.Tensor:
    """q_i − Σ_j K_ij q_j / S_j with K_ij = u(r_ij) on the edges, K_ii = 1, S_j = Σ_i K_ij (module
    docstring): [N] charges whose sum over every group of atoms isolated beyond ``cutoff`` is 0.
    ``edge_index`` [2, E] (source j, target i) must hold every edge in both directions."""
    src, dst = edge_index
    k = polynomial_envelope(dist, cutoff)
    s = 1.0 + scatter(k, src, dim=0, dim_size=q.shape[0], reduce="sum")
    t = q / s
    return q - t - scatter(k * t[src], dst, dim=0, dim_size=q.shape[0], reduce="sum")


def coulomb_option_defaults() -> dict:
    """Name -> default of every ``coulomb_options`` key (the constructor's signature, less feature_dim)."""
    sig = inspect.signature(CoulombHead.__init__)
    return {n: p.default for n, p in list(sig.parameters.items())[2:]}


def resolve_coulomb_options(options: dict | None) -> dict:
    """All options with defaults filled in (what the spec stores); unknown keys are refused."""
    defaults = coulomb_option_defaults()
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise KeyError(f"unknown coulomb option(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    return {**defaults, **options}


def build_coulomb(feature_dim: int, **options) -> CoulombHead:
    return CoulombHead(feature_dim, **resolve_coulomb_options(options))
