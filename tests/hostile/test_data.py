"""Hostile data: edited databases, mislabelled units, unphysical structures, leaking splits, a full disk."""
from __future__ import annotations

import errno
import json

import lmdb
import numpy as np
import pytest

from phizoo.data import DataError, LmdbDataset, convert_md22, convert_oe62, convert_qm9
from phizoo.data.md22 import KCAL_PER_MOL
from phizoo.data.store import COMPLETE_KEY, META_KEY, SPLIT_PREFIX, record_key
from phizoo.data.store_writer import StoreWriter
from phizoo.validate import PlausibilityWarning
from tests.data import native
from tests.data.conftest import oe62_file, qm9_file  # noqa: F401  (fixtures)
from tests.hostile.conftest import assert_clean_error, cli, copy_db

BOHR = 0.52917721


def _edit(path, fn):
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        fn(txn)
    env.close()


def _rewrite(key: bytes, change):
    def fn(txn):
        txn.put(key, change(bytes(txn.get(key))))
    return fn


def _swap_offsets(raw: bytes) -> bytes:
    """Exchange the data offsets of 'pos' and 'forces' (same shape and dtype) in the header."""
    hlen = int.from_bytes(raw[:8], "little")
    text = raw[8:8 + hlen].decode()
    head = json.loads(text)
    a, b = head["pos"]["data_offsets"], head["forces"]["data_offsets"]
    text = text.replace(json.dumps(a, separators=(",", ":")), "@").replace(json.dumps(b, separators=(",", ":")),
                                                                          json.dumps(a, separators=(",", ":")))
    text = text.replace("@", json.dumps(b, separators=(",", ":")))
    return raw[:8] + text.encode() + raw[8 + hlen:]


def _copy_record(src: int, dst: int):
    def fn(txn):
        txn.put(record_key(dst), bytes(txn.get(record_key(src))))
    return fn


# each case: an edit of record 7 (or of the database) and what reading record 7 (or opening) must say
RECORD_EDITS = {
    "dtype-in-header": (_rewrite(record_key(7), lambda r: r.replace(b'"pos":{"dtype":"F64"', b'"pos":{"dtype":"I64"')),
                        "sha256 check"),
    "swapped-offsets": (_rewrite(record_key(7), _swap_offsets), "sha256 check"),
    "renamed-digest-key": (_rewrite(record_key(7), lambda r: r.replace(b'"sha256"', b'"sha257"', 1)),
                           "no whole-record sha256"),
    "edited-id": (_rewrite(record_key(7), lambda r: r.replace(b'"AT-AT/7"', b'"AT-AT/8"')), "sha256 check"),
    "flipped-data-byte": (_rewrite(record_key(7), lambda r: r[:-9] + bytes([r[-9] ^ 1]) + r[-8:]), "sha256 check"),
    "record-copied-over-another": (_copy_record(3, 7), "written under key '0000000003', not '0000000007'"),
}


@pytest.mark.parametrize("case", list(RECORD_EDITS))
def test_an_edited_record_is_refused_on_read_and_by_verify(tmp_path, capsys, md22_db, case):
    db = copy_db(md22_db, tmp_path / "d.lmdb")
    edit, message = RECORD_EDITS[case]
    _edit(db, edit)
    ds = LmdbDataset(db)
    ds[6], ds[8]  # the others still read
    with pytest.raises(DataError, match=f"d.lmdb: record 7: .*{message}"):
        ds[7]
    code, _, err = cli(capsys, "data", "info", db, "--verify")
    assert_clean_error(code, err, "record 7", message.split(".*")[0])


@pytest.mark.parametrize("edit, message", [
    (lambda txn: txn.put(SPLIT_PREFIX + b"test", bytes(txn.get(SPLIT_PREFIX + b"train"))),
     "written under key '__split__/train'"),
    (_rewrite(META_KEY, lambda r: r.replace(b'"energy": "eV"', b'"energy": "meV"')), "does not match the sha256"),
    (_rewrite(META_KEY, lambda r: r.replace(b'"schema_version": 2', b'"schema_version": 1')),
     "schema version 1 (written by an older phizoo) does not checksum whole records; convert the data again"),
], ids=["split-copied", "metadata-edited", "old-schema"])
def test_edited_splits_metadata_and_old_databases(tmp_path, capsys, md22_db, edit, message):
    db = copy_db(md22_db, tmp_path / "d.lmdb")
    _edit(db, edit)
    code, _, err = cli(capsys, "data", "info", db, "--verify")
    assert_clean_error(code, err, "d.lmdb", message)


def test_verify_passes_a_sound_database(capsys, md22_db):
    code, out, _ = cli(capsys, "data", "info", md22_db, "--verify")
    assert code == 0 and "verified    all 40 records, the index and 3 splits: OK" in out


# ------------------------------------------------------------------ unphysical structures

