"""Broken databases: each raises a DataError naming the file (and record) and the problem."""
import json
import os

import lmdb
import numpy as np
import pytest

from phizoo.data import (DataError, DatabaseNotFoundError, IncompleteDatabaseError, LmdbDataset,
                         SchemaVersionError, convert_md22, read_metadata)
from phizoo.data.store import COMPLETE_KEY, META_KEY, record_key

from . import native


@pytest.fixture
def db(tmp_path):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=300, atoms=20)
    return convert_md22(src, tmp_path / "d.lmdb", train_size=100)


def _edit(path, fn):
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        fn(txn)
    env.close()


def test_missing_empty_and_foreign_files(tmp_path):
    with pytest.raises(DatabaseNotFoundError, match="no such database") as err:
        LmdbDataset(tmp_path / "nope.lmdb")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, DataError)
    (tmp_path / "empty.lmdb").write_bytes(b"")
    with pytest.raises(DataError, match="empty.lmdb: empty file"):
        LmdbDataset(tmp_path / "empty.lmdb")
    (tmp_path / "text.lmdb").write_text("hello " * 3000)
    with pytest.raises(DataError, match="text.lmdb: not a readable LMDB database"):
        LmdbDataset(tmp_path / "text.lmdb")
    other = tmp_path / "other.lmdb"
    _edit(other, lambda txn: txn.put(b"key", b"value"))
    with pytest.raises(DataError, match="not a phizoo database"):
        LmdbDataset(other)


@pytest.mark.parametrize("keep", [0.9, 0.5, 8192, 4096, 100])
def test_truncated(db, keep):
    size = db.stat().st_size
    os.truncate(db, int(size * keep) if keep < 1 else keep)
    with pytest.raises(DataError, match="d.lmdb.*(truncated|not a readable LMDB)"):
        ds = LmdbDataset(db)
        for i in range(len(ds)):
            ds[i]


def test_corrupted_lmdb_header(db):
    with open(db, "r+b") as fh:
        fh.write(os.urandom(64))
    with pytest.raises(DataError, match="d.lmdb: not a readable LMDB database"):
        LmdbDataset(db)


def test_corrupted_record_names_its_index(db):
    env = lmdb.open(str(db), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        value = bytes(txn.get(record_key(123)))
    env.close()
    blob = db.read_bytes()
    hits, at = [], blob.find(value)
    while at >= 0:  # copy-on-write may leave stale copies in free pages
        hits.append(at)
        at = blob.find(value, at + 1)
    assert hits
    with open(db, "r+b") as fh:  # flip one byte of the forces of record 123 (in every copy)
        for at in hits:
            fh.seek(at + len(value) - 5)
            b = fh.read(1)
            fh.seek(at + len(value) - 5)
            fh.write(bytes([b[0] ^ 0x55]))
    ds = LmdbDataset(db)
    ds[122], ds[124]
    with pytest.raises(DataError, match="d.lmdb: record 123: .*sha256 check.*corrupted"):
        ds[123]


def test_newer_schema_version(db):
    def bump(txn):
        meta = json.loads(txn.get(META_KEY))
        meta["schema_version"] = 99
        txn.put(META_KEY, json.dumps(meta).encode())
    _edit(db, bump)
    with pytest.raises(SchemaVersionError, match="schema version 99 is newer than this phizoo can read \\(up to 2\\)"):
        LmdbDataset(db)
    with pytest.raises(DataError, match="newer"):
        read_metadata(db)


@pytest.mark.parametrize("edit, error, message", [
    (lambda t: t.delete(COMPLETE_KEY), IncompleteDatabaseError, "no completion marker"),
    (lambda t: t.delete(META_KEY), IncompleteDatabaseError, "interrupted"),
    (lambda t: t.put(META_KEY, b"{not json"), DataError, "'__meta__' is not valid JSON"),
    (lambda t: t.delete(record_key(299)), DataError, "record 299 is missing"),
    (lambda t: t.put(record_key(300), b"x"), DataError, "more records than the 300"),
    (lambda t: t.put(COMPLETE_KEY, b'{"num_records": 12}'), DataError, "completion marker says 12"),
])
def test_inconsistent_metadata(db, edit, error, message):
    _edit(db, edit)
    with pytest.raises(error, match=message) as err:
        LmdbDataset(db)
    assert str(db) in str(err.value)


def test_broken_split_and_record_values(db):
    _edit(db, lambda t: (t.put(b"__split__/train", b"garbage"), t.put(record_key(5), b"\x00" * 4)))
    ds = LmdbDataset(db)
    with pytest.raises(DataError, match="split 'train' is unreadable"):
        ds.split("train")
    with pytest.raises(DataError, match="record 5: record is 4 bytes long: truncated"):
        ds[5]
    assert np.isfinite(ds[6].energy.item())
