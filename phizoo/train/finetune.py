"""Fine-tuning a trained potential on new data.

Defaults differ from training from scratch: a smaller learning rate, a short warm-up, the
model's element references and scale/shift are KEPT (they belong to the weights) unless
``refit_references`` asks to refit them on the new training split (needed when the new
data use another level of theory or contain new elements).
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import make_config
from .data import describe_dataset, split_indices
from .trainer import Trainer

FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "optimizer": {"lr": 1.0e-4, "weight_decay": 0.0},
    "schedule": {"warmup_steps": 0, "warmup_epochs": 0.5, "min_lr_ratio": 0.1},
    "ema": {"decay": 0.99},
}


def _default_splits(dataset, val_fraction: float, seed: int) -> dict[str, list[int]]:
    try:
        out = {"train": split_indices(dataset, "train"), "val": split_indices(dataset, "val")}
        try:
            out["test"] = split_indices(dataset, "test")
        except KeyError:
            pass
        return out
    except KeyError:
        n = len(dataset)
        perm = np.random.default_rng(seed).permutation(n).tolist()
        n_val = max(1, int(round(val_fraction * n)))
        return {"train": perm[n_val:], "val": perm[:n_val]}


def add_charge_spin(model):
    """Make a model trained on neutral structures charge-aware, in place, without changing it.

    Adds the total-charge/spin embedding (``phizoo/models/charge_spin.py``; its output layer W₂
    starts at zero) and, for a continuous Φ head, the net-charge channel of the α-Net (a zero
    weight row: the total charge is first spread evenly, Σρ = Q). Predictions for neutral,
    lowest-spin structures are unchanged until training moves the new weights; the spec is updated
    so the fine-tuned checkpoint rebuilds (strictly) as a charge-aware model. Returns the model.
    """
    from ..models.charge_spin import ChargeSpinEmbedding

    if model.charge_spin is not None:
        return model
    ref = next(model.parameters())
    spec = copy.deepcopy(model.spec)
    model.charge_spin = ChargeSpinEmbedding(model.backbone.embedding_dim).to(ref.device, ref.dtype)
    spec.setdefault("potential", {})["charge_spin"] = True
    phi = model.phi
    if phi is not None and getattr(phi, "formulation", None) == "continuous" and not phi.net_charge:
        last = phi.alpha_net[-1]
        grown = torch.nn.Linear(last.in_features, 2, bias=False).to(ref.device, ref.dtype)
        with torch.no_grad():
            grown.weight.zero_()
            grown.weight[:1] = last.weight
        phi.alpha_net[-1], phi.net_charge = grown, True
        spec["phi_options"]["net_charge"] = True
    model.spec = spec
    return model


def prepare_for_finetuning(model, freeze_backbone: bool = False, reset_head: bool = False, seed: int = 0):
    """Freeze the backbone and/or re-initialise the energy head (in place); returns the model."""
    if reset_head:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for m in [*model.head.modules(), *model.layer_readouts.modules()]:
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    if freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return model


def missing_references(model, dataset, indices: Sequence[int]) -> list[int]:
    """Elements present in ``indices`` whose reference energy in the model is exactly 0."""
    seen: set[int] = set()
    for i in indices:
        seen.update(int(z) for z in dataset[int(i)].z.unique())
    refs = model.element_energies
    return sorted(z for z in seen if float(refs[z]) == 0.0)


def finetune(model, dataset, splits: dict[str, Sequence[int]] | None = None, *, epochs: int | None = None,
             lr: float | None = None, batch_size: int | None = None, freeze_backbone: bool = False,
             refit_references: bool = False, reset_head: bool = False, loss: dict | None = None,
             config: dict | None = None, output_dir: str | Path | None = None, device: str | None = None,
             resume: bool = False, val_fraction: float = 0.1, callbacks: Sequence = (),
             dataset_info: dict | None = None, inplace: bool = False, charge_spin: bool = False):
    """Fine-tune ``model`` on ``dataset``; returns ``(tuned_model, metrics)``.

    Args:
        model: a ``Potential`` (e.g. ``phizoo.load_model(...)`` or ``load_checkpoint(...)``).
        dataset: map-style dataset of PyG ``Data`` with ``energy`` (and ``forces``).
        splits: ``{"train", "val"[, "test"]}`` indices; default: the dataset's stored splits, else a
            random ``val_fraction`` validation split.
        freeze_backbone: train only the energy head (and the Φ head, if any).
        refit_references: refit per-element references on the new training split
            (and scale/shift too when ``reset_head``).
        reset_head: re-initialise the energy head.
        charge_spin: make a model trained on neutral data charge-aware first (:func:`add_charge_spin`),
            to fine-tune it on charged structures / other spin states.
        loss: loss weights (``{"energy": 1, "forces": 10, ...}``); config: any further training config.
    Returns:
        the selected (best-validation, EMA) model and a dict with ``val``/``test`` metrics (meV),
        ``best_epoch``, ``history`` and ``checkpoint`` (when ``output_dir`` is given).
    """
    cfg_update: dict[str, Any] = copy.deepcopy(config or {})
    cfg = make_config(FINETUNE_DEFAULTS, cfg_update)
    if epochs is not None:
        cfg["epochs"] = int(epochs)
    if lr is not None:
        cfg["optimizer"]["lr"] = float(lr)
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    if loss:
        cfg = make_config(cfg, {"loss": loss})
    cfg["references"] = {"fit": bool(refit_references), "scale_shift": bool(refit_references and reset_head)}
    if splits is None:
        splits = _default_splits(dataset, val_fraction, int(cfg["seed"]))
    if not inplace:
        model = copy.deepcopy(model)
    if charge_spin:
        add_charge_spin(model)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    prepare_for_finetuning(model, freeze_backbone=freeze_backbone, reset_head=reset_head, seed=int(cfg["seed"]))
    if not refit_references:
        missing = missing_references(model, dataset, splits["train"])
        if missing:
            warnings.warn(f"elements {missing} have no reference energy in the model; pass "
                          "refit_references=True (--refit-references) unless that is intended", stacklevel=2)
    info = {**describe_dataset(dataset), **(dataset_info or {})}
    card = getattr(model, "card", None) or {}
    info["finetuned_from"] = {"checkpoint": getattr(model, "checkpoint_path", None), "dataset": card.get("dataset"),
                              "metrics": card.get("metrics")}
    trainer = Trainer(model, dataset, splits, cfg, output_dir=output_dir, callbacks=callbacks, device=device,
                      dataset_info=info)
    summary = trainer.fit(resume=resume)
    summary["finetune"] = {"freeze_backbone": freeze_backbone, "refit_references": refit_references,
                           "reset_head": reset_head, "charge_spin": charge_spin}
    tuned = trainer.best_model
    tuned.train(False)
    return tuned, summary
