"""Plain error metrics of a model on a split.

Reported as they are: MAE and RMSE of the total energy per molecule (meV) and per atom
(meV/atom), MAE and RMSE of force components (meV/Å). Nothing is added to the MAE (the
public Φ-Module code added the target mean and the PDE term), and the errors are formed
from float64 totals, element references included.

Models with a Coulomb head (``coulomb_charges`` [N] e, ``dipole`` [B, 3] e·Å) evaluated on data
with reference ``charges`` / ``dipole`` also get (:func:`charge_metrics`, :func:`dipole_metrics`):
charge MAE/RMSE (e, per atom) and Pearson r, overall and per element; dipole MAE/RMSE per
Cartesian component (e·Å; vector references only) and the MAE/RMSE of |μ| (e·Å; vector or
magnitude references, QM9 stores |μ|). Either missing: those keys are absent.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..train.data import chunk, loader
from ..train.distributed import DistInfo, all_reduce_dict
from ..train.losses import batch_errors, finalize_errors

MEV = 1000.0
# per-atom charges (e), their atomic numbers, per-structure dipoles (e·Å): see _charge_rows
CHARGE_ROWS = ("charges_pred", "charges_true", "charges_z", "dipole_pred", "dipole_true")


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
               progress: bool = False, check_references: bool = False,
               keep_forces: bool = True) -> dict[str, float]:
    """Summed float64 errors over ``indices`` (sharded over ranks when ``info`` is distributed).

    ``predictions`` (a dict) is filled with per-structure numpy arrays when given (the force
    arrays only with ``keep_forces``), and with per-atom charges / per-structure dipoles where
    the model has a Coulomb head and the data holds references (:func:`_charge_rows`).
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
                                            "forces_pred", "forces_true", *CHARGE_ROWS)} if keep else {}
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
            if keep_forces and forces and getattr(batch, "forces", None) is not None:
                rows["forces_pred"].append(out["forces"].detach().double().cpu().numpy())
                rows["forces_true"].append(batch.forces.double().cpu().numpy())
            for k, v in _charge_rows(out, batch).items():
                rows[k].append(v)
        pos_in += batch.num_graphs
    model.train(was_training)
    if keep:
        for k, v in rows.items():
            predictions[k] = np.concatenate(v) if v else np.zeros(0)
    return all_reduce_dict(sums, info, device)


def _charge_rows(out: dict, batch) -> dict[str, np.ndarray]:
    """Per-atom charges (e) with their atomic numbers, and per-structure dipoles (e·Å), of one
    batch as float64 numpy arrays: ``charges_*`` where the model has a Coulomb head
    (``coulomb_charges``) and the batch holds ``charges``; ``dipole_pred`` [B, 3] and
    ``dipole_true`` [B, 3] (vectors) or [B, 1] (magnitudes) where the model predicts ``dipole``
    and the batch holds ``dipole``. Empty when either side is missing."""
    rows: dict[str, np.ndarray] = {}
    q = getattr(batch, "charges", None)
    if q is not None and "coulomb_charges" in out and q.numel() == batch.z.numel():
        rows["charges_pred"] = out["coulomb_charges"].detach().double().cpu().numpy()
        rows["charges_true"] = q.detach().double().reshape(-1).cpu().numpy()
        rows["charges_z"] = batch.z.detach().cpu().numpy()
    mu = getattr(batch, "dipole", None)
    if mu is not None and "dipole" in out:
        pred = out["dipole"].detach().double().cpu().numpy().reshape(-1, 3)
        ref = mu.detach().double().cpu().numpy().reshape(-1)
        if ref.size in (pred.shape[0], 3 * pred.shape[0]):
            rows["dipole_pred"] = pred
            rows["dipole_true"] = ref.reshape(pred.shape[0], -1)
    return rows


def pearson_r(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Pearson correlation of two 1-D arrays (``numpy.corrcoef``); ``None`` with fewer than two
    values or when either side is constant (r undefined)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.size < 2 or not (np.ptp(pred) > 0 and np.ptp(true) > 0):
        return None
    return float(np.corrcoef(pred, true)[0, 1])


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    err = np.asarray(err, dtype=np.float64)
    return float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))


def charge_metrics(pred: np.ndarray, true: np.ndarray, z: np.ndarray) -> dict:
    """Per-atom charge errors against reference charges (all in e).

    Returns ``charges_mae_e``, ``charges_rmse_e``, ``charges_pearson_r`` (``None`` where undefined),
    ``n_charges`` (atoms) and ``charges_per_element``: chemical symbol -> ``n``, ``mae_e``,
    ``rmse_e``, ``pearson_r``, ``mean_pred_e``, ``mean_ref_e`` (elements in order of Z).
    Empty dict for no atoms.
    """
    from ase.data import chemical_symbols

    pred, true, z = (np.asarray(pred, dtype=np.float64).reshape(-1), np.asarray(true, dtype=np.float64).reshape(-1),
                     np.asarray(z).reshape(-1))
    if pred.size == 0:
        return {}
    mae, rmse = _mae_rmse(pred - true)
    per: dict[str, dict] = {}
    for e in np.unique(z):
        m = z == e
        e_mae, e_rmse = _mae_rmse(pred[m] - true[m])
        per[chemical_symbols[int(e)]] = {"n": int(m.sum()), "mae_e": e_mae, "rmse_e": e_rmse,
                                         "pearson_r": pearson_r(pred[m], true[m]),
                                         "mean_pred_e": float(pred[m].mean()), "mean_ref_e": float(true[m].mean())}
    return {"charges_mae_e": mae, "charges_rmse_e": rmse, "charges_pearson_r": pearson_r(pred, true),
            "n_charges": int(pred.size), "charges_per_element": per}


