"""``phizoo train / finetune / eval / leaderboard`` end to end on a tiny data set."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

import phizoo
from phizoo.cli.main import main
from phizoo.eval import evaluate, leaderboard
from phizoo.train import data as train_data
from phizoo.train.data import split_indices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(tmp_path, phi: bool):
    cfg = {"model": {"name": "painn", "preset": "test", "phi": phi}, "data": {"dataset": "synthetic"},
           "optimizer": {"lr": 3e-3}, "schedule": {"warmup_steps": 5},
           "loss": {"energy": 1.0, "forces": 1.0},
           "epochs": 5, "batch_size": 10, "seed": 7, "monitor": "val_energy_mae", "progress": False}
    path = tmp_path / f"painn{'-phi' if phi else ''}-synthetic.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, db):
    tmp_path = tmp_path_factory.mktemp("runs")
    out = {}
    for phi in (False, True):
        run = tmp_path / ("phi" if phi else "base")
        rc = main(["train", "--config", str(_config(tmp_path, phi)), "--data", str(db), "-o", str(run),
                   "--epochs", "4", "--set", "optimizer.weight_decay=0.0", "--no-progress"])
        assert rc == 0
        out[phi] = run
    return out


def test_train_cli_writes_a_run_and_refuses_to_overwrite(runs, db, tmp_path, capsys):
    run = runs[True]
    card = phizoo.pretrained.read_card(run / "best")
    assert card["hyperparameters"]["epochs"] == 4 and card["hyperparameters"]["optimizer"]["weight_decay"] == 0.0
    assert card["dataset"]["name"] == "synthetic" and card["dataset"]["path"] == str(db)
    assert card["split"]["test"]["size"] == 15 and "test" in card["metrics"]
    assert (run / "metrics.csv").exists() and (run / "config.yaml").exists()
    rc = main(["train", "--config", str(_config(tmp_path, True)), "--data", str(db), "-o", str(run)])
    assert rc == 2 and "--resume" in capsys.readouterr().err
    # --resume on a finished run: nothing left to do, same checkpoint
    before = (run / "best.safetensors").read_bytes()
    assert main(["train", "--config", str(_config(tmp_path, True)), "--data", str(db), "-o", str(run),
                 "--epochs", "4", "--set", "optimizer.weight_decay=0.0", "--resume", "--no-progress"]) == 0
    assert (run / "best.safetensors").read_bytes() == before


def test_eval_cli_reports_plain_metrics_and_a_parity_plot(runs, db, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(runs[True] / "best"), "--data", str(db), "--split", "test", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "energy MAE" in printed and "force MAE" in printed and "meV/Å" in printed
    report = json.loads(next(out.glob("*-test.json")).read_text())
    # the same numbers as the Python API, computed by hand from predictions
    ds = train_data.open_dataset(db)
    idx = split_indices(ds, "test")
    model = phizoo.load_checkpoint(runs[True] / "best")
    metrics, pred = evaluate(model, ds, idx, return_predictions=True)
    err = pred["energy_pred"] - pred["energy_true"]
    assert report["energy_mae_meV"] == pytest.approx(1000 * np.abs(err).mean(), rel=1e-9)
    assert report["energy_rmse_meV"] == pytest.approx(1000 * np.sqrt((err ** 2).mean()), rel=1e-9)
    assert report["energy_mae_meV_per_atom"] == pytest.approx(1000 * np.abs(err / pred["natoms"]).mean(), rel=1e-9)
    ferr = pred["forces_pred"] - pred["forces_true"]
    assert report["forces_mae_meV_per_A"] == pytest.approx(1000 * np.abs(ferr).mean(), rel=1e-6)
    assert report["n_structures"] == len(idx) == 15
    png = next(out.glob("*-parity.png"))
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 800  # two panels (energy and forces)


def test_leaderboard_cli_and_api(runs, db, tmp_path, capsys):
    out = tmp_path / "board"
    models = [str(runs[False] / "best"), str(runs[True] / "best.json")]
    assert main(["leaderboard", "--data", str(db), "--models", *models, "--names", "PaiNN", "PaiNN-Φ",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| PaiNN |" in printed and "| PaiNN-Φ |" in printed
    md = (out / "leaderboard.md").read_text()
    assert "energy MAE (meV)" in md and "force MAE (meV/Å)" in md and "peak memory (MB)" in md
    with open(out / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["PaiNN", "PaiNN-Φ"] and [r["phi"] for r in rows] == ["False", "True"]
    base, phi = (phizoo.load_checkpoint(m) for m in models)
    assert int(rows[0]["parameters"]) == base.num_parameters() < int(rows[1]["parameters"]) == phi.num_parameters()
    for r in rows:
        assert float(r["energy_mae_meV"]) > 0 and float(r["forces_mae_meV_per_A"]) > 0
        assert float(r["inference_ms_per_structure"]) > 0 and r["peak_memory_MB"] != ""
        assert r["split"] == "test" and int(r["n_structures"]) == 15
    assert (out / "leaderboard.png").read_bytes()[:8] == PNG_MAGIC
    # --limit: the first N structures of the split
    assert main(["leaderboard", "--data", str(db), "--models", models[0], "--limit", "4", "--no-memory",
                 "-o", str(tmp_path / "board4")]) == 0
    with open(tmp_path / "board4" / "leaderboard.csv") as fh:
        assert int(next(csv.DictReader(fh))["n_structures"]) == 4
    # the Python API returns the same table
    ds = train_data.open_dataset(db)
    api = leaderboard(models, ds, split="test", names=["PaiNN", "PaiNN-Φ"])
    assert [r["model"] for r in api] == ["PaiNN", "PaiNN-Φ"]
    for a, r in zip(api, rows):
        assert a["energy_mae_meV"] == pytest.approx(float(r["energy_mae_meV"]), rel=1e-9)
        assert a["forces_mae_meV_per_A"] == pytest.approx(float(r["forces_mae_meV_per_A"]), rel=1e-6)
        assert a["parameters"] == int(r["parameters"]) and a["phi"] == (r["phi"] == "True")
    # the eval numbers are the leaderboard numbers
    assert api[1]["energy_mae_meV"] == pytest.approx(evaluate(phi, ds, split_indices(ds, "test"))["energy_mae_meV"])


def test_finetune_cli_freezes_the_backbone(runs, db, tmp_path, capsys):
    out = tmp_path / "ft"
    src = runs[True] / "best"
    assert main(["finetune", "--from", str(src), "--data", str(db), "-o", str(out), "--epochs", "2",
                 "--freeze-backbone", "--refit-references", "--no-progress"]) == 0
    assert '"freeze_backbone": true' in capsys.readouterr().out
    before, after = phizoo.load_checkpoint(src), phizoo.load_checkpoint(out / "best")
    for (k, a), b in zip(before.backbone.state_dict().items(), after.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, b) for a, b in zip(before.head.parameters(), after.head.parameters()))
    card = phizoo.pretrained.read_card(out / "best")
    assert card["dataset"]["finetuned_from"]["checkpoint"] == str(src)
    assert card["references"]["fitted_on"] == "train"
