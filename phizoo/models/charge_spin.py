r"""Total charge Q and spin multiplicity S of a structure: defaults, checks, and what a model sees.

Conventions (those of ASE/mace/fairchem users): ``Data.total_charge`` [B] (e) and ``Data.spin``
[B] = the spin multiplicity 2S_z+1 (1 singlet, 2 doublet, 3 triplet); in ASE
``atoms.info["charge"]`` and ``atoms.info["spin"]``. With ``n_e = Σ_i Z_i − Q`` electrons the
multiplicity must have the other parity (even n_e ↔ odd multiplicity) and satisfy
``S − 1 ≤ n_e``; an absent spin means the lowest one, 1 for even and 2 for odd n_e.

A charge-aware model (``charge_spin: true``) adds to every atom's initial scalar features

    e_i = W₂ · silu(W₁ · [Q, S − 1])           W₁: [H, 2], W₂: [F, H], no biases,

so ``e = 0`` for a neutral singlet and W₂ starts at zero: adding the embedding to a trained
model (fine-tuning) leaves its predictions unchanged until W₂ is trained. The map is not odd
in Q, so +Q and −Q give different energies. A model without it refuses Q ≠ 0 and any spin but
the lowest, instead of ignoring them (unless its Φ head places the net charge).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from ..electrons import multiplicity_problem


class ChargeSpinError(ValueError):
    """A total charge / spin multiplicity that is impossible or that the model cannot describe."""


class ChargeSpinEmbedding(nn.Module):
    """``[Q, S − 1]`` per structure -> [N, dim] features added after the element embedding."""

    def __init__(self, dim: int, hidden: int = 16):
        super().__init__()
        self.w1 = nn.Linear(2, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.w2.weight)

    def forward(self, total_charge: torch.Tensor, spin: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """total_charge, spin: [B] (e, multiplicity); batch: [N]. Returns [N, dim]."""
        x = torch.stack([total_charge, spin - 1.0], dim=-1).to(self.w1.weight.dtype)
        return torch.index_select(self.w2(nn.functional.silu(self.w1(x))), 0, batch)


def resolve_charge_spin(data, z: torch.Tensor, batch: torch.Tensor, num_graphs: int, *,
                        accepts_charge: bool, accepts_spin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q [B] float64 e, S [B] float64 multiplicity) of a batch, checked.

    ``ChargeSpinError`` naming the structure for: an impossible multiplicity for the electron
    count, a non-zero charge for a model that does not accept one (``accepts_charge``), a spin
    other than the lowest for a model without spin input (``accepts_spin``)."""
    dev = z.device
    q = getattr(data, "total_charge", None)
    q = torch.zeros(num_graphs, dtype=torch.float64, device=dev) if q is None else q.double().reshape(-1)
    s_given = getattr(data, "spin", None)
    if q.shape[0] != num_graphs or (s_given is not None and s_given.numel() != num_graphs):
        raise ChargeSpinError(f"total_charge/spin need one value per structure ({num_graphs}), got "
                              f"{q.shape[0]}/{None if s_given is None else s_given.numel()}")
    electrons = scatter(z.double(), batch, dim=0, dim_size=num_graphs, reduce="sum") - q
    integral = (q - q.round()).abs() < 1e-6
    lowest = torch.where(integral, 1.0 + electrons.round().remainder(2.0), torch.ones_like(q))
    if s_given is None:
        spin = lowest
    else:
        spin = s_given.double().reshape(-1)
        for b in range(num_graphs):
            problem = multiplicity_problem(float(electrons[b]), float(q[b]), float(spin[b]))
            if problem:
                raise ChargeSpinError(f"structure {b}: {problem}")
    if not accepts_charge and bool((q != 0).any()):
        b = int((q != 0).nonzero()[0, 0])
        raise ChargeSpinError(
            f"structure {b} has total charge {float(q[b]):+g} e, but this model was trained without total "
            f"charge and spin (charge_spin: false) and describes neutral structures only; use a model built "
            f"with charge_spin=True, or fine-tune this one on charged data with `phizoo finetune --charge-spin`")
    if not accepts_spin and bool((spin != lowest).any()):
        b = int((spin != lowest).nonzero()[0, 0])
        raise ChargeSpinError(
            f"structure {b} has spin multiplicity {int(spin[b])}, but this model was trained without spin "
            f"(charge_spin: false) and describes the lowest multiplicity ({int(lowest[b])}) only; use a model "
            f"built with charge_spin=True instead")
    return q, spin
