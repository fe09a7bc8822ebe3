"""The Φ head a ``Potential`` hosts: one of two formulations behind one constructor.

* ``"continuous"`` (default, ``continuous.py``): screened Poisson equation ``(L + μ)φ = μ s``
  on the whole batch; C¹ under every topology change, no eigendecomposition.
* ``"paper"`` (``paper.py``): the k lowest modes of each connected component, as in
  Zhdanov & Kurenkov (arXiv 2505.14606); discontinuous when components merge or split.
"""
from __future__ import annotations

import inspect

from torch import nn

from .continuous import ContinuousPhi
from .output import PhiOutput
from .paper import PaperPhi

FORMULATIONS: dict[str, type[nn.Module]] = {"continuous": ContinuousPhi, "paper": PaperPhi}

__all__ = ["FORMULATIONS", "PhiOutput", "build_phi", "phi_option_names"]


def phi_option_names(formulation: str = "continuous") -> list[str]:
    """The options (``phi_options`` keys, besides ``formulation``) a formulation accepts."""
    cls = _formulation_class(formulation)
    params = list(inspect.signature(cls.__init__).parameters)[3:]  # self, feature_dims, cutoff
    return params


def _formulation_class(formulation: str) -> type[nn.Module]:
    try:
        return FORMULATIONS[formulation]
    except KeyError:
        raise ValueError(f"phi formulation {formulation!r} is unknown; choose one of "
                         f"{', '.join(FORMULATIONS)}") from None


def build_phi(feature_dims: list[int], cutoff: float, formulation: str = "continuous", **options) -> nn.Module:
    """A Φ head for a backbone with per-layer feature widths ``feature_dims`` and ``cutoff`` (Å).

    Unknown options are refused with the option and the formulation named."""
    allowed = phi_option_names(formulation)
    for key in options:
        if key not in allowed:
            raise ValueError(f"phi option {key!r} does not exist for the {formulation!r} formulation; "
                             f"options: {', '.join(allowed)}")
    return _formulation_class(formulation)(feature_dims, cutoff, **options)
