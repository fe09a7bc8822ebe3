"""studies/report.py: an NVE run is reused only for the same weights (sha256 of the card) and length; the
long-range block of LEADERBOARD.md survives a regeneration."""
import json

import studies.report as report


def test_nve_reused_only_for_identical_weights_and_length(tmp_path, monkeypatch):
    card = {"integrity": {"weights_sha256": "aa"}, "metrics": {"test": {}}}
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "card", lambda dataset, model, phi, seed: card)
    entry = {"model": "painn", "phi": False, "weights_sha256": "aa", "steps": 20000, "drift_meV_per_ps": 1.5}
    (tmp_path / "study.json").write_text(json.dumps({"nve": [entry]}))
    assert report.previous_nve("painn", False, 20000) == entry
    assert report.previous_nve("painn", False, 1000) is None    # another length
    assert report.previous_nve("painn", True, 20000) is None     # another model
    card["integrity"]["weights_sha256"] = "bb"                   # retrained weights
    assert report.previous_nve("painn", False, 20000) is None


def test_leaderboard_keeps_the_long_range_block(tmp_path):
    """Regenerating LEADERBOARD.md keeps what studies/long_range.py wrote between its markers."""
    from studies.long_range_report import BLOCK_END, BLOCK_START, replace_block

    board = tmp_path / "LEADERBOARD.md"
    assert "run `python studies/long_range.py report`" in report.long_range_block(board)  # no file yet
    board.write_text("# old study tables\n" + report.long_range_block(board))
    assert replace_block(board, ["## When does long range help?", "| dimers | coulomb | wins |"])
    kept = report.long_range_block(board)
    assert kept.strip().startswith(BLOCK_START) and kept.strip().endswith(BLOCK_END)
    assert "| dimers | coulomb | wins |" in kept and "old study tables" not in kept
