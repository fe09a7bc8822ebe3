"""The optional dependencies of ``phizoo data xtb-md`` (tblite, rdkit; ``pip install phizoo[xtb]``):
imported on first use, with an error that names the package and the extra when missing."""
from __future__ import annotations

INSTALL_HINT = "pip install phizoo[xtb]"


class MissingDependencyError(ImportError, RuntimeError):
    """An optional dependency of ``phizoo data xtb-md`` (tblite, rdkit) is not installed."""


def _import(module: str, package: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package!r}, which is not installed ({err}); "
            f"install it with: {INSTALL_HINT}") from None


def tblite_version() -> str:
    _import("tblite.interface", "tblite", "GFN2-xTB molecular dynamics")
    try:
        from importlib.metadata import version

        return version("tblite")
    except Exception:  # pragma: no cover - a tblite without package metadata
        from tblite.library import get_version

        return ".".join(map(str, get_version()))


def theory_string() -> str:
    return f"GFN2-xTB (tblite {tblite_version()})"
