"""What every Φ head returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PhiOutput:
    """Per-atom potential φ [N] and charges ρ [N] (e); per structure: E_ES [B] (eV, any scale
    applied), the PDE residual mean_i (Lφ − ρ)_i² [B] (``None`` where ρ = Lφ by construction)
    and Σρ [B] (e)."""

    phi: torch.Tensor
    charges: torch.Tensor
    energy: torch.Tensor
    pde_residual: torch.Tensor | None
    total_charge: torch.Tensor
