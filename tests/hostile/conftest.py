"""Shared pieces of the hostile-input corpus.

Every case feeds phizoo one damaged, mislabelled or unphysical input and asserts the contract
of the README's *Reliability guarantees*: the right answer, or one clear line naming the
file/key/record/atom/option (exit status 2 from the CLI), never a traceback, never a silently
wrong number, never lost work. Add a case here for every new bug of these kinds.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``phizoo argv`` in-process: (exit status, stdout, stderr)."""
    from phizoo.cli.main import main

    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_clean_error(code: int, err: str, *needles: str) -> str:
    """Exit status 2 and exactly one ``phizoo: error:`` line (no traceback) holding every needle."""
    lines = [ln for ln in err.splitlines() if ln.startswith("phizoo: error:")]
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A PHIZOO_HOME with the real configs and a copy of two shipped checkpoints + the manifest
    (the PaiNN QM9 entries), and the working directory set to an empty folder."""
    import json

    (tmp_path / "pretrained").mkdir()
    os.symlink(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    manifest = json.loads((ROOT / "pretrained" / "manifest.json").read_text())
    keep = [e for e in manifest["checkpoints"] if e["model"] == "painn" and e["dataset"] == "qm9"]
    for e in keep:
        for key in ("weights", "card"):
            shutil.copy(ROOT / "pretrained" / e[key], tmp_path / "pretrained" / e[key])
    manifest["checkpoints"] = keep
    (tmp_path / "pretrained" / "manifest.json").write_text(json.dumps(manifest, indent=2))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("PHIZOO_HOME", str(tmp_path))
    monkeypatch.chdir(work)
    return tmp_path


def small_model(phi: bool = False, seed: int = 0):
    import phizoo

    torch.manual_seed(seed)
    model = phizoo.build_model("painn", phi=phi, preset="test")
    with torch.no_grad():
        model.element_energies[1] = -13.6
        model.element_energies[6] = -1029.8
        model.element_energies[7] = -1485.3
        model.element_energies[8] = -2042.6
    return model.eval()


@pytest.fixture(scope="module")
def md22_db(tmp_path_factory):
    """A converted MD22-format database (40 frames of a 6-atom molecule, with forces)."""
    from phizoo.data import convert_md22
    from tests.data import native

    d = tmp_path_factory.mktemp("hostile-md22")
    return convert_md22(native.md22_npz(d / "md22_AT-AT.npz", n=40), d / "md22.lmdb", train_size=20)


def copy_db(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def synthetic_db(path: Path, n: int = 60, seed: int = 5, elements=None) -> Path:
    """An LMDB store of the synthetic Morse data set (energies and forces), train/val/test."""
    from tests.eval.conftest import write_lmdb
    from tests.train import synthetic

    items = synthetic.dataset(n, seed=seed)
    if elements is not None:
        for d in items:
            d.z = torch.tensor([elements[int(a) % len(elements)] for a in d.z.tolist()])
    splits = synthetic.splits(n, n_val=10, n_test=10, seed=1)
    return write_lmdb(synthetic.SplitDataset(items, splits), path)


def water(shift: float = 0.0) -> dict:
    return {"z": np.array([8, 1, 1]), "pos": np.array([[0.0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]]) + shift}
