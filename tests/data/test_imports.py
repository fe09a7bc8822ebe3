"""phizoo.data stands alone: it never imports phizoo.models or phizoo.train."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_data_package_does_not_import_models_or_train(tmp_path):
    code = f"""
import sys, pkgutil, importlib
import phizoo.data
for m in pkgutil.iter_modules(phizoo.data.__path__):
    importlib.import_module("phizoo.data." + m.name)
import phizoo.cli.data
from tests.data import native
from phizoo.data import LmdbDataset, convert_md22
p = convert_md22(native.md22_npz(__import__("pathlib").Path({str(tmp_path)!r}) / "md22_DHA.npz", n=10),
                 {str(tmp_path / "d.lmdb")!r}, train_size=4)
LmdbDataset(p)[0]
bad = [m for m in sys.modules if m.startswith(("phizoo.models", "phizoo.train", "phizoo.heads", "qm9pack"))]
assert not bad, bad
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for path in (ROOT / "phizoo" / "data").glob("*.py"):
        text = path.read_text()
        assert "phizoo.models" not in text.replace("``phizoo.models``", "") and "from ..models" not in text
        assert "from ..train" not in text, path