def dipole_metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    """Dipole errors (e·Å) of predicted dipoles ``pred`` [B, 3] against references ``true``
    [B, 3] (vectors) or [B, 1] (magnitudes |μ|, as QM9 stores).

    Returns ``dipole_reference`` ("vector" or "magnitude"), ``n_dipoles``, ``dipole_norm_mae_eA`` /
    ``dipole_norm_rmse_eA`` (errors of |μ|) and, for vector references, ``dipole_mae_eA`` /
    ``dipole_rmse_eA`` over the Cartesian components (3 per structure). Empty dict for no structures.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
    true = np.asarray(true, dtype=np.float64).reshape(pred.shape[0], -1) if pred.size else np.zeros((0, 1))
    if pred.shape[0] == 0:
        return {}
    vector = true.shape[1] == 3
    norm_true = np.linalg.norm(true, axis=1) if vector else true[:, 0]
    norm_mae, norm_rmse = _mae_rmse(np.linalg.norm(pred, axis=1) - norm_true)
    out = {"dipole_reference": "vector" if vector else "magnitude", "n_dipoles": int(pred.shape[0])}
    if vector:
        out["dipole_mae_eA"], out["dipole_rmse_eA"] = _mae_rmse(pred - true)
    out.update(dipole_norm_mae_eA=norm_mae, dipole_norm_rmse_eA=norm_rmse)
    return out


def charge_dipole_metrics(predictions: dict) -> dict:
    """:func:`charge_metrics` and :func:`dipole_metrics` of ``evaluate``'s predictions (the keys
    of whichever the model and the data both have; empty dict for neither)."""
    out: dict = {}
    if len(predictions.get("charges_pred", [])):
        out.update(charge_metrics(predictions["charges_pred"], predictions["charges_true"],
                                  predictions["charges_z"]))
    if len(predictions.get("dipole_pred", [])):
        out.update(dipole_metrics(predictions["dipole_pred"], predictions["dipole_true"]))
    return out


def charge_training(model) -> str | None:
    """How the Coulomb head's charges were trained, from the checkpoint card (``model.card``):
    ``"supervised"`` (``loss.charges`` > 0), ``"dipole-supervised"`` (only ``loss.dipole`` > 0),
    ``"latent"`` (neither: energies and forces only). ``None`` when the card cannot tell: no card or
    no loss section (a model built in Python), or a fine-tuned model whose own run fitted no charge
    or dipole (the run it started from may have)."""
    card = getattr(model, "card", None)
    loss = ((card or {}).get("hyperparameters") or {}).get("loss") if isinstance(card, dict) else None
    if not isinstance(loss, dict) or "charges" not in loss:
        return None
    try:
        charges, dipole = float(loss.get("charges") or 0.0), float(loss.get("dipole") or 0.0)
    except (TypeError, ValueError):
        return None
    if charges > 0:
        return "supervised"
    if dipole > 0:
        return "dipole-supervised"
    if (card.get("dataset") or {}).get("finetuned_from"):
        return None
    return "latent"


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
    """Metrics of ``model`` on ``dataset[indices]`` in meV units (see module docstring), plus the
    charge (e) and dipole (e·Å) metrics of :func:`charge_dipole_metrics` where the model has a
    Coulomb head and the data holds reference charges / dipoles.

    Raises ``UnknownElementError`` when the data holds elements the model has no reference for.

    Returns ``metrics`` or ``(metrics, predictions)`` with per-structure arrays
    (``energy_pred``/``energy_true``/``energy_ref`` in eV, ``natoms``, ``forces_*`` [M, 3]) and,
    where available, ``charges_pred``/``charges_true`` [N] e with ``charges_z`` [N], and
    ``dipole_pred`` [B, 3] / ``dipole_true`` [B, 3] or [B, 1] e·Å (empty arrays otherwise).
    """
    preds: dict = {}  # always gathered: Pearson r needs every charge, not sums
    sums = error_sums(model, dataset, indices, batch_size, device, forces, predictions=preds, progress=progress,
                      check_references=True, keep_forces=return_predictions)
    metrics = to_mev(finalize_errors(sums))
    # the training-log names (charges_mae, dipole_mae) are replaced by the unit-named keys below
    metrics.pop("charges_mae", None)
    metrics.pop("dipole_mae", None)
    metrics["n_structures"] = int(sums.get("n_mol", 0))
    metrics["n_force_components"] = int(sums.get("n_f", 0))
    metrics.update(charge_dipole_metrics(preds))
    return (metrics, preds) if return_predictions else metrics
