"""Plain error metrics of a model on a split.

Reported as they are: MAE and RMSE of the total energy per molecule (meV) and per atom
(meV/atom), MAE and RMSE of force components (meV/Å). Nothing is added to the MAE (the
public Φ-Module code added the target mean and the PDE term), and the errors are formed
from float64 totals, element references included.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..train.data import chunk, loader
from ..train.distributed import DistInfo, all_reduce_dict
from ..train.losses import batch_errors, finalize_errors

MEV = 1000.0


def has_forces(dataset, indices: Sequence[int]) -> bool:
    return len(indices) > 0 and getattr(dataset[int(indices[0])], "forces", None) is not None


class UnknownElementError(ValueError):
    """The data holds elements for which the model has no reference energy (never trained on them)."""


def check_elements(model, z: torch.Tensor, where: str = "the data") -> None:
    """Raise ``UnknownElementError`` naming the elements of ``z`` without a reference energy in
    ``model`` (when the model has references at all: its training data fixed them)."""
    from ase.data import chemical_symbols

    refs = model.element_energies
    if not bool((refs != 0).any()):
        return
    present = torch.unique(z)
    missing = present[refs[present.to(refs.device)].cpu() == 0].tolist()
    if missing:
        names = ", ".join(f"{chemical_symbols[int(e)]} (Z={int(e)})" for e in missing)
        known = ", ".join(chemical_symbols[int(e)] for e in (refs != 0).nonzero().reshape(-1).tolist())
        raise UnknownElementError(f"{where} holds {names}, for which the model has no reference energy (it was "
                                  f"never trained on them), so its energies would be meaningless; evaluate it on "
                                  f"structures made of {known} only")


def error_sums(model, dataset, indices: Sequence[int], batch_size: int = 32, device: torch.device | str = "cpu",
               forces: bool | None = None, info: DistInfo | None = None, predictions: dict | None = None,
               progress: bool = False, check_references: bool = False) -> dict[str, float]:
    """Summed float64 errors over ``indices`` (sharded over ranks when ``info`` is distributed).

    ``predictions`` (a dict) is filled with per-structure numpy arrays when given.
    ``check_references``: refuse elements the model has no reference energy for
    (:func:`check_elements`).
    """
    info = info or DistInfo()
    device = torch.device(device)
    forces = has_forces(dataset, indices) if forces is None else forces
    mine = list(indices)[info.rank::info.world_size]
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    keep = predictions is not None
    rows: dict[str, list] = {k: [] for k in ("index", "natoms", "energy_pred", "energy_true", "energy_ref",
                                            "forces_pred", "forces_true")} if keep else {}
    batches = chunk(range(len(mine)), batch_size)
    it = loader(dataset, mine, batches)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, total=len(batches), desc="evaluate", leave=False)
    pos_in = 0
    for batch in it:
        batch = batch.to(device)
        if check_references:
            check_elements(model, batch.z, f"the evaluated data (structures {pos_in}..{pos_in + batch.num_graphs - 1} "
                                           f"of the split)")
        with torch.set_grad_enabled(forces):  # forces need autograd; energies alone do not
            out = model(batch, compute_forces=forces, create_graph=False)
        for k, v in batch_errors(out, batch).items():
            sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64)) + v
        if keep:
            nat = torch.bincount(batch.batch, minlength=batch.num_graphs)
            refs = torch.zeros(batch.num_graphs, dtype=torch.float64, device=device).index_add_(
                0, batch.batch, model.element_energies[batch.z])
            rows["index"].append(np.asarray(mine[pos_in:pos_in + batch.num_graphs]))
            rows["natoms"].append(nat.cpu().numpy())
            rows["energy_pred"].append(out["energy"].detach().double().cpu().numpy())
            rows["energy_true"].append(batch.energy.double().reshape(-1).cpu().numpy())
            rows["energy_ref"].append(refs.cpu().numpy())
            if forces and getattr(batch, "forces", None) is not None:
                rows["forces_pred"].append(out["forces"].detach().double().cpu().numpy())
                rows["forces_true"].append(batch.forces.double().cpu().numpy())
        pos_in += batch.num_graphs
    model.train(was_training)
    if keep:
        for k, v in rows.items():
            predictions[k] = np.concatenate(v) if v else np.zeros(0)
    return all_reduce_dict(sums, info, device)


def to_mev(metrics_ev: dict[str, float]) -> dict[str, float]:
    """eV-based metric names -> report names in meV."""
    names = {"energy_mae": "energy_mae_meV", "energy_rmse": "energy_rmse_meV",
             "energy_mae_per_atom": "energy_mae_meV_per_atom", "energy_rmse_per_atom": "energy_rmse_meV_per_atom",
             "forces_mae": "forces_mae_meV_per_A", "forces_rmse": "forces_rmse_meV_per_A"}
    out = {}
    for k, v in metrics_ev.items():
        if k in names:
            out[names[k]] = v * MEV
        else:
            out[k] = v
    return out


def evaluate(model, dataset, indices: Sequence[int], batch_size: int = 32, device: torch.device | str = "cpu",
             forces: bool | None = None, return_predictions: bool = False, progress: bool = False):
    """Metrics of ``model`` on ``dataset[indices]`` in meV units (see module docstring).

    Raises ``UnknownElementError`` when the data holds elements the model has no reference for.

    Returns ``metrics`` or ``(metrics, predictions)`` with per-structure arrays
    (``energy_pred``/``energy_true``/``energy_ref`` in eV, ``natoms``, ``forces_*`` [M, 3]).
    """
    preds: dict | None = {} if return_predictions else None
    sums = error_sums(model, dataset, indices, batch_size, device, forces, predictions=preds, progress=progress,
                      check_references=True)
    metrics = to_mev(finalize_errors(sums))
    metrics["n_structures"] = int(sums.get("n_mol", 0))
    metrics["n_force_components"] = int(sums.get("n_f", 0))
    return (metrics, preds) if return_predictions else metrics
