"""Model registry: ``@register_model("painn")`` on a backbone class; hyperparameters come
from ``zoo_configs/<name>.yaml`` (presets) and can be overridden per call."""
from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

import torch
import yaml

_BACKBONES: dict[str, type] = {}


def register_model(name: str):
    """Class decorator registering a ``Backbone`` subclass under ``name``."""

    def deco(cls):
        if name in _BACKBONES and _BACKBONES[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_BACKBONES[name].__qualname__}")
        _BACKBONES[name] = cls
        cls.registry_name = name
        return cls

    return deco


def _load_builtin_models() -> None:
    from . import models  # noqa: F401  (imports register the backbones)


def list_models() -> list[str]:
    """Names of all registered backbones (each also has a Φ-variant)."""
    _load_builtin_models()
    return sorted(_BACKBONES)


def backbone_class(name: str) -> type:
    _load_builtin_models()
    try:
        return _BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_BACKBONES))}") from None


def repo_root() -> Path:
    """Directory holding ``zoo_configs/`` and ``pretrained/`` (``$PHIZOO_HOME`` overrides)."""
    env = os.environ.get("PHIZOO_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def config_path(name: str) -> Path:
    return repo_root() / "zoo_configs" / f"{name}.yaml"


def model_config(name: str) -> dict[str, Any]:
    """The parsed ``zoo_configs/<name>.yaml``: reference, presets, phi defaults."""
    backbone_class(name)
    path = config_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no config for model {name!r}: expected {path}")
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    for key in ("presets", "phi"):
        if key not in cfg:
            raise ValueError(f"{path}: missing key {key!r}")
    return cfg


POTENTIAL_OPTIONS = ("head_hidden", "neighbor_backend", "charge_spin", "readout")  # of Potential, not the backbone


def resolve_hyperparameters(name: str, preset: str = "default", phi_options: dict | None = None,
                            **overrides) -> tuple[dict, dict, dict]:
    """(backbone kwargs, Φ kwargs, potential kwargs) for ``name`` at ``preset`` with overrides."""
    cfg = model_config(name)
    if preset not in cfg["presets"]:
        raise KeyError(f"model {name!r} has no preset {preset!r}; presets: {', '.join(cfg['presets'])}")
    backbone_kw = copy.deepcopy(cfg["presets"][preset])
    potential_kw = {k: backbone_kw.pop(k) for k in POTENTIAL_OPTIONS if k in backbone_kw}
    phi_kw = resolve_phi_options(cfg["phi"], backbone_kw.pop("phi", {}) or {}, phi_options or {})
    for key in list(overrides):
        if key in POTENTIAL_OPTIONS:
            potential_kw[key] = overrides.pop(key)
    backbone_kw.update(overrides)
    return backbone_kw, phi_kw, potential_kw


def resolve_phi_options(defaults: dict, preset: dict, options: dict) -> dict:
    """Φ options: the formulation's defaults from the model config, then the preset's values for
    the keys that formulation has (a preset may set ``k`` for the paper formulation only), then
    the caller's ``options`` (checked strictly when the head is built)."""
    from .heads.phi.module import phi_option_names

    formulation = options.get("formulation", preset.get("formulation", defaults.get("formulation", "continuous")))
    known = phi_option_names(formulation)
    kw = {"formulation": formulation, **copy.deepcopy(defaults.get(formulation, {}))}
    kw.update({k: v for k, v in preset.items() if k in known})
    kw.update(options)
    return kw


def build_from_spec(spec: dict[str, Any]):
    """Rebuild a ``Potential`` (fresh weights) from the spec stored with a checkpoint."""
    from .models.potential import Potential
    from .heads.phi.module import build_phi

    cls = backbone_class(spec["model"])
    # options added after weights were saved: a spec without one was trained with its old value
    backbone = cls(**{**getattr(cls, "legacy_spec_values", {}), **spec["backbone"]})
    phi = None
    if spec["phi"]:
        options = dict(spec["phi_options"])
        # specs saved before formulations existed are the paper's (k modes per component)
        options.setdefault("formulation", "paper" if "k" in options else "continuous")
        if spec.get("potential", {}).get("charge_spin") and options["formulation"] == "continuous":
            options.setdefault("net_charge", True)  # a charge-aware model's Φ charges sum to Q
        phi = build_phi(backbone.layer_feature_dims, backbone.cutoff, **options)
    coulomb = None
    if spec.get("coulomb"):  # absent from specs saved before the Coulomb head: no head
        from .heads.coulomb import build_coulomb

        options = dict(spec.get("coulomb_options") or {})
        if options.get("charges") == "phi" and phi is None:
            raise ValueError("coulomb_options charges='phi' takes the Φ head's charges: build with phi=True")
        coulomb = build_coulomb(backbone.feature_dim, **options)
    return Potential(backbone, phi, spec=spec, coulomb=coulomb, **spec.get("potential", {}))


def build_model(name: str, phi: bool = False, preset: str = "default", phi_options: dict | None = None,
                dtype: torch.dtype | None = None, coulomb: bool = False, coulomb_options: dict | None = None,
                **overrides):
    """A fresh (untrained) ``Potential``.

    Args:
        name: registered backbone (``list_models()``).
        phi: add the Φ-Module.
        preset: hyperparameter preset in ``zoo_configs/<name>.yaml`` (``default`` = paper scale, ``cpu``, ``test``).
        phi_options: overrides of the Φ hyperparameters (k, rho, alpha_net, ...).
        coulomb: add the Coulomb head (``phizoo.heads.coulomb``: charges with Σq = Q, real 1/r energy).
        coulomb_options: its options (``charges``, ``correction``, ``sigma``, ``periodic``, ...).
        overrides: backbone hyperparameters (e.g. ``hidden_channels=64``).
    """
    backbone_kw, phi_kw, potential_kw = resolve_hyperparameters(name, preset, phi_options, **overrides)
    cls = backbone_class(name)
    for key in getattr(cls, "legacy_spec_values", {}):  # recorded, so that the spec keeps meaning the same model
        backbone_kw.setdefault(key, inspect.signature(cls).parameters[key].default)
    spec = {"model": name, "phi": bool(phi), "preset": preset, "backbone": backbone_kw,
            "phi_options": phi_kw, "potential": potential_kw}
    if coulomb:  # only then in the spec: specs (and state dicts) of other models are unchanged
        from .heads.coulomb import resolve_coulomb_options

        spec.update(coulomb=True, coulomb_options=resolve_coulomb_options(coulomb_options))
    elif coulomb_options:
        raise ValueError("coulomb_options given without coulomb=True")
    model = build_from_spec(spec)
    if dtype is not None:
        model = model.to(dtype)
    return model
