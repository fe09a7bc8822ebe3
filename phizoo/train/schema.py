"""Type schema of the training configuration (:mod:`phizoo.train.config`).

Every entry of ``DEFAULTS`` has a rule here; :func:`check` walks a merged config and raises
:class:`ConfigError` naming the key, the value and what is expected (``phi: 'no'`` is not a
boolean, ``batch_size: 2.7`` is not an integer). Two open mappings are checked against the code
they configure, not a hard-coded list, so they stay right when that code changes:

* ``model.phi_options``: the keyword arguments of the Φ head's constructor
  (``phizoo.heads.phi.module.phi_option_names(formulation)``, i.e. ``inspect.signature``);
* ``model.overrides``: the keyword arguments of the backbone's constructor and of
  ``Potential`` (``head_hidden``, ``neighbor_backend``, ...).

A value given to such an option must have the type of the option's default (an integer for an
integer default, a number for a float default, ...).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable


class ConfigError(ValueError):
    """A training config value has the wrong type or range (the message names the key)."""


class ConfigKeyError(ConfigError, KeyError):
    """A training config key does not exist (a typo)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo: int | None = None, none: bool = False) -> Callable:
    def rule(v):
        if v is None and none:
            return None
        if not _is_int(v):
            return "an integer" + (f" >= {lo}" if lo is not None else "") + (" or null" if none else "")
        if lo is not None and v < lo:
            return f"an integer >= {lo}"
        return None
    return rule


def number(lo: float | None = None, hi: float | None = None, open_hi: bool = False, none: bool = False) -> Callable:
    def rule(v):
        if v is None and none:
            return None
        rng = (f" >= {lo}" if lo is not None else "") + (f" and {'<' if open_hi else '<='} {hi}" if hi is not None else "")
        if not _is_num(v):
            return "a finite number" + rng + (" or null" if none else "")
        if (lo is not None and v < lo) or (hi is not None and (v >= hi if open_hi else v > hi)):
            return "a number" + rng
        return None
    return rule


def boolean(v):
    return None if isinstance(v, bool) else "true or false"


def text(none: bool = False) -> Callable:
    def rule(v):
        return None if isinstance(v, str) or (none and v is None) else "a string" + (" or null" if none else "")
    return rule


def choice(*options) -> Callable:
    def rule(v):
        return None if any(v == o and type(v) is type(o) for o in options) else f"one of {list(options)}"
    return rule


def mapping(v):
    return None if isinstance(v, dict) else "a mapping"


def betas(v):
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v)
    return None if ok else "a list of two numbers in [0, 1)"


RULES: dict[str, Callable] = {
    "model.name": text(none=True), "model.preset": text(), "model.phi": boolean, "model.phi_options": mapping,
    "model.dtype": choice("float32", "float64"), "model.overrides": mapping,
    "data.dataset": text(none=True), "data.train": text(), "data.val": text(), "data.test": text(none=True),
    "optimizer.lr": number(0.0), "optimizer.weight_decay": number(0.0), "optimizer.betas": betas,
    "optimizer.eps": number(0.0), "optimizer.grad_clip": number(0.0, none=True),
    "schedule.warmup_steps": integer(0, none=True), "schedule.warmup_epochs": number(0.0, none=True),
    "schedule.min_lr_ratio": number(0.0, 1.0), "schedule.type": choice("cosine", "plateau"),
    "schedule.factor": number(0.0, 1.0, open_hi=True), "schedule.patience": integer(1),
    "schedule.threshold": number(0.0, 1.0), "schedule.anneal_epochs": number(0.0),
    "loss.energy": number(0.0), "loss.forces": number(0.0), "loss.pde": number(0.0), "loss.charge": number(0.0),
    "loss.charges": number(0.0), "loss.dipole": number(0.0),
    "model.coulomb": boolean, "model.coulomb_options": mapping, "model.charge_spin": boolean,
    "loss.per_atom_energy": boolean, "loss.type": choice("mse", "l1", "huber"), "loss.huber_delta": number(0.0),
    "ema.enabled": boolean, "ema.decay": number(0.0, 1.0, open_hi=True), "ema.warmup": boolean,
    "references.fit": boolean, "references.scale_shift": boolean,
    "epochs": integer(0), "max_steps": integer(1, none=True), "batch_size": integer(1),
    "val_batch_size": integer(1), "seed": integer(), "monitor": text(), "checkpoint_every": integer(0, none=True),
    "validate_every": integer(1), "evaluate_test": boolean, "find_unused_parameters": choice("auto", True, False),
    "progress": boolean, "num_workers": integer(0), "output": text(none=True),
}

