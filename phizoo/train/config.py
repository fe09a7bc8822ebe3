"""Training configuration: a nested dict with defaults, read from YAML, overridable from the CLI.

Format of ``zoo_configs/<model>-<dataset>.yaml`` (every key optional except ``model.name``)::

    model:     {name: painn, preset: cpu, phi: true, phi_options: {k: 9}, dtype: float32, overrides: {}}
    data:      {dataset: qm9, train: train, val: val, test: test}     # split names in the store
    optimizer: {lr: 5.0e-4, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1.0e-8, grad_clip: 10.0}
    schedule:  {warmup_steps: 1000, warmup_epochs: null, min_lr_ratio: 0.01}   # linear warm-up + cosine
    loss:      {energy: 1.0, forces: 0.0, pde: 0.01, charge: 0.01, per_atom_energy: true, type: mse}
    ema:       {decay: 0.999, enabled: true}
    references: {fit: true, scale_shift: true}                      # fitted on the train split only
    epochs: 100
    batch_size: 32
    val_batch_size: 64
    seed: 42
    monitor: val_energy_mae                                          # selection metric (validation only)
    checkpoint_every: 0                                              # also save trainer state every N steps
    find_unused_parameters: auto                                     # DDP: probe one batch (or true/false)
    output: runs/painn-qm9

Only the keys listed in ``DEFAULTS`` exist; a typo is an error, not a silent no-op.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "model": {"name": None, "preset": "default", "phi": False, "phi_options": {}, "dtype": "float32",
              "overrides": {}},
    "data": {"dataset": None, "train": "train", "val": "val", "test": "test"},
    "optimizer": {"lr": 5.0e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1.0e-8, "grad_clip": 10.0},
    "schedule": {"warmup_steps": 0, "warmup_epochs": None, "min_lr_ratio": 0.01},
    "loss": {"energy": 1.0, "forces": 0.0, "pde": 0.0, "charge": 0.0, "per_atom_energy": True, "type": "mse",
             "huber_delta": 0.01},
    "ema": {"enabled": True, "decay": 0.999, "warmup": True},
    "references": {"fit": True, "scale_shift": True},
    "epochs": 10,
    "max_steps": None,
    "batch_size": 16,
    "val_batch_size": 32,
    "seed": 42,
    "monitor": "val_loss",
    "checkpoint_every": 0,
    "validate_every": 1,
    "evaluate_test": True,
    "find_unused_parameters": "auto",
    "progress": True,
    "num_workers": 0,
    "output": None,
}

LOSS_TYPES = ("mse", "l1", "huber")


def _merge(base: dict, update: dict, where: str = "") -> dict:
    for key, value in update.items():
        if key not in base:
            raise KeyError(f"unknown training config key {where + key!r}; known: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in ("phi_options", "overrides"):
            if not isinstance(value, dict):
                raise ValueError(f"training config key {where + key!r} must be a mapping, got {value!r}")
            _merge(base[key], value, where + key + ".")
        else:
            base[key] = copy.deepcopy(value)
    return base


def make_config(*updates: dict | None) -> dict[str, Any]:
    """``DEFAULTS`` updated by each mapping in turn (unknown keys raise ``KeyError``)."""
    cfg = copy.deepcopy(DEFAULTS)
    for u in updates:
        if u:
            _merge(cfg, u)
    validate(cfg)
    return cfg


def load_config(path: str | Path, *updates: dict | None) -> dict[str, Any]:
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping")
    return make_config(raw, *updates)


def parse_override(item: str) -> dict[str, Any]:
    """``"optimizer.lr=1e-3"`` -> ``{"optimizer": {"lr": 0.001}}`` (value parsed as YAML)."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = parsed
    return out


def _floatify(d: dict, keys: tuple[str, ...]) -> None:
    for k in keys:
        if isinstance(d.get(k), str):
            d[k] = float(d[k])


def validate(cfg: dict[str, Any]) -> None:
    _floatify(cfg["optimizer"], ("lr", "weight_decay", "eps", "grad_clip"))
    _floatify(cfg["schedule"], ("min_lr_ratio",))
    _floatify(cfg["loss"], ("energy", "forces", "pde", "charge", "huber_delta"))
    _floatify(cfg["ema"], ("decay",))
    if cfg["loss"]["type"] not in LOSS_TYPES:
        raise ValueError(f"loss.type must be one of {LOSS_TYPES}, got {cfg['loss']['type']!r}")
    if int(cfg["batch_size"]) < 1 or int(cfg["epochs"]) < 0:
        raise ValueError("batch_size must be >= 1 and epochs >= 0")
    if not 0.0 <= cfg["ema"]["decay"] < 1.0:
        raise ValueError(f"ema.decay must be in [0, 1), got {cfg['ema']['decay']}")
    if cfg["model"]["dtype"] not in ("float32", "float64"):
        raise ValueError(f"model.dtype must be float32 or float64, got {cfg['model']['dtype']!r}")
