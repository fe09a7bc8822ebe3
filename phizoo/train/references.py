"""Per-element linear reference energies and the scale/shift of the energy head.

``E_mol ≈ Σ_z n_z(mol) · E_ref(z)`` fitted by least squares in float64 on the TRAINING
split only (the public Φ-Module code fitted on every molecule, test set included). The
residual ``E_mol − Σ E_ref`` is what the network learns; its per-atom mean and spread give
``model.shift`` and ``model.scale``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..models.potential import MAX_Z


def _composition(dataset, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts [M, MAX_Z+1], energies [M] float64, atoms per molecule [M])."""
    counts = np.zeros((len(indices), MAX_Z + 1), dtype=np.float64)
    energies = np.zeros(len(indices), dtype=np.float64)
    natoms = np.zeros(len(indices), dtype=np.float64)
    for row, i in enumerate(indices):
        d = dataset[int(i)]
        z = d.z.long().numpy()
        counts[row] = np.bincount(z, minlength=MAX_Z + 1)[: MAX_Z + 1]
        energies[row] = float(d.energy.double().reshape(-1)[0])
        natoms[row] = len(z)
    return counts, energies, natoms


def fit_element_references(dataset, indices: Sequence[int], rcond: float | None = None) -> torch.Tensor:
    """Least-squares per-element energies (eV) from the molecules ``dataset[i] for i in indices``.

    Returns a float64 tensor [MAX_Z + 1]; elements absent from ``indices`` get 0. When the
    compositions are linearly dependent (e.g. every molecule has the same formula) the
    minimum-norm solution is returned, which still reproduces the training energies best.
    """
    if len(indices) == 0:
        raise ValueError("cannot fit element references on an empty training split")
    counts, energies, _ = _composition(dataset, indices)
    present = np.flatnonzero(counts.sum(0) > 0)
    coef, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=rcond)
    refs = np.zeros(MAX_Z + 1, dtype=np.float64)
    refs[present] = coef
    return torch.from_numpy(refs)


def residual_statistics(dataset, indices: Sequence[int], element_energies: torch.Tensor) -> dict[str, float]:
    """Per-atom mean/std of ``E − Σ E_ref`` and RMS of force components over ``indices``."""
    counts, energies, natoms = _composition(dataset, indices)
    refs = element_energies.double().numpy()
    per_atom = (energies - counts @ refs) / np.maximum(natoms, 1)
    sq, n = 0.0, 0
    for i in indices:
        f = getattr(dataset[int(i)], "forces", None)
        if f is not None:
            sq += float(f.double().pow(2).sum())
            n += f.numel()
    return {"shift": float(per_atom.mean()), "std": float(per_atom.std()),
            "force_rms": float(np.sqrt(sq / n)) if n else 0.0}


@torch.no_grad()
def apply_references(model, dataset, indices: Sequence[int], fit: bool = True, scale_shift: bool = True) -> dict:
    """Fit references on ``indices`` (the train split) and set ``model.element_energies``,
    ``model.shift`` (mean per-atom residual) and ``model.scale`` (force RMS when forces are
    present, else the per-atom residual std). Returns what was set."""
    info: dict = {}
    if fit:
        refs = fit_element_references(dataset, indices)
        model.element_energies.copy_(refs.to(model.element_energies))
        info["element_energies"] = {int(z): float(e) for z, e in enumerate(refs.tolist()) if e != 0.0}
    if scale_shift:
        stats = residual_statistics(dataset, indices, model.element_energies.cpu())
        scale = stats["force_rms"] or stats["std"]
        if not np.isfinite(scale) or scale <= 1e-12:
            scale = 1.0
        model.shift.fill_(stats["shift"])
        model.scale.fill_(scale)
        info.update(shift=stats["shift"], scale=float(scale))
    return info
