"""Checkpoint format: round trip, integrity check, clear errors."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import phizoo
from phizoo.pretrained import CheckpointError, load_checkpoint, register_in_manifest, save_checkpoint
from tests.molecules import batch, random_molecule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A PHIZOO_HOME with the real configs and an empty pretrained/ folder."""
    (tmp_path / "pretrained").mkdir()
    os.symlink(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    monkeypatch.setenv("PHIZOO_HOME", str(tmp_path))
    return tmp_path


def _trained_like(phi=True):
    torch.manual_seed(0)
    model = phizoo.build_model("painn", phi=phi, preset="test")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model.element_energies[1] = -13.6
        model.element_energies[6] = -1029.5
        model.scale.fill_(0.7)
    return model.eval()


@pytest.mark.parametrize("phi", [False, True])
def test_round_trip_gives_identical_outputs(tmp_path, phi):
    model = _trained_like(phi)
    save_checkpoint(model, tmp_path / "ckpt", dataset={"name": "unit-test"}, metrics={"energy_mae_meV": 1.0})
    loaded = load_checkpoint(tmp_path / "ckpt.json")
    data = batch(random_molecule(7, 1), random_molecule(4, 2))
    a, b = model(data), loaded(data)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    card = json.loads((tmp_path / "ckpt.json").read_text())
    assert card["spec"]["backbone"]["cutoff"] == model.cutoff
    assert card["units"]["energy"] == "eV" and card["element_energies"]["6"] == -1029.5
    assert loaded.element_energies.dtype == torch.float64


def test_load_model_verifies_manifest_and_refuses_tampering(home):
    model = _trained_like(True)
    save_checkpoint(model, home / "pretrained" / "painn-phi-unit")
    register_in_manifest(home / "pretrained" / "painn-phi-unit", "painn-phi-unit", dataset="unit", default=True)
    loaded = phizoo.load_model("painn", phi=True)
    assert loaded.card["spec"]["phi"] is True
    assert phizoo.load_model("painn", phi=True, pretrained="unit") is not None
    weights = home / "pretrained" / "painn-phi-unit.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        phizoo.load_model("painn", phi=True)


def test_missing_pretrained_lists_available(home):
    with pytest.raises(CheckpointError, match="available: none"):
        phizoo.load_model("painn", phi=True)
    with pytest.raises(KeyError, match="registered models"):
        phizoo.load_model("schnet", phi=True)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    save_checkpoint(_trained_like(True), tmp_path / "ckpt")
    card = json.loads((tmp_path / "ckpt.json").read_text())
    card["spec"]["backbone"]["hidden_channels"] = 32
    (tmp_path / "ckpt.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="spec sha256 mismatch"):  # the card records its spec's hash
        load_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):  # and strict loading catches it regardless
        load_checkpoint(tmp_path / "ckpt", verify=False)


def test_corrupt_card_and_missing_files(tmp_path):
    save_checkpoint(_trained_like(False), tmp_path / "ckpt")
    shutil.copy(tmp_path / "ckpt.safetensors", tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "other")
    (tmp_path / "ckpt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "ckpt")