@pytest.mark.parametrize("gap, refused", [(0.0, True), (0.05, True), (0.3, False)])
def test_coincident_atoms_are_refused_at_conversion(tmp_path, capsys, gap, refused):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=12)
    with np.load(src) as d:
        arrays = dict(d)
    arrays["R"][5, 4] = arrays["R"][5, 1] + [gap, 0, 0]
    np.savez(src, **arrays)
    code, _, err = cli(capsys, "data", "convert", "md22", src, "-o", tmp_path / "x.lmdb", "--train-size", "4", "-q")
    if refused:
        assert_clean_error(code, err, "md22_AT-AT.npz: frame 5: atoms 1 and 4", "closer than the minimum 0.1 Å")
        assert not (tmp_path / "x.lmdb").exists()
    else:
        assert code == 0 and "atoms 1 and 4 are only 0.3 Å apart" in err  # converted, with a warning


# ------------------------------------------------------------------ declared units

def _md22(tmp_path, **keys):
    return native.md22_npz(tmp_path / "md22_AT-AT.npz", n=20, **{k: np.array(v) for k, v in keys.items()})


@pytest.mark.parametrize("e_unit, r_unit, e_factor, r_factor", [
    ("kcal/mol", "Ang", KCAL_PER_MOL, 1.0),               # what `phizoo data xtb-md` writes
    ("eV", "Ang", 1.0, 1.0), ("Hartree", "Ang", 27.211386, 1.0), ("kJ/mol", "Angstrom", 0.01036427, 1.0),
    ("kcal/mol", "bohr", KCAL_PER_MOL, BOHR), ("meV", "Ang", 1e-3, 1.0),
])
def test_declared_units_are_honoured(tmp_path, e_unit, r_unit, e_factor, r_factor):
    src = _md22(tmp_path, e_unit=e_unit, r_unit=r_unit)
    with np.load(src) as d:
        R, E, F = d["R"] / r_factor, d["E"], d["F"]  # the file holds the same physics in its declared units
    arrays = dict(np.load(src))
    arrays.update(R=R, E=E / e_factor * KCAL_PER_MOL, F=F / e_factor * KCAL_PER_MOL * r_factor)
    np.savez(src, **arrays)
    with _no_plausibility_warning():
        ds = LmdbDataset(convert_md22(src, tmp_path / "x.lmdb", train_size=5))
    rec = ds.get_record(3)
    np.testing.assert_allclose(rec["energy"][0], E.reshape(-1)[3] * KCAL_PER_MOL, rtol=1e-5)
    np.testing.assert_allclose(rec["pos"], np.load(native.md22_npz(tmp_path / "ref.npz", n=20))["R"][3], rtol=1e-5)
    np.testing.assert_allclose(rec["forces"], F[3] * KCAL_PER_MOL, rtol=1e-5)
    assert ds.metadata["source_units_declared"] == {"r_unit": True, "e_unit": True}
    assert ds.metadata["conversion"]["energy"] == pytest.approx(e_factor, rel=1e-6)


class _no_plausibility_warning:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", PlausibilityWarning)

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)


@pytest.mark.parametrize("keys, message", [
    ({"e_unit": "kcal/mol", "_scale_e": 1 / KCAL_PER_MOL}, "energy"),   # eV values labelled kcal/mol
    ({"_scale_r": 1 / BOHR}, "covalent bond lengths"),                   # Bohr values, no r_unit (Å assumed)
    ({"r_unit": "Ang", "e_unit": "Hartree"}, "check the declared energy unit"),  # kcal/mol values labelled Hartree
])
def test_mislabelled_units_give_a_loud_warning(tmp_path, capsys, keys, message):
    src = _md22(tmp_path, **{k: v for k, v in keys.items() if not k.startswith("_")})
    arrays = dict(np.load(src))
    if "_scale_e" in keys:  # the numbers are eV (x 1/23) but the file says kcal/mol
        arrays["E"] = arrays["E"] * KCAL_PER_MOL
        arrays["F"] = arrays["F"] * KCAL_PER_MOL
    if "_scale_r" in keys:
        arrays["R"] = arrays["R"] * keys["_scale_r"]
    np.savez(src, **arrays)
    code, out, err = cli(capsys, "data", "convert", "md22", src, "-o", tmp_path / "x.lmdb", "--train-size", "5", "-q")
    assert code == 0
    warning = [ln for ln in err.splitlines() if ln.startswith("phizoo: warning:")]
    assert len(warning) == 1 and message in warning[0] and "md22_AT-AT.npz" in warning[0], err
    assert "WARNING" in out  # also in the database's description (phizoo data info)
    assert LmdbDataset(tmp_path / "x.lmdb").metadata["plausibility_warnings"]


def test_unknown_unit_is_an_error(tmp_path, capsys):
    src = _md22(tmp_path, e_unit="kcal/mole")
    code, _, err = cli(capsys, "data", "convert", "md22", src, "-o", tmp_path / "x.lmdb", "--train-size", "5")
    assert_clean_error(code, err, "md22_AT-AT.npz: key 'e_unit' is 'kcal/mole'", "known:")


