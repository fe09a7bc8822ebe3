"""phizoo: equivariant neural interatomic potentials with learned long-range electrostatics.

Public API: ``list_models``, ``build_model``, ``load_model``, ``save_checkpoint``,
``PhiZooCalculator``.
"""
from .registry import build_model, list_models, register_model  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):  # lazy: keep `import phizoo` light
    if name in ("load_model", "save_checkpoint", "load_checkpoint", "available_pretrained"):
        from . import pretrained
        return getattr(pretrained, name)
    if name == "finetune":
        from .train.finetune import finetune
        return finetune
    if name == "PhiZooCalculator":
        from .calculator import PhiZooCalculator
        return PhiZooCalculator
    raise AttributeError(f"module 'phizoo' has no attribute {name!r}")
