"""Training configuration: a nested dict with defaults, read from YAML, overridable from the CLI.

Format of ``zoo_configs/<model>-<dataset>.yaml`` (every key optional except ``model.name``)::

    model:     {name: painn, preset: cpu, phi: true, phi_options: {}, dtype: float32, overrides: {},
                coulomb: false, coulomb_options: {},                # the Coulomb head (phizoo/heads/coulomb.py)
                charge_spin: false}                                  # total charge + spin embedding (charged data)
    data:      {dataset: qm9, train: train, val: val, test: test}     # split names in the store
    optimizer: {lr: 5.0e-4, weight_decay: 0.01, betas: [0.9, 0.999], eps: 1.0e-8, grad_clip: 10.0}
    schedule:  {type: cosine, warmup_steps: 1000, warmup_epochs: null, min_lr_ratio: 0.01,   # warm-up, then
                factor: 0.5, patience: 3, threshold: 1.0e-3,  # cosine, or plateau: lr×factor after patience
                anneal_epochs: 0}                             # validations without improvement; stops at min lr;
                                                              # cosine to min lr over the budget's last epochs
    loss:      {energy: 1.0, forces: 0.0, pde: 0.01, charge: 0.01, per_atom_energy: true, type: mse,
                charges: 0.0, dipole: 0.0}                           # Coulomb charges (e) / dipole (e·Å) vs data
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

Only the keys listed in ``DEFAULTS`` exist; a typo is an error, not a silent no-op. Every value
is type-checked against :mod:`phizoo.train.schema` (``ConfigError`` naming the key), including
the keys inside ``phi_options``, ``coulomb_options`` and ``overrides`` (against the constructors they configure).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .schema import ConfigError, ConfigKeyError, check

DEFAULTS: dict[str, Any] = {
    "model": {"name": None, "preset": "default", "phi": False, "phi_options": {}, "dtype": "float32",
              "overrides": {}, "coulomb": False, "coulomb_options": {}, "charge_spin": False},
    "data": {"dataset": None, "train": "train", "val": "val", "test": "test"},
    "optimizer": {"lr": 5.0e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1.0e-8, "grad_clip": 10.0},
    "schedule": {"type": "cosine", "warmup_steps": 0, "warmup_epochs": None, "min_lr_ratio": 0.01,
                 "factor": 0.5, "patience": 3, "threshold": 1.0e-3, "anneal_epochs": 0},
    "loss": {"energy": 1.0, "forces": 0.0, "pde": 0.0, "charge": 0.0, "charges": 0.0, "dipole": 0.0,
             "per_atom_energy": True, "type": "mse",
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



def _merge(base: dict, update: dict, where: str = "") -> dict:
    for key, value in update.items():
        if key not in base:
            raise ConfigKeyError(f"unknown training config key {where + str(key)!r}; known: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and key not in ("phi_options", "overrides", "coulomb_options"):
            if not isinstance(value, dict):
                raise ConfigError(f"training config key {where + key!r} must be a mapping, got {value!r}")
            _merge(base[key], value, where + key + ".")
        else:
            base[key] = copy.deepcopy(value)
    return base


def make_config(*updates: dict | None) -> dict[str, Any]:
    """``DEFAULTS`` updated by each mapping in turn; ``ConfigKeyError`` (a ``KeyError``) for an
    unknown key, ``ConfigError`` for a value of the wrong type or range."""
    cfg = copy.deepcopy(DEFAULTS)
    for u in updates:
        if u:
            if not isinstance(u, dict):
                raise ConfigError(f"a training config must be a mapping, got {u!r:.60}")
            _merge(cfg, u)
    validate(cfg)
    return cfg


def load_config(path: str | Path, *updates: dict | None) -> dict[str, Any]:
    """The config file ``path`` (errors name the file) updated by ``updates`` (command-line overrides)."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the training config ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at} ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config must be a YAML mapping")
    try:
        make_config(raw)
    except ConfigKeyError as err:
        raise ConfigKeyError(f"{path}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return make_config(raw, *updates)


def parse_override(item: str) -> dict[str, Any]:
    """``"optimizer.lr=1e-3"`` -> ``{"optimizer": {"lr": 0.001}}`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)})") from None
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
            try:
                d[k] = float(d[k])
            except ValueError:
                pass  # left as a string: the schema names the key


def validate(cfg: dict[str, Any]) -> None:
    """Parse numbers given as strings (YAML 1.1 reads ``1e-3`` as a string), then type-check."""
    _floatify(cfg["optimizer"], ("lr", "weight_decay", "eps", "grad_clip"))
    _floatify(cfg["schedule"], ("min_lr_ratio", "warmup_epochs", "factor", "threshold", "anneal_epochs"))
    _floatify(cfg["loss"], ("energy", "forces", "pde", "charge", "charges", "dipole", "huber_delta"))
    _floatify(cfg["ema"], ("decay",))
    check(cfg)
