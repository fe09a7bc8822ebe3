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


def _composition(dataset, indices: Sequence[int], forces: bool = False):
    """(counts [M, MAX_Z+1], energies [M] float64, atoms per molecule [M], (Σ F², #components))."""
    counts = np.zeros((len(indices), MAX_Z + 1), dtype=np.float64)
    energies = np.zeros(len(indices), dtype=np.float64)
    natoms = np.zeros(len(indices), dtype=np.float64)
    f_sq, f_n = 0.0, 0
    for row, i in enumerate(indices):
        d = dataset[int(i)]
        z = d.z.long().numpy()
        counts[row] = np.bincount(z, minlength=MAX_Z + 1)[: MAX_Z + 1]
        energies[row] = float(d.energy.double().reshape(-1)[0])
        natoms[row] = len(z)
        f = getattr(d, "forces", None) if forces else None
        if f is not None:
            f_sq += float(f.double().pow(2).sum())
            f_n += f.numel()
    return counts, energies, natoms, (f_sq, f_n)


def _lstsq(counts: np.ndarray, energies: np.ndarray, rcond=None) -> np.ndarray:
    present = np.flatnonzero(counts.sum(0) > 0)
    coef, *_ = np.linalg.lstsq(counts[:, present], energies, rcond=rcond)
    refs = np.zeros(MAX_Z + 1, dtype=np.float64)
    refs[present] = coef
    return refs


def fit_element_references(dataset, indices: Sequence[int], rcond: float | None = None) -> torch.Tensor:
    """Least-squares per-element energies (eV) from the molecules ``dataset[i] for i in indices``.

    Returns a float64 tensor [MAX_Z + 1]; elements absent from ``indices`` get 0. When the
    compositions are linearly dependent (e.g. every molecule has the same formula) the
    minimum-norm solution is returned, which still reproduces the training energies best.
    """
    if len(indices) == 0:
        raise ValueError("cannot fit element references on an empty training split")
    counts, energies, _, _ = _composition(dataset, indices)
    return torch.from_numpy(_lstsq(counts, energies, rcond))


def _statistics(counts, energies, natoms, fsum, refs: np.ndarray) -> dict[str, float]:
    per_atom = (energies - counts @ refs) / np.maximum(natoms, 1)
    f_sq, f_n = fsum
    return {"shift": float(per_atom.mean()), "std": float(per_atom.std()),
            "force_rms": float(np.sqrt(f_sq / f_n)) if f_n else 0.0}


def residual_statistics(dataset, indices: Sequence[int], element_energies: torch.Tensor) -> dict[str, float]:
    """Per-atom mean/std of ``E − Σ E_ref`` and RMS of force components over ``indices``."""
    counts, energies, natoms, fsum = _composition(dataset, indices, forces=True)
    return _statistics(counts, energies, natoms, fsum, element_energies.double().cpu().numpy())


@torch.no_grad()
def apply_references(model, dataset, indices: Sequence[int], fit: bool = True, scale_shift: bool = True) -> dict:
    """Fit references on ``indices`` (the train split) and set ``model.element_energies``,
    ``model.shift`` (mean per-atom residual) and ``model.scale`` (force RMS when forces are
    present, else the per-atom residual std) and, with ``scale_shift``, the backbone's own data
    statistics (``backbone.fit_data_statistics``, if it has one). Reads every training structure once
    (twice with backbone statistics).
    Returns what was set."""
    info: dict = {}
    if not (fit or scale_shift):
        return info
    if len(indices) == 0:
        raise ValueError("cannot fit element references on an empty training split")
    counts, energies, natoms, fsum = _composition(dataset, indices, forces=scale_shift)
    if fit:
        refs = _lstsq(counts, energies)
        model.element_energies.copy_(torch.from_numpy(refs).to(model.element_energies))
        info["element_energies"] = {int(z): float(e) for z, e in enumerate(refs.tolist()) if e != 0.0}
    if scale_shift:
        stats = _statistics(counts, energies, natoms, fsum, model.element_energies.double().cpu().numpy())
        scale = stats["force_rms"] or stats["std"]
        if not np.isfinite(scale) or scale <= 1e-12:
            scale = 1.0
        model.shift.fill_(stats["shift"])
        model.scale.fill_(scale)
        info.update(shift=stats["shift"], scale=float(scale))
        fit_backbone = getattr(model.backbone, "fit_data_statistics", None)  # e.g. MACE's avg_num_neighbors
        if fit_backbone is not None:
            info.update(fit_backbone(dataset, indices))
    return info
