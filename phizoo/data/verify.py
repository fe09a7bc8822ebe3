"""``verify_database``: read every record of a phizoo database and check all of it.

Opening a database (:class:`~phizoo.data.LmdbDataset`) validates the header only, and each
record is verified when it is read. This reads everything once (``phizoo data info --verify``):

* every record: whole-record sha256, stored under its own key, required arrays, shapes, and
  the physical checks of conversion (atomic numbers, finite values, no atoms closer than
  :data:`phizoo.validate.MIN_DISTANCE`);
* the per-record index (``natoms``, ``energy``) against the records;
* every split: readable, sorted, unique, inside 0..n-1, of the size the metadata lists, and
  train disjoint from val and test (``train_<k>`` subsets must lie inside train).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import codec
from .errors import DataError
from .store import INDEX_KEY, SPLIT_PREFIX, record_key, validate_arrays
from .store_reader import _get, close_env, decode_record, open_env, read_header

MAX_REPORTED = 10


def verify_database(path: str | Path, progress: bool = False) -> dict[str, Any]:
    """Check the whole database at ``path``; returns ``{"records", "splits", "problems"}``.

    Raises ``DataError`` naming the first problem (and how many there are) when any is found.
    """
    path = Path(path)
    env = open_env(path)
    problems: list[str] = []
    try:
        meta = read_header(env, path)
        n = int(meta["num_records"])
        fields = tuple(meta.get("fields", ()))
        natoms = np.zeros(n, np.int64)
        energy = np.zeros(n, np.float64)
        with env.begin() as txn:
            for i in _bar(range(n), progress, path):
                try:
                    rec = decode_record(_get(txn, record_key(i), path), path, i, fields)
                    validate_arrays({k: v for k, v in rec.items() if k not in ("id", "meta")}, f"{path}: record {i}")
                    natoms[i], energy[i] = len(rec["z"]), float(rec["energy"][0])
                except DataError as err:
                    problems.append(str(err))
            index = _decode(txn, INDEX_KEY, path, problems)
            if index is not None:
                _check_index(index, natoms, energy, n, path, problems)
            splits = {}
            for name, size in meta.get("splits", {}).get("sizes", {}).items():
                arrays = _decode(txn, SPLIT_PREFIX + name.encode(), path, problems)
                if arrays is not None:
                    splits[name] = _check_split(name, arrays, size, n, path, problems)
        _check_disjoint(splits, path, problems)
    finally:
        close_env(env)
    if problems:
        raise DataError(f"{problems[0]} ({len(problems)} problem(s) in all; the first {MAX_REPORTED}: "
                        f"{' | '.join(problems[:MAX_REPORTED])})" if len(problems) > 1 else problems[0])
    return {"records": n, "splits": {k: len(v) for k, v in splits.items()}, "problems": []}


def _bar(it, progress: bool, path: Path):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=f"verify {path.name}", unit="record", dynamic_ncols=True)


def _decode(txn, key: bytes, path: Path, problems: list[str]) -> dict[str, np.ndarray] | None:
    raw = _get(txn, key, path)
    if raw is None:
        problems.append(f"{path}: key {key.decode()!r} is missing: corrupted")
        return None
    try:
        return codec.decode(raw, key=key)[0]
    except DataError as err:
        problems.append(f"{path}: key {key.decode()!r}: {err}")
        return None


def _check_index(index, natoms, energy, n, path, problems) -> None:
    got_n, got_e = index.get("natoms"), index.get("energy")
    if got_n is None or got_e is None or len(got_n) != n or len(got_e) != n:
        problems.append(f"{path}: the per-record index does not hold {n} natoms/energy entries: corrupted")
        return
    for name, want, got in (("natoms", natoms, got_n), ("energy", energy, got_e)):
        bad = np.flatnonzero(np.asarray(got) != want)
        if bad.size:
            problems.append(f"{path}: the index's {name} of record {int(bad[0])} is {got[bad[0]]}, the record says "
                            f"{want[bad[0]]} ({bad.size} mismatches): corrupted")


def _check_split(name, arrays, size, n, path, problems) -> np.ndarray:
    idx = np.asarray(arrays.get("indices", np.zeros(0, np.int64)), dtype=np.int64)
    where = f"{path}: split {name!r}"
    if len(idx) != size:
        problems.append(f"{where} holds {len(idx)} indices, the metadata says {size}: corrupted")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        problems.append(f"{where} holds indices outside 0..{n - 1}: corrupted")
    if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
        problems.append(f"{where} is not sorted and unique: corrupted")
    return idx


def _check_disjoint(splits: dict[str, np.ndarray], path: Path, problems: list[str]) -> None:
    train = splits.get("train")
    if train is None:
        return
    for other in ("val", "test"):
        if other in splits:
            both = np.intersect1d(train, splits[other])
            if both.size:
                problems.append(f"{path}: {both.size} structures are in both 'train' and {other!r} (e.g. record "
                                f"{int(both[0])}): the splits leak; convert the data again")
    for name, idx in splits.items():
        if name.startswith("train_") and not np.all(np.isin(idx, train)):
            problems.append(f"{path}: split {name!r} holds structures outside 'train': corrupted")
