"""The weights in ``pretrained/``: all eight models (and the Coulomb-head one) load offline, integrity is enforced, and
re-evaluating a checkpoint on its recorded test split reproduces the metrics in its model card."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import phizoo
from phizoo.pretrained import CheckpointError, available_pretrained, load_checkpoint, manifest_path, sha256
from tests.molecules import batch, random_molecule

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [(name, phi) for name in phizoo.list_models() for phi in (False, True)]
IDS = [f"{n}-{'phi' if p else 'base'}" for n, p in VARIANTS]
DATASETS = ("qm9", "md22-xtb-ac-ala3")
ENTRIES = available_pretrained()
# Checkpoints trained before architecture changes and not yet retrained carry a "stale" reason in the
# manifest (MACE's state dict changed, so they do not load; the others load but their outputs changed, so
# their cards do not reproduce and they fail tests/test_shipped_physics.py). Retraining clears the mark.
STALE = {e["id"]: e["stale"] for e in ENTRIES if e.get("stale")}


def _entry(name, phi, dataset):
    found = [e for e in ENTRIES if e["model"] == name and e["phi"] == phi and e["dataset"] == dataset
             and not e.get("coulomb")]
    assert len(found) == 1, f"expected one {name} phi={phi} checkpoint for {dataset}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("name,phi", VARIANTS, ids=IDS)
def test_every_model_ships_trained_weights_for_both_datasets(name, phi):
    stale = [i for i in (f"{name}{'-phi' if phi else ''}-{d}" for d in DATASETS) if i in STALE]
    if stale:
        pytest.skip(f"{', '.join(stale)}: {STALE[stale[0]]}")
    default = phizoo.load_model(name, phi=phi)
    assert default.card["dataset"]["name"] == "qm9" and _entry(name, phi, "qm9")["default"]
    assert (default.phi is not None) == phi
    md = phizoo.load_model(name, phi=phi, pretrained="md22-xtb-ac-ala3")
    assert "GFN2-xTB" in md.card["dataset"]["level_of_theory"]
    for model in (default, md):
        card = model.card
        assert card["metrics"]["test"]["energy_mae_meV"] > 0 and card["training"]["time_s"] > 0
        assert card["training"]["hardware"]["torch"] and card["split"]["test"]["size"] > 0
        assert card["spec"]["preset"] == "cpu"
    for dataset in DATASETS:  # lean: each weight file a few MB at most
        weights = manifest_path().parent / _entry(name, phi, dataset)["weights"]
        assert weights.stat().st_size < 4e6
    # trained, not fresh: outputs differ from a newly built model of the same spec
    fresh = phizoo.build_model(name, phi=phi, preset="cpu")
    data = batch(random_molecule(6, seed=3))
    assert not torch.allclose(default(data)["energy"], fresh(data)["energy"])


def test_manifest_hashes_match_the_files():
    assert len([e for e in ENTRIES if not e.get("coulomb")]) == 2 * len(VARIANTS)
    for e in ENTRIES:
        for kind in ("weights", "card"):
            assert sha256(manifest_path().parent / e[kind]) == e["sha256"][kind], e["id"]


COULOMB = [e for e in ENTRIES if e.get("coulomb")]


def test_coulomb_checkpoint_has_supervised_size_consistent_charges():
    """``load_model("painn", phi=False, coulomb=True)``: QM9 with Mulliken charges and |μ| in the
    loss, charges neutralised per neighbourhood; water gets O⁻/H⁺ (the charge error against
    Mulliken on the whole test split: ``test_coulomb_checkpoint_reproduces_its_card``)."""
    from tests.molecules import ase_molecule

    assert [(e["model"], e["phi"], e["dataset"], e["default"]) for e in COULOMB] == [("painn", False, "qm9", True)]
    model = phizoo.load_model("painn", phi=False, coulomb=True, dtype=torch.float64)
    assert model.coulomb is not None and model.coulomb.correction == "local"
    assert model.card["hyperparameters"]["loss"]["charges"] > 0 and model.card["metrics"]["test"]["charges_mae"] < 0.05
    out = model(ase_molecule("H2O"))
    q = out["coulomb_charges"].detach()
    assert abs(float(q.sum())) < 1e-12 and float(q[0]) < -0.2 and (q[1:] > 0.1).all()
    with pytest.raises(CheckpointError, match="coulomb=True"):
        phizoo.load_model("painn", phi=False, pretrained=str(manifest_path().parent / COULOMB[0]["card"]))


def test_tampered_shipped_weights_are_refused(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "pretrained", tmp_path / "pretrained")
    os.symlink(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    monkeypatch.setenv("PHIZOO_HOME", str(tmp_path))
    entry = _entry("visnet", True, "qm9")
    weights = tmp_path / "pretrained" / entry["weights"]
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        phizoo.load_model("visnet", phi=True)
    phizoo.load_model("visnet", phi=False)  # the others are untouched


def test_cli_lists_pretrained(capsys):
    from phizoo.cli.main import main

    main(["models", "--pretrained"])
    out = capsys.readouterr().out
    assert all(e["id"] in out for e in ENTRIES) and out.count("(default)") == sum(e["default"] for e in ENTRIES)


# ---------------------------------------------------------------- card metrics reproduce

@pytest.fixture(scope="module")
def qm9_db(tmp_path_factory):
    pytest.importorskip("pandas")
    from phizoo.data import convert_qm9

    entry = next(e for e in ENTRIES if e["dataset"] == "qm9")
    card = json.loads((manifest_path().parent / entry["card"]).read_text())
    opts = card["dataset"]["source"]["options"]
    try:
        path = convert_qm9(None, tmp_path_factory.mktemp("qm9") / "qm9.lmdb", seed=42, train_size=opts["train_size"],
                           val_size=opts["val_size"], test_size=opts["test_size"])
    except Exception as err:  # qm9pack not installed
        pytest.skip(f"QM9 not available: {err}")
    return path


def _reproduce(entry, db):
    if entry["id"] in STALE:
        pytest.skip(f"{entry['id']}: {STALE[entry['id']]}")
    from phizoo.eval.metrics import evaluate
    from phizoo.train.data import indices_digest, open_dataset, split_indices

    card = json.loads((manifest_path().parent / entry["card"]).read_text())
    ds = open_dataset(db)
    test = split_indices(ds, card["split"]["test"]["name"])
    assert indices_digest(test) == card["split"]["test"]["sha256"], "not the test split the card was measured on"
    model = load_checkpoint(manifest_path().parent / entry["card"], expected_sha256=entry["sha256"])
    torch.set_num_threads(1)
    got = evaluate(model, ds, test, batch_size=card["hyperparameters"]["val_batch_size"])
    want = card["metrics"]["test"]
    for key in ("energy_mae_meV", "energy_rmse_meV", "forces_mae_meV_per_A"):
        if key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-4), key
    if "charges_mae" in want:  # the trainer's name (e) for what evaluate calls charges_mae_e
        assert got["charges_mae_e"] == pytest.approx(want["charges_mae"], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name,phi", VARIANTS, ids=IDS)
def test_qm9_checkpoint_reproduces_its_card(name, phi, qm9_db):
    _reproduce(_entry(name, phi, "qm9"), qm9_db)


@pytest.mark.slow
@pytest.mark.parametrize("entry", COULOMB, ids=[e["id"] for e in COULOMB])
def test_coulomb_checkpoint_reproduces_its_card(entry, qm9_db):
    _reproduce(entry, qm9_db)


MD22_DB = ROOT / "data" / "xtb" / "Ac-Ala3-NHMe_gfn2xtb_500K.lmdb"


@pytest.mark.slow
@pytest.mark.skipif(not MD22_DB.exists(), reason="the GFN2-xTB Ac-Ala3-NHMe data is regenerated by "
                                                 "`python studies/phi_vs_baseline.py data` (~25 min), not shipped")
@pytest.mark.parametrize("name,phi", VARIANTS, ids=IDS)
def test_md22_xtb_checkpoint_reproduces_its_card(name, phi):
    _reproduce(_entry(name, phi, "md22-xtb-ac-ala3"), MD22_DB)


def test_stale_entries_load_with_a_warning_and_bad_marks_are_refused(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "pretrained", tmp_path / "pretrained")
    os.symlink(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    monkeypatch.setenv("PHIZOO_HOME", str(tmp_path))
    mpath = tmp_path / "pretrained" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    entry = next(e for e in manifest["checkpoints"] if e["id"] == "visnet-qm9")
    entry["stale"] = "trained before a test change"
    mpath.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="'visnet-qm9' is stale: trained before a test change"):
        phizoo.load_model("visnet", phi=False)
    entry["stale"] = 1
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="'stale' must be a string"):
        phizoo.load_model("visnet", phi=False)
    del entry["stale"]
    entry["coulomb"] = "yes"
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="'coulomb' must be true or false"):
        phizoo.load_model("visnet", phi=False)
    entry["coulomb"] = False
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"no pretrained weights for model='visnet' phi=False coulomb=True"):
        phizoo.load_model("visnet", phi=False, coulomb=True)  # none shipped; the listing says what is
