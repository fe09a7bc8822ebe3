"""Electron count and spin multiplicity: which (total charge, multiplicity) a structure can have.

``n_e = Σ_i Z_i − Q`` electrons; the spin multiplicity ``M = 2S + 1`` must be a positive integer
of the other parity than ``n_e`` (even ``n_e`` ↔ odd M) with ``M − 1 ≤ n_e``. The lowest
multiplicity is 1 for even and 2 for odd ``n_e``. Used by the models (checks of the input) and
by the data converters (checks of the records); plain Python, no torch.
"""
from __future__ import annotations


def lowest_multiplicity(n_electrons: float) -> int:
    return 1 + int(round(n_electrons)) % 2


def multiplicity_problem(n_electrons: float, charge: float, multiplicity: float) -> str | None:
    """A one-line description of what is wrong with (charge, multiplicity), or ``None``."""
    m = float(multiplicity)
    if m < 1 or m != round(m):
        return f"spin multiplicity {m:g} must be a positive integer (2S+1: 1 singlet, 2 doublet, 3 triplet)"
    if abs(charge - round(charge)) > 1e-6:  # fractional charge: no parity rule
        return None
    ne, m = int(round(n_electrons)), int(round(m))
    if (ne + m - 1) % 2:
        parity = "odd" if ne % 2 else "even"
        need = "even (2 doublet, 4 quartet, ...)" if ne % 2 else "odd (1 singlet, 3 triplet, ...)"
        return (f"total charge {charge:+g} e leaves {ne} electrons ({parity}), which cannot have spin "
                f"multiplicity {m}: it must be {need}")
    if m - 1 > ne:
        return f"spin multiplicity {m} needs at least {m - 1} electrons, but total charge {charge:+g} e leaves {ne}"
    return None
