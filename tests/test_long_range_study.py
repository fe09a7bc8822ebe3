"""``studies/long_range.py``: the plan, nested training subsets, and one tiny run per variant on
generated point charges (8 + 8 ions, periodic) whose ``eval.json`` matches the checkpoint's own
predictions on the test split; finished runs survive a checkout without ``runs/`` (the ledger)."""
import json

import numpy as np
import pytest
import torch

import studies.long_range as lr
from phizoo.generate.lr.point_charges import generate_point_charges
from phizoo.pretrained import load_checkpoint
from phizoo.train.data import open_dataset, split_indices


@pytest.fixture()
def tiny_task(tmp_path, monkeypatch):
    path = generate_point_charges(tmp_path / "pc.lmdb", 10, seed=1, progress=False, n_cations=8, n_anions=8,
                                  stride=4, equilibration=10, checkpoint_every=2)
    task = lr.Task(path, ("point-charges",), epochs=1, batch_size=4, charged=False, periodic=True,
                   nve_temperature=1500.0)
    monkeypatch.setitem(lr.TASKS, "tiny", task)
    monkeypatch.setattr(lr, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(lr, "LEDGER", tmp_path / "ledger")
    monkeypatch.setattr(lr, "PRESET", "test")
    return path


def test_plan_covers_the_protocol():
    runs = lr.plan(tasks=["dimers"])
    painn = [r for r in runs if r[1] == "painn"]
    assert {r[3] for r in painn if r[4] == 0} == set(lr.FRACTIONS)
    assert {r[4] for r in painn if r[3] == 1.0} == {0, 1, 2}
    assert {r[2] for r in runs} == set(lr.VARIANTS) - set(lr.LES_ONLY)
    assert "phi-paper" not in lr.variants_for("point-charges")  # the paper formulation refuses cells
    les = [r for r in lr.plan(tasks=["point-charges"]) if r[2] in lr.LES_ONLY]
    assert sorted(les) == sorted(("point-charges", "painn", v, 1.0, s) for v in lr.LES_ONLY for s in (0, 1, 2))
    assert lr.config("point-charges", "painn", "base-les", 0)["model"]["overrides"] == {"cutoff": 4.0, "num_layers": 1}
    assert {r[1] for r in lr.plan(tasks=["ag3"])} == {"painn", "e2gnn", "visnet", "mace"}


def test_mace_gets_the_elements_of_the_task(tiny_task):
    """MACE's one-hot embedding is fixed at build time: the study gives it the task's elements."""
    cfg = lr.config("tiny", "mace", "coulomb", 0)
    assert cfg["model"]["overrides"] == {"elements": [11, 17]} and cfg["model"]["coulomb"]
    assert "overrides" not in lr.config("tiny", "painn", "coulomb", 0)["model"]
    from phizoo.train import build_from_config
    from phizoo.train.config import make_config

    model = build_from_config(make_config(cfg))
    assert model.backbone.elements == [11, 17]


def test_training_subsets_are_nested_and_deterministic(tiny_task):
    train = set(split_indices(open_dataset(tiny_task), "train"))
    small, large = lr.train_subset("tiny", 0.25), lr.train_subset("tiny", 1.0)
    assert set(small) < set(large) == train
    assert small == lr.train_subset("tiny", 0.25)


@pytest.mark.parametrize("variant", ["base", "phi+coulomb"])
def test_one_run_trains_and_evaluates(tiny_task, variant):
    res = lr.run_one("tiny", "painn", variant, 1.0, 0)
    out = lr.run_dir("tiny", "painn", variant, 1.0, 0)
    assert json.loads((out / "eval.json").read_text())["energy_mae_meV"] == res["energy_mae_meV"]
    ds = open_dataset(tiny_task)
    test = split_indices(ds, "test")
    assert [f["index"] for f in res["frames"]] == test
    model = load_checkpoint(out / "best", dtype=torch.float64).eval()
    errors = [1e3 * float(model(ds[i].clone())["energy"][0] - ds[i].energy[0]) for i in test]
    assert res["energy_mae_meV"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-9)
    assert ("charges" in res) == (variant == "phi+coulomb")
    if "charges" in res:  # a neutral task: E(−q) = E(q), so the latent charges' sign is aligned first
        q = np.concatenate([model(ds[i].clone())["coulomb_charges"].detach().numpy() for i in test])
        ref = np.concatenate([ds[i].charges.numpy().reshape(-1) for i in test])
        assert res["charges"]["sign"] == (1.0 if q @ ref >= 0 else -1.0)
        assert res["charges"]["mae_e"] == pytest.approx(np.abs(res["charges"]["sign"] * q - ref).mean(), rel=1e-9)
        assert res["charges"]["mae_e"] <= np.abs(q - ref).mean() + 1e-12
        assert res["charges"]["pearson_r"] == pytest.approx(np.corrcoef(q, ref)[0, 1], rel=1e-6)


def test_nve_of_a_finished_run_is_written_once_per_weights(tiny_task, monkeypatch):
    """NVE from the first test frame (a periodic cell of 16 ions); unchanged weights reuse nve.json."""
    monkeypatch.setattr(lr, "NVE", {"steps": 20, "timestep_fs": 1.0, "record_every": 5})
    assert lr.nve_one("tiny", "painn", "base") is None  # not trained yet
    lr.run_one("tiny", "painn", "base", 1.0, 0)
    res = lr.nve_one("tiny", "painn", "base")
    saved = json.loads((lr.run_dir("tiny", "painn", "base", 1.0, 0) / "nve.json").read_text())
    assert saved["status"] == res["status"] == "completed" and saved["atoms"] == 16
    assert saved["temperature_K"] == 1500.0 and saved["simulated_ps"] == pytest.approx(0.02)
    import phizoo.eval

    monkeypatch.setattr(phizoo.eval, "nve_stability", lambda *a, **k: pytest.fail("rerun for unchanged weights"))
    assert lr.nve_one("tiny", "painn", "base")["drift_meV_per_ps"] == saved["drift_meV_per_ps"]


@pytest.mark.parametrize("task", list(lr.TASKS))
def test_data_commands_are_valid_phizoo_command_lines(task):
    """Every task's data step parses with phizoo's own CLI, writes the task's LMDB, and the MD22
    tasks convert the very .npz their xtb-md step writes."""
    from phizoo.cli.main import build_parser

    commands = lr.data_commands(lr.TASKS[task])
    parsed = [build_parser().parse_args(c) for c in commands]
    assert str(parsed[-1].output) == str(lr.TASKS[task].path)
    if lr.TASKS[task].md22:
        assert [c[1] for c in commands] == ["xtb-md", "convert"]
        assert str(parsed[0].output) == parsed[1].src[0] and parsed[0].molecule == parsed[1].molecule


def test_task_leaderboard_times_every_finished_variant(tiny_task, tmp_path, monkeypatch):
    """The report's per-task leaderboard (phizoo.eval.leaderboard) holds the finished full-size runs,
    with the test errors their eval.json recorded, and writes its files."""
    import studies.long_range_report as rep

    monkeypatch.setattr(rep, "RESULTS", tmp_path / "results")
    monkeypatch.setitem(rep.TASKS, "tiny", lr.TASKS["tiny"])
    assert rep.task_leaderboard("tiny") == []
    results = {v: lr.run_one("tiny", "painn", v, 1.0, 0) for v in ("base", "coulomb")}
    rows = rep.task_leaderboard("tiny")
    assert [r["model"] for r in rows] == ["painn-base", "painn-coulomb"]
    assert [r["coulomb"] for r in rows] == [False, True]
    for r in rows:
        assert r["energy_mae_meV"] == pytest.approx(results[r["model"][6:]]["energy_mae_meV"], rel=1e-4)
        assert r["inference_ms_per_structure"] > 0
    assert (tmp_path / "results" / "long_range_leaderboard-tiny" / "leaderboard.md").exists()


def test_finished_runs_survive_a_checkout_without_runs(tiny_task, tmp_path, monkeypatch):
    """runs/ is not committed: the ledger keeps every finished run's eval.json and NVE result, the
    driver does not redo those runs, and the report reads them and keeps the committed leaderboard."""
    import shutil

    import studies.long_range_report as rep

    monkeypatch.setattr(lr, "NVE", {"steps": 20, "timestep_fs": 1.0, "record_every": 5})
    monkeypatch.setattr(rep, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(rep, "RECORDS", lr.LEDGER / "long_range")
    monkeypatch.setitem(rep.TASKS, "tiny", lr.TASKS["tiny"])
    result = json.loads(json.dumps(lr.run_one("tiny", "painn", "base", 1.0, 0)))
    nve = json.loads(json.dumps(lr.nve_one("tiny", "painn", "base")))
    board = rep.task_leaderboard("tiny")
    shutil.rmtree(tmp_path / "runs")  # a fresh checkout
    assert rep.collect() == [result] and rep.collect_nve() == [nve]
    kept = rep.task_leaderboard("tiny")
    assert [(r["model"], r["energy_mae_meV"]) for r in kept] == [(r["model"], r["energy_mae_meV"]) for r in board]
    todo = []
    monkeypatch.setattr(lr, "_in_workers", lambda jobs, step, items, log: todo.extend(r for r, _ in items))
    lr.train(1, tasks=["tiny"], models=["painn"], variants=["base"])
    assert ("tiny", "painn", "base", 1.0, 0) not in todo
    assert ("tiny", "painn", "base", 1.0, 1) in todo  # not finished: still to do
