"""Hostile weights: shadowing files, broken manifests, tampered user checkpoints and cards."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import phizoo
from phizoo.pretrained import CheckpointError, load_checkpoint, save_checkpoint
from tests.hostile.conftest import assert_clean_error, cli, small_model
from tests.molecules import batch, random_molecule


def _shipped_energy(home):
    model = phizoo.load_model("painn", phi=False)
    return model(batch(random_molecule(5, seed=1)))["energy"]


# ------------------------------------------------------------------ shipped ids never shadowed

@pytest.mark.parametrize("decoy", ["default", "qm9", "painn-qm9"])
def test_a_file_in_the_working_directory_never_shadows_a_shipped_id(home, decoy):
    want = _shipped_energy(home)
    save_checkpoint(small_model(), home / "work" / decoy)  # default.json, qm9.json, painn-qm9.json here
    got = phizoo.load_model("painn", phi=False, pretrained="qm9" if decoy != "default" else "default")
    assert torch.equal(got(batch(random_molecule(5, seed=1)))["energy"], want)
    assert phizoo.load_model("painn", phi=False).card["dataset"]["name"] == "qm9"


def test_cli_ids_resolve_through_the_manifest_only(home, capsys, md22_db):
    save_checkpoint(small_model(), home / "work" / "painn-qm9")  # a decoy named like the shipped id
    from phizoo.eval.leaderboard import resolve_checkpoint

    assert resolve_checkpoint("painn-qm9").checkpoint_path == "pretrained:painn-qm9"
    assert resolve_checkpoint("./painn-qm9").checkpoint_path == "painn-qm9"  # a path is a path


def test_load_model_refuses_a_checkpoint_of_another_model(home):
    save_checkpoint(small_model(phi=False), home / "work" / "mine")
    with pytest.raises(CheckpointError, match="holds model 'painn' with phi=False coulomb=False, not the 'visnet' with phi=True"):
        phizoo.load_model("visnet", phi=True, pretrained="./mine.json")
    assert phizoo.load_model("painn", phi=False, pretrained="./mine.json") is not None


# ------------------------------------------------------------------ the manifest fails closed

def _edit_manifest(home, edit, entry_id="painn-qm9"):
    """Apply ``edit`` to the manifest entry ``entry_id`` (the one ``load_model("painn", phi=False)`` opens)."""
    path = home / "pretrained" / "manifest.json"
    data = json.loads(path.read_text())
    edit(next(e for e in data["checkpoints"] if e["id"] == entry_id))
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit, message", [
    (lambda e: e["sha256"].update(weights=""), "no valid sha256 for its weights"),
    (lambda e: e["sha256"].update(card=e["sha256"]["card"][:12]), "no valid sha256 for its card"),
    (lambda e: e.pop("sha256"), "key 'sha256' is missing"),
    (lambda e: e["sha256"].pop("weights"), "no valid sha256 for its weights"),
    (lambda e: e.update(card="../../etc/passwd.json"), "must lie inside"),
    (lambda e: e.update(phi="false"), "key 'phi' is missing or not a bool"),
], ids=["empty", "partial", "no-sha256", "no-weights-hash", "path-escape", "phi-string"])
def test_a_broken_manifest_entry_fails_closed(home, edit, message):
    _edit_manifest(home, edit)
    with pytest.raises(CheckpointError, match=message):
        phizoo.load_model("painn", phi=False)


def test_manifest_that_is_not_json(home, capsys):
    (home / "pretrained" / "manifest.json").write_text("{broken")
    code, _, err = cli(capsys, "eval", "painn-qm9", "--data", "x.lmdb")
    assert_clean_error(code, err, "manifest.json: not valid JSON")


# ------------------------------------------------------------------ user checkpoints verify themselves

def _card(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["spec"]["backbone"].update(cutoff=c["spec"]["backbone"]["cutoff"] + 1.0), "spec sha256 mismatch"),
    (lambda c: c["spec"]["phi_options"].update(mu=0.5), "spec sha256 mismatch"),
    (lambda c: c.update(dtype="float64"), "spec sha256 mismatch"),
    (lambda c: c.pop("integrity"), "records no sha256"),
    (lambda c: c["integrity"].update(weights_sha256="0" * 64), "does not match the one recorded"),
    (lambda c: c.update(spec="painn"), "key 'spec' is missing or not an object"),
    (lambda c: c["spec"].pop("backbone"), "'spec.backbone' must be a dict"),
    (lambda c: c.update(dtype="float16"), "key 'dtype' must be"),
], ids=["cutoff", "phi-option", "dtype", "no-integrity", "wrong-hash", "spec-string", "no-backbone", "bad-dtype"])
def test_an_edited_card_is_refused(tmp_path, edit, message):
    save_checkpoint(small_model(phi=True), tmp_path / "best")
    card = _card(tmp_path / "best.json")
    edit(card)
    (tmp_path / "best.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "best")


def test_edited_or_swapped_weights_are_refused(tmp_path):
    save_checkpoint(small_model(seed=0), tmp_path / "a")
    save_checkpoint(small_model(seed=1), tmp_path / "b")
    shutil.copy(tmp_path / "b.safetensors", tmp_path / "a.safetensors")  # same architecture, other weights
    with pytest.raises(CheckpointError, match="does not match the one recorded in a.json"):
        load_checkpoint(tmp_path / "a")
    raw = bytearray((tmp_path / "b.safetensors").read_bytes())
    raw[-3] ^= 0x01
    (tmp_path / "b.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "b")


@pytest.mark.parametrize("content, message", [("[1, 2]", "not a checkpoint card"), ("{", "not valid JSON"),
                                              ('{"format": "other"}', "unknown checkpoint format")])
def test_malformed_cards_from_the_cli(tmp_path, capsys, md22_db, content, message):
    save_checkpoint(small_model(), tmp_path / "best")
    (tmp_path / "best.json").write_text(content)
    code, _, err = cli(capsys, "eval", tmp_path / "best", "--data", md22_db, "-o", tmp_path, "--no-plot")
    assert_clean_error(code, err, "best.json", message)


def test_unknown_id_or_missing_checkpoint_from_the_cli(home, capsys, md22_db):
    code, _, err = cli(capsys, "eval", "painn-qm99", "--data", md22_db)
    assert_clean_error(code, err, "no pretrained weights for id 'painn-qm99'", "painn[qm9]")
    code, _, err = cli(capsys, "finetune", "--from", "runs/none/best", "--data", md22_db, "-o", "out")
    assert_clean_error(code, err, "runs/none/best")
