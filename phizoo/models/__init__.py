"""Backbones. Every module in this package is imported here, and its
``@register_model`` decorator registers it: adding a backbone = adding one file."""
import importlib
import pkgutil

from .backbone import Backbone, BackboneOutput  # noqa: F401
from .potential import Potential  # noqa: F401

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("backbone", "potential"):
        importlib.import_module(f"{__name__}.{_info.name}")
