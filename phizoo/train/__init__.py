"""Training, fine-tuning and the pieces they are made of.

``Trainer`` (trainer.py: the loop; schedule.py, state.py, outputs.py: its optimiser schedule, resumable
state and what it writes), ``finetune.finetune`` (also ``phizoo.finetune``), ``train_from_config`` (below),
configuration (config.py), losses, EMA, element references, DDP helpers and data adapters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .config import load_config, make_config  # noqa: F401
from .state import load_trainer_state  # noqa: F401
from .trainer import Trainer, TrainingInterrupted  # noqa: F401


def build_from_config(cfg: dict[str, Any]):
    """A fresh model for the ``model`` section of a training config, seeded by ``cfg["seed"]``."""
    import torch

    from ..registry import build_model

    m = cfg["model"]
    if not m.get("name"):
        raise ValueError("training config: model.name is required")
    dtype = getattr(torch, m.get("dtype", "float32"))
    overrides = dict(m.get("overrides") or {})
    if m.get("charge_spin"):  # only when set: specs of models without it stay unchanged
        if overrides.get("charge_spin") is False:
            raise ValueError("training config: model.charge_spin is true but model.overrides.charge_spin is false")
        overrides["charge_spin"] = True
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg["seed"]))
        return build_model(m["name"], phi=bool(m.get("phi")), preset=m.get("preset", "default"),
                           phi_options=m.get("phi_options") or None, dtype=dtype, coulomb=bool(m.get("coulomb")),
                           coulomb_options=m.get("coulomb_options") or None, **overrides)


def train_from_config(config: dict[str, Any], dataset, splits: dict[str, Sequence[int]] | None = None,
                      output_dir: str | Path | None = None, resume: bool = False, device: str | None = None,
                      dataset_info: dict | None = None, callbacks: Sequence = ()):
    """Build the model of ``config``, train it; returns ``(trainer, summary)``.

    ``splits`` defaults to the dataset's stored splits named in ``config["data"]``.
    """
    from .data import named_splits

    cfg = make_config(config)
    if splits is None:
        splits = named_splits(dataset, cfg["data"])
    model = build_from_config(cfg)
    trainer = Trainer(model, dataset, splits, cfg, output_dir=output_dir or cfg["output"], device=device,
                      dataset_info=dataset_info, callbacks=callbacks)
    return trainer, trainer.fit(resume=resume)
