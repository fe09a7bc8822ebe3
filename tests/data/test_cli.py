"""``phizoo data convert`` / ``phizoo data info``."""

import numpy as np

import pytest

from phizoo.cli.main import main
from phizoo.data import LmdbDataset

from . import native
from tests.optional import needs_qm9pack


def test_convert_and_info_md22(tmp_path, capsys, md22_file):
    dest = tmp_path / "out.lmdb"
    assert main(["data", "convert", "md22", str(md22_file), "-o", str(dest), "--limit", "30", "--train-size", "10",
                 "--seed", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "30 structures" in out and "train 9, val 1, test 20" in out
    ds = LmdbDataset(dest)
    assert len(ds) == 30 and ds.metadata["splits"]["seed"] == 3
    assert main(["data", "info", str(dest)]) == 0
    info = capsys.readouterr().out
    for needle in ("md22: MD22 AT-AT", "records     30 structures, 180 atoms", "elements    C", "energy eV",
                   "forces      rms", "sha256", "kcal/mol x 0.04336", "train 9, val 1, test 20 (seed 3)"):
        assert needle in info, needle
    assert main(["data", "info", str(dest), "--json"]) == 0
    assert '"schema_version": 2' in capsys.readouterr().out


def test_convert_oe62_with_progress_bar(tmp_path, capsys, oe62_file):
    dest = tmp_path / "o.lmdb"
    assert main(["data", "convert", "oe62", str(oe62_file), "-o", str(dest), "--train-subsets", "10,20"]) == 0
    cap = capsys.readouterr()
    assert "100/100" in cap.err  # tqdm
    assert "train 81, val 10, test 9, train_10 10, train_20 20" in cap.out and "references  fitted on train" in cap.out


def test_errors_are_reported_not_raised(tmp_path, capsys, md22_file):
    assert main(["data", "convert", "md22", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.lmdb")]) == 2
    assert "no such" in capsys.readouterr().err
    bad = native.md22_npz(tmp_path / "md22_DHA.npz", n=5, F=None)
    assert main(["data", "convert", "md22", str(bad), "-o", str(tmp_path / "x.lmdb"), "-q"]) == 2
    assert "missing key(s) 'F'" in capsys.readouterr().err
    assert main(["data", "convert", "md22", "-o", str(tmp_path / "x.lmdb")]) == 2
    assert "give the source file" in capsys.readouterr().err
    (tmp_path / "junk.lmdb").write_text("junk" * 2000)
    assert main(["data", "info", str(tmp_path / "junk.lmdb")]) == 2
    assert "not a readable LMDB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "convert", "md22", str(md22_file), "-o", "x.lmdb", "--limit", "0"])
    assert not list(tmp_path.glob("*.lmdb*"))[1:]  # only junk.lmdb


@needs_qm9pack
def test_qm9_from_installed_package(tmp_path, capsys):
    dest = tmp_path / "q.lmdb"
    assert main(["data", "convert", "qm9", "-o", str(dest), "--limit", "50", "-q"]) == 0
    assert "qm9_part1.csv" in capsys.readouterr().out
    assert LmdbDataset(dest).get_record(0)["id"] == "dsgdb9nsd_000001"


def test_test_only_store_holds_every_frame_in_test(tmp_path, capsys):
    """An independent trajectory of an unknown molecule: no budget needed, every frame in 'test',
    energies in eV as in the source, and the store verifies; the split options conflict."""
    src = native.md22_npz(tmp_path / "md22_benzene.npz", n=12)
    dest = tmp_path / "held_out.lmdb"
    assert main(["data", "convert", "md22", str(src), "-o", str(dest), "--test-only", "-q"]) == 0
    ds = LmdbDataset(dest)
    assert ds.metadata["splits"]["sizes"] == {"test": 12} and "--test-only" in ds.metadata["splits"]["policy"]
    assert ds.split_indices("test").tolist() == list(range(12))
    assert ds.metadata["element_references"] is None
    assert ds[3].energy.item() == pytest.approx(float(np.load(src)["E"].reshape(-1)[3]) * native.KCAL_MOL_IN_EV)
    assert main(["data", "info", str(dest), "--verify"]) == 0
    capsys.readouterr()
    assert main(["data", "convert", "md22", str(src), "-o", str(tmp_path / "x.lmdb"), "--test-only",
                 "--train-size", "5", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--test-only" in err and "--train-size" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.lmdb").exists()
    # without --test-only an unknown molecule still needs its budget, and the message names both ways out
    assert main(["data", "convert", "md22", str(src), "-o", str(tmp_path / "y.lmdb"), "-q"]) == 2
    assert "--train-size" in capsys.readouterr().err
