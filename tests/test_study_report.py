"""studies/report.py: an NVE run is reused only for the same weights (sha256 of the card) and length."""
import json

import studies.report as report


def test_nve_reused_only_for_identical_weights_and_length(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "painn-base-s0"
    run.mkdir(parents=True)
    card = {"integrity": {"weights_sha256": "aa"}, "metrics": {"test": {}}}
    (run / "best.json").write_text(json.dumps(card))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "run_dir", lambda dataset, model, phi, seed: run)
    entry = {"model": "painn", "phi": False, "weights_sha256": "aa", "steps": 20000, "drift_meV_per_ps": 1.5}
    (tmp_path / "study.json").write_text(json.dumps({"nve": [entry]}))
    assert report.previous_nve("painn", False, 20000) == entry
    assert report.previous_nve("painn", False, 1000) is None    # another length
    assert report.previous_nve("painn", True, 20000) is None     # another model
    card["integrity"]["weights_sha256"] = "bb"                   # retrained weights
    (run / "best.json").write_text(json.dumps(card))
    assert report.previous_nve("painn", False, 20000) is None
