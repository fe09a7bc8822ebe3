"""Atomic, resumable conversion: an interrupted or failed run never leaves a database that looks valid."""
import numpy as np
import pytest

from phizoo.data import DataError, IncompleteDatabaseError, LmdbDataset, convert_md22
from phizoo.data.convert import convert
from phizoo.data.md22 import MD22Source
from phizoo.data.store_writer import StoreWriter

from . import native


class Stop(KeyboardInterrupt):
    pass


def _interrupt_at(k):
    def hook(i):
        if i == k:
            raise Stop()
    return hook


def _records(path):
    ds = LmdbDataset(path)
    return [ds.get_record(i) for i in range(len(ds))], ds.metadata


def test_interrupted_run_leaves_nothing_valid_and_resumes(tmp_path):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=60)
    dest = tmp_path / "out" / "md22.lmdb"
    with pytest.raises(KeyboardInterrupt):
        convert(MD22Source(src, train_size=20), dest, on_record=_interrupt_at(37), progress=False)
    assert not dest.exists()
    partial = dest.with_name(".md22.lmdb.partial")
    assert partial.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == [".md22.lmdb.partial"]  # lock released and removed
    with pytest.raises(IncompleteDatabaseError, match="interrupted"):
        LmdbDataset(partial)
    # even renamed by hand, it is refused
    fake = tmp_path / "fake.lmdb"
    fake.write_bytes(partial.read_bytes())
    with pytest.raises(IncompleteDatabaseError):
        LmdbDataset(fake)
    # the same command resumes at record 37
    seen = []
    convert(MD22Source(src, train_size=20), dest, on_record=seen.append, progress=False)
    assert seen[0] == 37 and seen[-1] == 59
    assert dest.exists() and not partial.exists()
    fresh = convert(MD22Source(src, train_size=20), tmp_path / "fresh.lmdb", progress=False)
    (a, ma), (b, mb) = _records(dest), _records(fresh)
    for ra, rb in zip(a, b):
        assert ra["id"] == rb["id"] and all(np.array_equal(ra[k], rb[k]) for k in ("z", "pos", "energy", "forces"))
    ma.pop("created"), mb.pop("created")
    ma["source"]["files"][0].pop("path"), mb["source"]["files"][0].pop("path")
    assert ma == mb  # statistics recomputed over resumed records too


def test_changed_options_or_restart_start_over(tmp_path):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=30)
    dest = tmp_path / "m.lmdb"
    with pytest.raises(KeyboardInterrupt):
        convert(MD22Source(src, train_size=20), dest, seed=1, on_record=_interrupt_at(10), progress=False)
    seen = []
    convert(MD22Source(src, train_size=20), dest, seed=2, on_record=seen.append, progress=False)  # other seed
    assert seen[0] == 0
    dest2 = tmp_path / "n.lmdb"
    with pytest.raises(KeyboardInterrupt):
        convert(MD22Source(src, train_size=20), dest2, on_record=_interrupt_at(10), progress=False)
    seen = []
    convert(MD22Source(src, train_size=20), dest2, resume=False, on_record=seen.append, progress=False)
    assert seen[0] == 0


def test_bad_record_midway_removes_everything(tmp_path):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=30)
    source = MD22Source(src, train_size=20)
    good = source.structure

    def broken(i):
        s = good(i)
        if i == 25:
            s.z = np.array([6, 1, 8, 7, 6, 0])
        return s
    source.structure = broken
    with pytest.raises(DataError, match="frame 25: unknown element"):
        convert(source, tmp_path / "x.lmdb", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md22_AT-AT.npz"]


def test_existing_output_and_overwrite(tmp_path, md22_file):
    dest = convert_md22(md22_file, tmp_path / "a.lmdb", train_size=20)
    before = dest.read_bytes()
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        convert_md22(md22_file, dest, train_size=20)
    assert dest.read_bytes() == before
    # a failing overwrite leaves the old database untouched
    with pytest.raises(DataError):
        convert_md22(md22_file, dest, train_size=100, overwrite=True)

    def fail(i):
        if i == 30:
            raise DataError("bad record")
    with pytest.raises(DataError, match="bad record"):
        convert(MD22Source(md22_file, train_size=20), dest, overwrite=True, on_record=fail, progress=False)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lmdb", "md22_AT-AT.npz"]
    convert_md22(md22_file, dest, train_size=10, overwrite=True)
    assert LmdbDataset(dest).metadata["splits"]["budget"] == 10


def test_two_writers_are_refused(tmp_path):
    w = StoreWriter(tmp_path / "a.lmdb", "fp")
    try:
        with pytest.raises(DataError, match="another conversion"):
            StoreWriter(tmp_path / "a.lmdb", "fp")
    finally:
        w.abort()
    assert list(tmp_path.iterdir()) == []
