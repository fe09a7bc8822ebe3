r"""Periodic input (cell, pbc) and stress by autograd through a homogeneous strain.

``Data.cell`` [B, 3, 3] Å (rows = lattice vectors; a ``Data`` holds [1, 3, 3], torch_geometric
concatenates them) and ``Data.pbc`` [B, 3] bool. Without a ``cell`` (or with ``pbc`` all
False) a structure is an isolated molecule.

Stress: apply a symmetric strain ε [B, 3, 3] (zero, requiring grad) to positions and cell,

    r_i → r_i (I + ε_b),     C → C (I + ε_b)          (row vectors),

so that every interatomic vector ``r_j − r_i + S·C`` becomes ``(r_j − r_i + S·C)(I + ε)``;
then the stress is

    σ_b = (1/V_b) ∂E_b/∂ε_b   (eV/Å³),   V_b = |det C_b|,

ASE's sign convention (positive = tensile: the energy rises when the cell is stretched), and
the virial is ``W = −V σ`` (eV).
"""
from __future__ import annotations

import torch

from ..nn.neighbors import CellError, check_cell


def cell_inputs(data, num_graphs: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(cell [B, 3, 3] float64, pbc [B, 3] bool) of a batch, or (None, None) for molecules.

    ``CellError`` for a cell of the wrong shape, a non-finite or singular periodic cell."""
    cell = getattr(data, "cell", None)
    pbc = getattr(data, "pbc", None)
    if cell is None and pbc is None:
        return None, None
    if cell is None or pbc is None:
        raise CellError("a periodic structure needs both Data.cell [B, 3, 3] and Data.pbc [B, 3]")
    cell = cell.reshape(-1, 3, 3) if cell.numel() == 9 * num_graphs else cell
    pbc = pbc.reshape(-1, 3).bool() if pbc.numel() == 3 * num_graphs else pbc
    if cell.shape != (num_graphs, 3, 3) or pbc.shape != (num_graphs, 3):
        raise CellError(f"cell must have shape [{num_graphs}, 3, 3] and pbc [{num_graphs}, 3], got "
                        f"{list(cell.shape)} and {list(pbc.shape)}")
    for b in range(num_graphs):
        check_cell(cell[b], pbc[b], b)
    if not bool(pbc.any()):
        return None, None
    return cell.double(), pbc


def apply_strain(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor):
    """(strained pos [N, 3], strained cell [B, 3, 3], ε [B, 3, 3] leaf) with ε = 0 requiring grad.

    The strain is symmetrised (``(ε + εᵀ)/2``) before use, so ∂E/∂ε is the symmetric stress."""
    eps = torch.zeros_like(cell, dtype=torch.float64).requires_grad_(True)
    sym = 0.5 * (eps + eps.transpose(1, 2))
    pos = pos.double()
    pos = pos + torch.einsum("ni,nij->nj", pos, sym[batch])
    cell = cell + cell @ sym
    return pos, cell, eps


def stress_from_strain_grad(grad: torch.Tensor | None, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """σ = (1/V) ∂E/∂ε [B, 3, 3] eV/Å³ (NaN for structures that are not periodic in all three directions)."""
    if grad is None:
        grad = torch.zeros_like(cell)
    volume = torch.linalg.det(cell).abs()
    full = pbc.all(-1)
    return torch.where(full[:, None, None], grad / volume[:, None, None], torch.full_like(grad, float("nan")))
