"""studies/zoo_checks.py and studies/plan.py: the zoo plan holds every shipped family (the Coulomb
checkpoint without Φ), and the accuracy-target table picks the best seed-0 model per dataset and
counts a target as met only when the independent trajectory meets it too; a finished run stays
finished in a checkout without ``runs/`` (the ledger)."""
import json
import shutil

import studies.plan as zoo_plan
from studies import zoo_checks
from studies.plan import plan


def test_plan_trains_every_shipped_family_painn_first():
    runs = plan()
    assert runs[0] == ("qm9", "painn", False, 0) and runs[1] == ("md22", "painn", False, 0)
    assert ("qm9", "painn-coulomb", False, 0) in runs
    assert not [r for r in runs if r[1] == "painn-coulomb" and (r[2] or r[0] != "qm9")]
    for model in ("painn", "e2gnn", "mace", "visnet"):
        assert {(d, phi) for d, m, phi, s in runs if m == model and s == 0} == {
            (d, phi) for d in ("qm9", "md22") for phi in (False, True)}
    seed0 = [i for i, r in enumerate(runs) if r[3] == 0]
    assert max(seed0) < min(i for i, r in enumerate(runs) if r[3] > 0)  # the published weights first


def _run(dataset, model, phi, seed, value):
    key = zoo_checks.TARGETS[dataset][0]
    return {"dataset": dataset, "model": model, "phi": phi, "seed": seed, key: value, "epochs": 40,
            "stopped": "validation plateau"}


def test_targets_take_the_best_seed0_model_and_need_the_independent_trajectory():
    runs = [_run("qm9", "painn", False, 0, 28.0), _run("qm9", "mace", True, 0, 45.0),
            _run("qm9", "painn", False, 1, 20.0),  # another seed: not a shipped checkpoint
            _run("md22", "painn", True, 0, 29.0), _run("md22", "visnet", False, 0, 60.0)]
    independent = [{"model": "painn-phi-md22-xtb-ac-ala3", "frames": 300, "energy_mae_meV": 50.0,
                    "forces_mae_meV_per_A": 33.0, "test_split_forces_mae_meV_per_A": 29.0}]
    rows = {r["dataset"]: r for r in zoo_checks.target_rows(runs, independent)}
    assert rows["qm9"]["model"] == "painn-qm9" and rows["qm9"]["test"] == 28.0 and rows["qm9"]["met"]
    assert "independent" not in rows["qm9"]
    md = rows["md22"]
    assert md["model"] == "painn-phi-md22-xtb-ac-ala3" and md["test"] == 29.0 and md["independent"] == 33.0
    assert not md["met"]  # 29 on the test split, but 33 > 30 on the independent trajectory
    text = "\n".join(zoo_checks.markdown(list(rows.values()), independent))
    assert "| qm9 | painn-qm9 |" in text and "**no**" in text and "| painn-phi-md22-xtb-ac-ala3 | 50.0 | 33.0 | 29.0 |" in text


def test_a_finished_run_stays_finished_without_its_run_directory(tmp_path, monkeypatch):
    """Its card is committed to the ledger; its weights are found in pretrained/ only when the
    published file carries the card's sha256."""
    for name in ("RUNS", "LEDGER", "PRETRAINED"):
        monkeypatch.setattr(zoo_plan, name, tmp_path / name.lower())
    key = ("md22", "painn", False, 0)
    run = zoo_plan.run_dir(*key)
    run.mkdir(parents=True)
    card = {"integrity": {"weights_sha256": "aa"}, "metrics": {"val": {"forces_mae_meV_per_A": 24.0}}}
    (run / "best.json").write_text(json.dumps(card))
    assert not zoo_plan.finished(*key)  # in progress: no test metrics yet
    card["metrics"]["test"] = {"forces_mae_meV_per_A": 25.0}
    (run / "best.json").write_text(json.dumps(card))
    assert zoo_plan.finished(*key) and zoo_plan.weights(*key) == run / "best"
    zoo_plan.record(*key)
    shutil.rmtree(tmp_path / "runs")  # a fresh checkout
    assert zoo_plan.card(*key) == card and zoo_plan.weights(*key) is None
    published = tmp_path / "pretrained" / zoo_plan.checkpoint_id("md22", "painn", False)
    published.parent.mkdir()
    published.with_suffix(".json").write_text(json.dumps({"integrity": {"weights_sha256": "bb"}}))
    assert zoo_plan.weights(*key) is None  # other weights under that name
    published.with_suffix(".json").write_text(json.dumps(card))
    assert zoo_plan.weights(*key) == published