MONITORS = ("val_loss", "val_energy_mae", "val_energy_rmse", "val_energy_mae_per_atom",
            "val_energy_rmse_per_atom", "val_forces_mae", "val_forces_rmse", "val_pde_residual",
            "val_charge_error_mae", "val_charges_mae", "val_dipole_mae")

def check(cfg: dict[str, Any]) -> None:
    """Raise ``ConfigError`` for the first config value that breaks its rule (see the module docstring)."""
    for key, rule in RULES.items():
        node: Any = cfg
        for part in key.split("."):
            node = node[part]
        problem = rule(node)
        if problem:
            raise ConfigError(f"training config key {key!r} must be {problem}, got {node!r}")
    if cfg["monitor"] not in MONITORS:
        raise ConfigError(f"training config key 'monitor' is {cfg['monitor']!r}; choose one of {', '.join(MONITORS)}")
    model = cfg["model"]
    if model["name"] is not None:
        _check_model(model)


def _check_model(model: dict[str, Any]) -> None:
    from ..registry import backbone_class, model_config

    try:
        cls = backbone_class(model["name"])
    except KeyError as err:
        raise ConfigError(f"training config key 'model.name': {err.args[0]}") from None
    presets = model_config(model["name"])["presets"]
    if model["preset"] not in presets:
        raise ConfigError(f"training config key 'model.preset' is {model['preset']!r}; model {model['name']!r} "
                          f"has presets {', '.join(presets)}")
    from ..models.potential import Potential

    known = {**_parameters(cls.__init__, skip=1), **_parameters(Potential.__init__, skip=4)}  # self, backbone, phi, spec
    _check_options("model.overrides", model["overrides"], known)
    if model["coulomb_options"]:
        from ..heads.coulomb import coulomb_option_defaults

        _check_options("model.coulomb_options", model["coulomb_options"], coulomb_option_defaults())
    if model["phi_options"]:
        default = model_config(model["name"])["phi"].get("formulation", "continuous")
        _check_options("model.phi_options", model["phi_options"], phi_parameters(model["phi_options"], default))


def phi_parameters(options: dict[str, Any], default: str = "continuous") -> dict[str, Any]:
    """Name -> default of the options of the Φ formulation that ``options`` selects (its
    ``formulation``, else ``default``): the constructor's signature."""
    from ..heads.phi import module

    formulation = options.get("formulation", default)
    if formulation not in module.FORMULATIONS:
        raise ConfigError(f"training config key 'model.phi_options.formulation' is {formulation!r}; choose one "
                          f"of {', '.join(module.FORMULATIONS)}")
    return {"formulation": default, **_parameters(module.FORMULATIONS[formulation].__init__, skip=3)}


def _parameters(fn, skip: int) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {n: p.default for n, p in list(sig.parameters.items())[skip:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _check_options(where: str, given: dict[str, Any], known: dict[str, Any]) -> None:
    for key, value in given.items():
        if key not in known:
            raise ConfigKeyError(f"unknown training config key {where + '.' + str(key)!r}; known: "
                                 f"{', '.join(sorted(known))}")
        default = known[key]
        want = _like(default)
        if want and want[0](value) is not None:
            raise ConfigError(f"training config key {where + '.' + key!r} must be {want[1]} (like its default "
                              f"{default!r}), got {value!r}")


def _like(default) -> tuple[Callable, str] | None:
    if isinstance(default, bool):
        return boolean, "true or false"
    if _is_int(default):
        return integer(), "an integer"
    if isinstance(default, float):
        return number(), "a number"
    if isinstance(default, str):
        return text(), "a string"
    return None  # None / no default / containers: the constructor checks the value