# ------------------------------------------------------------------ split sizes

@pytest.mark.parametrize("dataset", ["oe62", "qm9"])
@pytest.mark.parametrize("option, value, message", [
    ("--val-size", "-5", "--val-size must be a non-negative integer"),
    ("--test-size", "-10", "--test-size must be a non-negative integer"),
    ("--test-size", "1000", "need"),
])
def test_split_sizes_are_validated(tmp_path, capsys, oe62_file, qm9_file, dataset, option, value, message):
    src = oe62_file if dataset == "oe62" else qm9_file
    code, _, err = cli(capsys, "data", "convert", dataset, src, "-o", tmp_path / "x.lmdb", "--train-size", "20",
                       option, value, "-q")
    assert_clean_error(code, err, message)
    assert not list(tmp_path.glob("*.lmdb")) and not list(tmp_path.glob(".*partial"))


def test_python_api_split_sizes(tmp_path, oe62_file, qm9_file):
    with pytest.raises(DataError, match="--val-size must be a non-negative integer"):
        convert_oe62(oe62_file, tmp_path / "a.lmdb", train_size=10, val_size=-3)
    with pytest.raises(DataError, match="--train-size must be at least 1"):
        convert_qm9(qm9_file, tmp_path / "b.lmdb", train_size=0)
    with pytest.raises(DataError, match="training budget"):
        convert_md22(native.md22_npz(tmp_path / "md22_AT-AT.npz", n=10), tmp_path / "c.lmdb", train_size=-2)


# ------------------------------------------------------------------ a full disk loses no work

class _FullDisk:
    """An LMDB environment whose write transactions fail to commit with ENOSPC (a full disk)."""

    def __init__(self, env):
        self._env = env

    def begin(self, write=False):
        return _FailingTxn(self._env.begin(write=write))

    def __getattr__(self, name):
        return getattr(self._env, name)


class _FailingTxn:
    def __init__(self, txn):
        self._txn = txn

    def __enter__(self):
        return self._txn.__enter__()

    def __exit__(self, *exc):
        self._txn.abort()
        raise lmdb.DiskError(f"mdb_txn_commit: {errno.errorcode[errno.ENOSPC]}: No space left on device")


def test_a_full_disk_keeps_the_partial_file_and_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=30)
    ref = convert_md22(src, tmp_path / "ref.lmdb", train_size=10)
    real_commit, real_init = StoreWriter._commit, StoreWriter.__init__
    calls = {"n": 0}

    def commit(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:  # from the third batch of 10 records on, the disk is full
            env, self._env = self._env, _FullDisk(self._env)
            try:
                return real_commit(self, *args, **kwargs)
            finally:
                self._env = env
        return real_commit(self, *args, **kwargs)

    def init(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "commit_every": 10})

    monkeypatch.setattr(StoreWriter, "_commit", commit)
    monkeypatch.setattr(StoreWriter, "__init__", init)
    dest = tmp_path / "out.lmdb"
    code, _, err = cli(capsys, "data", "convert", "md22", src, "-o", dest, "--train-size", "10", "-q")
    assert_clean_error(code, err, ".out.lmdb.partial: writing failed", "No space left on device", "resume")
    partial = tmp_path / ".out.lmdb.partial"
    assert partial.exists() and not dest.exists()
    monkeypatch.setattr(StoreWriter, "_commit", real_commit)
    started = []
    monkeypatch.setattr(StoreWriter, "__init__", lambda self, *a, **k: (real_init(self, *a, **k),
                                                                          started.append(self.start))[0])
    code, _, _ = cli(capsys, "data", "convert", "md22", src, "-o", dest, "--train-size", "10", "-q")
    assert code == 0 and started == [20]  # resumed after the 20 records committed before the disk filled
    a, b = LmdbDataset(ref), LmdbDataset(dest)
    for i in range(30):
        assert a.get_record(i)["pos"].tobytes() == b.get_record(i)["pos"].tobytes()
    assert a.split_indices("test").tolist() == b.split_indices("test").tolist()


def test_output_below_a_file_and_an_empty_structure(tmp_path, capsys):
    src = native.md22_npz(tmp_path / "md22_AT-AT.npz", n=10)
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "data", "convert", "md22", src, "-o", tmp_path / "file" / "x.lmdb", "--train-size", "4")
    assert_clean_error(code, err, "file")
    empty = native.md22_npz(tmp_path / "md22_DHA.npz", n=10, z=np.zeros(0, np.uint8), R=np.zeros((10, 0, 3)),
                            F=np.zeros((10, 0, 3)))
    code, _, err = cli(capsys, "data", "convert", "md22", empty, "-o", tmp_path / "e.lmdb", "--train-size", "4")
    assert_clean_error(code, err, "md22_DHA.npz: key 'z' must have shape [N] with N > 0")
