"""``phizoo data generate ...``: the commands run at tiny sizes, errors are one line, and a
``kill`` (SIGTERM) leaves a run that the same command continues to identical records."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phizoo.cli.main import main
from phizoo.data import LmdbDataset
from tests.optional import needs_xtb

ROOT = Path(__file__).resolve().parents[2]
PC = ["--cations", "8", "--anions", "8", "--stride", "3", "--equilibration", "6"]


def test_point_charges_command(tmp_path, capsys):
    dest = tmp_path / "pc.lmdb"
    assert main(["data", "generate", "point-charges", "-o", str(dest), "--frames", "4", "--seed", "2", *PC, "-q"]) == 0
    out = capsys.readouterr().out
    assert "4 structures" in out and "Ewald" in out and "per frame" in out
    ds = LmdbDataset(dest)
    assert ds.metadata["generator"]["stride"] == 3 and ds.metadata["splits"]["seed"] == 2
    # an existing output: one line, exit status 2
    assert main(["data", "generate", "point-charges", "-o", str(dest), "--frames", "4", *PC, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phizoo: error:") and "already exists" in err and "\n" not in err


@pytest.mark.parametrize("argv", [["point-charges", "--frames", "0"], ["point-charges", "--seed", "-1"],
                                  ["point-charges", "--box", "abc"], ["dimers", "--curves", "0"],
                                  ["dimers", "--split-by", "atom"], ["ag3", "--geometries", "-2"],
                                  ["nacl", "--geometries", "0"], ["point-charges", "--box", "10", "--density", "0.03"]])
def test_bad_options_are_argparse_errors(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(["data", "generate", argv[0], "-o", str(tmp_path / "x.lmdb"), *argv[1:]])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1]
    assert not (tmp_path / "x.lmdb").exists()


@needs_xtb
def test_xtb_commands(tmp_path, capsys):
    for argv in (["dimers", "--curves", "1", "--points", "3", "--pairs", "water-water,nh4-water"],
                 ["ag3", "--geometries", "2"], ["carbon-chains", "--frames", "2"], ["nacl", "--geometries", "1"]):
        dest = tmp_path / f"{argv[0]}.lmdb"
        assert main(["data", "generate", argv[0], "-o", str(dest), *argv[1:], "-q"]) == 0, argv
        assert "GFN2-xTB (tblite" in capsys.readouterr().out
    assert len(LmdbDataset(tmp_path / "dimers.lmdb")) == 6 and len(LmdbDataset(tmp_path / "ag3.lmdb")) == 4
    assert main(["data", "generate", "dimers", "-o", str(tmp_path / "y.lmdb"), "--pairs", "na-cl", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("phizoo: error: unknown dimer pair(s) na-cl; known:") and "\n" not in err


@pytest.mark.slow
def test_sigterm_then_same_command_gives_identical_records(tmp_path):
    from phizoo.generate.lr.point_charges import checkpoint_path, generate_point_charges

    opts = ["--cations", "8", "--anions", "8", "--stride", "20", "--equilibration", "20", "--frames", "40",
            "--checkpoint-every", "3", "--seed", "9", "-q"]
    dest = tmp_path / "k.lmdb"
    cmd = [sys.executable, "-m", "phizoo.cli.main", "data", "generate", "point-charges", "-o", str(dest), *opts]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = dest.with_name(f".{dest.name}.partial")
    deadline = time.time() + 120
    while not checkpoint_path(dest).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # wait for the first MD-state checkpoint (the MD is running)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be interrupted (fast machine)")
    assert proc.returncode == 130, err
    assert "interrupted" in err and not dest.exists() and partial.exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not checkpoint_path(dest).exists()
    ref = LmdbDataset(generate_point_charges(tmp_path / "ref.lmdb", 40, seed=9, n_cations=8, n_anions=8, stride=20,
                                             equilibration=20, progress=False))
    got = LmdbDataset(dest)
    assert len(got) == 40
    for i in range(40):
        a, b = got.get_record(i), ref.get_record(i)
        assert a["meta"] == b["meta"] and np.array_equal(a["pos"], b["pos"]) and np.array_equal(a["forces"], b["forces"])
