"""``studies/long_range_report.py``: verdicts against the base, tables and NVE rows from run files."""
import json

import pytest

import studies.long_range_report as rep


def _row(variant, seed, energy, forces, task="dimers"):
    return {"task": task, "model": "painn", "variant": variant, "n_train": 100, "seed": seed,
            "energy_mae_meV": energy, "forces_mae_meV_per_A": forces, "frames": []}


def test_verdict_needs_more_than_the_seed_spread_and_ten_percent():
    rows = [_row("base", s, e, 50.0) for s, e in enumerate((95.0, 100.0, 105.0))]
    rows += [_row("coulomb", s, e, 20.0) for s, e in enumerate((48.0, 50.0, 52.0))]       # clearly better
    rows += [_row("phi", s, e, 50.0) for s, e in enumerate((92.0, 96.0, 100.0))]          # within the spread
    rows += [_row("phi-paper", s, e, 70.0) for s, e in enumerate((140.0, 150.0, 160.0))]  # clearly worse
    lines = {line.split("|")[2].strip(): line for line in rep.verdicts(rows)[2:]}
    assert lines["coulomb"].endswith("| wins (3 seeds) |") and "50.0 vs 100.0" in lines["coulomb"]
    assert lines["phi"].endswith("| ties (3 seeds) |")
    assert lines["phi-paper"].endswith("| loses (3 seeds) |")
    # a head with its own baseline is judged against that one, and the baseline is no head
    les = [_row("base-les", 0, 300.0, 150.0), _row("coulomb-les", 0, 30.0, 15.0)]
    lines = {line.split("|")[2].strip(): line for line in rep.verdicts(rows + les)[2:]}
    assert "base-les" not in lines and "30.0 vs 300.0" in lines["coulomb-les"]
    assert lines["coulomb-les"].endswith("| wins (1 seed against base-les) |")


def test_report_writes_tables_and_nve_rows(tmp_path, monkeypatch):
    records, results = tmp_path / "ledger", tmp_path / "results"  # the committed records of finished runs
    for variant, energy in (("base", 10.0), ("coulomb", 4.0), ("phi", 9.0)):
        d = records / "nacl"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"painn-{variant}-n100-s0.json").write_text(json.dumps(_row(variant, 0, energy, 30.0, task="nacl")))
        (d / f"painn-{variant}-n100-s0.nve.json").write_text(json.dumps({
            "task": "nacl", "model": "painn", "variant": variant, "status": "completed", "steps": 10000,
            "timestep_fs": 1.0, "atoms": 17, "temperature_K": 300.0, "drift_meV_per_ps": -0.012,
            "max_abs_dE_meV": 3.25, "mean_temperature_K": 290.0, "ms_per_step": 8.0, "_trace": {}}
            | ({"status": "stopped at 1.00 ps: |ΔE| > 10 eV", "mean_temperature_K": 1e9} if variant == "phi" else {})))
    monkeypatch.setattr(rep, "RECORDS", records)
    monkeypatch.setattr(rep, "RESULTS", results)
    board = tmp_path / "LEADERBOARD.md"
    board.write_text(f"# Leaderboard\n\nother tables\n\n{rep.BLOCK_START}\nstale\n{rep.BLOCK_END}\n")
    text = rep.report(readme=tmp_path / "absent.md", leaderboard=board, leaderboards=False).read_text()
    block = board.read_text()
    assert block.startswith("# Leaderboard\n\nother tables\n") and "stale" not in block
    assert "### nacl" in block and "| painn | base | completed | -0.01 | 3.2 | 290 | 8.0 |" in block
    assert "| painn | coulomb | 1 | 4.0 | 30.0 | – |" in text
    assert "| painn | base | completed | -0.01 | 3.2 | 290 | 8.0 |" in text and "10 ps" in text
    saved = json.loads((results / "long_range.json").read_text())
    assert "| painn | phi | stopped at 1.00 ps: ΔE > 10 eV | – | – | – | 8.0 |" in text  # no stray cell separators
    assert len(saved["runs"]) == 3 and "_trace" not in saved["nve"][0]
    assert "| nacl | coulomb | 4.0 vs 10.0 | 30.0 vs 30.0 | energy wins, forces ties (1 seed) |" in text


@pytest.mark.parametrize("missing", ["start", "end"])
def test_readme_block_is_left_alone_without_both_markers(tmp_path, missing):
    readme = tmp_path / "README.md"
    text = "intro\n" + ("" if missing == "start" else rep.BLOCK_START + "\n") + "old\n" + \
        ("" if missing == "end" else rep.BLOCK_END + "\n")
    readme.write_text(text)
    assert not rep.replace_block(readme, ["new"])
    assert readme.read_text() == text
