"""Skip markers for tests that need an optional extra: ``pip install phizoo[xtb]`` (tblite, rdkit)
or ``phizoo[data]`` (qm9pack)."""
import importlib.util

import pytest


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_xtb = pytest.mark.skipif(not _installed("tblite", "rdkit"),
                               reason="tblite and rdkit (pip install phizoo[xtb]) not installed")
needs_qm9pack = pytest.mark.skipif(not _installed("qm9pack"), reason="qm9pack (pip install phizoo[data]) not installed")
