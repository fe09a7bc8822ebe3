"""The phizoo LMDB store: one record per structure, plain arrays, no pickle.

File layout (schema ``phizoo-lmdb``, version 2)
================================================
A database is ONE file (LMDB with ``subdir=False``; no ``-lock`` file is needed to read it).
All keys live in LMDB's main database:

``b"0000000000"`` ... ``b"%010d" % (n - 1)``
    The records, one per structure, numbered 0..n-1 in source order. Each value is a record
    encoded by :mod:`phizoo.data.codec` (the safetensors layout: u64 header length, JSON header,
    packed little-endian array bytes; readable by any safetensors reader) with these arrays:

    ==============  =====  =========  ==========  =========================================
    name            dtype  shape      unit        notes
    ==============  =====  =========  ==========  =========================================
    ``z``           U8     [N]        --          atomic numbers, 1..118 (required)
    ``pos``         F64    [N, 3]     Å           positions (required)
    ``energy``      F64    [1]        eV          total energy, float64 (required)
    ``total_charge`` F64   [1]        e           net charge of the structure (required)
    ``forces``      F64    [N, 3]     eV/Å        optional (MD22)
    ``charges``     F64    [N]        e           optional partial charges (Hirshfeld, Mulliken)
    ``dipole``      F64    [1] / [3]  e·Å         optional (QM9: magnitude)
    ``spin``        F64    [1]        --          optional spin multiplicity 2S+1 (1 singlet)
    ``cell``        F64    [3, 3]     Å           optional lattice vectors (rows); with ``pbc``
    ``pbc``         F64    [3]        --          optional periodic directions (1.0 / 0.0)
    ``stress``      F64    [3, 3]     eV/Å³       optional, ASE sign ((1/V) ∂E/∂ε)
    ==============  =====  =========  ==========  =========================================

    and string metadata ``sha256`` (of the whole value: header, id, metadata and array bytes),
    ``key`` (the LMDB key the record was written under), ``id`` (the source's identifier: CSD
    refcode, QM9 name, MD22 ``molecule/frame``) and ``meta`` (a JSON object: source row/frame,
    SMILES, ...); digest and key are verified on every read (see :mod:`phizoo.data.codec`), so an
    edited byte anywhere in a record, or a record copied under another key, is an error. All
    records of one database carry the same set of arrays (listed in the metadata under ``fields``).

``b"__meta__"``
    UTF-8 JSON object, the dataset metadata: ``schema`` ("phizoo-lmdb"), ``schema_version``,
    ``dataset`` (md22/oe62/qm9), ``name``, ``num_records``, ``fields``, ``units``,
    ``source`` (files with their sha256 and size, the converter options), ``level_of_theory``,
    ``target``, ``elements``, ``element_references`` (least-squares per-element energies fitted
    on the training split only, or null with a reason), ``statistics``, ``splits`` (name ->
    size, the policy and the seed), ``created``, ``phizoo_version``.

``b"__split__/<name>"``
    The indices of a split (``train``, ``val``, ``test``, ``train_<n>``...): a codec record with
    one array ``indices`` (I64, sorted ascending).

``b"__index__"``
    A codec record with per-record arrays ``natoms`` (I32 [n]) and ``energy`` (F64 [n], eV), for
    size-aware samplers and statistics without reading every record.

``b"__complete__"``
    UTF-8 JSON ``{"num_records": n, "schema_version": 2, "completed": <ISO time>, "meta_sha256":
    <sha256 of the metadata value>}`` (the metadata is verified against it on open), written in
    the same transaction as the metadata, as the very last step of a conversion. A database
    without it is an interrupted conversion and is refused on open.

``b"!progress"``
    Only in the hidden ``.<name>.partial`` file of a conversion in progress: JSON with the
    conversion's fingerprint and the number of records already committed (used to resume).

Compatibility: readers refuse a ``schema_version`` newer than :data:`SCHEMA_VERSION`; new
optional arrays or metadata keys do not need a new version, changed meanings do. Version 1
(a CRC of the array bytes only: an edited header went unnoticed) is refused with the advice to
convert the data again (conversion is deterministic: same source, options and seed give the
same records and splits).
"""
from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import lmdb
import numpy as np

from . import codec
from .errors import DataError, DataFileNotFoundError

SCHEMA = "phizoo-lmdb"
SCHEMA_VERSION = 2

META_KEY = b"__meta__"
COMPLETE_KEY = b"__complete__"
PROGRESS_KEY = b"!progress"  # sorts before the record keys, so records can be appended
INDEX_KEY = b"__index__"
SPLIT_PREFIX = b"__split__/"

UNITS = {"energy": "eV", "length": "angstrom", "forces": "eV/angstrom", "charge": "e",
         "dipole": "e*angstrom", "stress": "eV/angstrom^3"}

# name -> (dtype, trailing shape; None = per-atom leading dimension N)
FIELDS: dict[str, tuple[np.dtype, tuple]] = {
    "z": (np.dtype(np.uint8), ("N",)),
    "pos": (np.dtype(np.float64), ("N", 3)),
    "energy": (np.dtype(np.float64), (1,)),
    "total_charge": (np.dtype(np.float64), (1,)),
    "forces": (np.dtype(np.float64), ("N", 3)),
    "charges": (np.dtype(np.float64), ("N",)),
    "dipole": (np.dtype(np.float64), None),  # [1] (magnitude) or [3] (vector)
    "spin": (np.dtype(np.float64), (1,)),
    "cell": (np.dtype(np.float64), (3, 3)),
    "pbc": (np.dtype(np.float64), (3,)),
    "stress": (np.dtype(np.float64), (3, 3)),
}
REQUIRED = ("z", "pos", "energy", "total_charge")
MAX_Z = 118


def record_key(i: int) -> bytes:
    return b"%010d" % i


class DatabaseNotFoundError(DataFileNotFoundError):
    """The database file does not exist."""


class SchemaVersionError(DataError):
    """The database was written by a newer phizoo (a newer schema version)."""


class IncompleteDatabaseError(DataError):
    """The database has no completion marker: its conversion was interrupted."""


class StoreWriteError(DataError):
    """Writing the database failed (disk full, I/O error); the partial file is kept for resuming."""


# ------------------------------------------------------------------------------- reading


# One environment per (process, file): py-lmdb refuses to open the same file twice in a process,
# so every reader in a process shares it (reference counted). Keyed by the process id, so that a
# forked DataLoader worker never touches an environment inherited from its parent.
_SHARED: dict[tuple[int, int, int], list] = {}


def _drop_inherited() -> None:
    """In a forked child: close the environments inherited from the parent (py-lmdb would
    otherwise refuse to open those files again, and LMDB handles must not cross a fork)."""
    pid = os.getpid()
    for key in [k for k in _SHARED if k[0] != pid]:
        env = _SHARED.pop(key)[0]
        try:
            env.close()
        except lmdb.Error:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited)


def _file_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return os.getpid(), st.st_dev, st.st_ino


def open_env(path: str | Path) -> lmdb.Environment:
    """Open ``path`` read-only without locking (safe for many processes), checking that the
    file is an LMDB file and is not truncated; ``DataError`` otherwise. Release with
    :func:`close_env`. Opening the same file again in the same process returns the same
    environment."""
    path = Path(path)
    if not path.exists():
        raise DatabaseNotFoundError(f"{path}: no such database")
    subdir = path.is_dir()
    if subdir and not (path / "data.mdb").exists():
        raise DataError(f"{path}: a directory without data.mdb is not a phizoo database")
    data_file = path / "data.mdb" if subdir else path
    key = _file_key(data_file)
    if any(k[0] != key[0] for k in _SHARED):
        _drop_inherited()
    shared = _SHARED.get(key)
    if shared is not None:
        shared[1] += 1
        return shared[0]
    size = data_file.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a phizoo database")
    try:
        env = lmdb.open(str(path), subdir=subdir, readonly=True, lock=False, readahead=False,
                        meminit=False, max_readers=1)
    except lmdb.Error as err:
        raise DataError(f"{path}: not a readable LMDB database ({type(err).__name__}: {err}); "
                        f"the file is truncated, corrupted or of another format") from None
    try:
        need = (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])
    except lmdb.Error as err:
        env.close()
        raise DataError(f"{path}: LMDB header unreadable ({err}): corrupted") from None
    if size < need:
        env.close()
        raise DataError(f"{path}: truncated: the file has {size} bytes but its LMDB header refers to "
                        f"{need} bytes (copy interrupted or disk full?)")
    _SHARED[key] = [env, 1]
    return env


def close_env(env: lmdb.Environment | None) -> None:
    """Release an environment from :func:`open_env` (closed when its last user releases it)."""
    if env is None:
        return
    pid = os.getpid()
    for key, shared in list(_SHARED.items()):
        if shared[0] is env and key[0] == pid:
            shared[1] -= 1
            if shared[1] <= 0:
                del _SHARED[key]
                env.close()
            return


def _get(txn, key: bytes, path: Path) -> bytes | None:
    try:
        return txn.get(key)
    except lmdb.Error as err:
        raise DataError(f"{path}: reading key {key.decode(errors='replace')!r} failed "
                        f"({type(err).__name__}: {err}): corrupted") from None


def _json(raw: bytes, path: Path, key: bytes) -> dict:
    try:
        obj = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: key {key.decode()!r} is not valid JSON ({err}): corrupted") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: key {key.decode()!r} is not a JSON object: corrupted")
    return obj


def read_header(env: lmdb.Environment, path: str | Path) -> dict[str, Any]:
    """Validated metadata of an open database: schema, version, completion marker, record count.

    Reads three small keys and probes two record keys; never reads the records themselves."""
    path = Path(path)
    with env.begin() as txn:
        raw_meta = _get(txn, META_KEY, path)
        raw_done = _get(txn, COMPLETE_KEY, path)
        if raw_meta is None:
            if _get(txn, PROGRESS_KEY, path) is not None or _get(txn, record_key(0), path) is not None:
                raise IncompleteDatabaseError(
                    f"{path}: incomplete database: its conversion was interrupted before it finished "
                    f"(no metadata, no completion marker); run the conversion again")
            raise DataError(f"{path}: not a phizoo database (no {META_KEY.decode()!r} key)")
        meta = _json(raw_meta, path, META_KEY)
        if meta.get("schema") != SCHEMA:
            raise DataError(f"{path}: not a phizoo database (schema {meta.get('schema')!r}, expected {SCHEMA!r})")
        version = meta.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise DataError(f"{path}: invalid schema_version {version!r}: corrupted")
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: schema version {version} (written by an older phizoo) does not checksum whole "
                f"records; convert the data again with this phizoo (phizoo data convert ... --overwrite)")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: schema version {version} is newer than this phizoo can read (up to "
                f"{SCHEMA_VERSION}); upgrade phizoo or convert the data again with this version")
        if raw_done is None:
            raise IncompleteDatabaseError(
                f"{path}: incomplete database: no completion marker {COMPLETE_KEY.decode()!r} "
                f"(the conversion was interrupted); run the conversion again")
        done = _json(raw_done, path, COMPLETE_KEY)
        n = meta.get("num_records")
        if not isinstance(n, int) or n < 0 or done.get("num_records") != n:
            raise DataError(f"{path}: metadata says {n!r} records but the completion marker says "
                            f"{done.get('num_records')!r}: corrupted")
        if done.get("meta_sha256") != hashlib.sha256(bytes(raw_meta)).hexdigest():
            raise DataError(f"{path}: the metadata ({META_KEY.decode()!r}: units, references, splits...) does not "
                            f"match the sha256 in the completion marker: edited or corrupted")
        if n > 0 and _get(txn, record_key(n - 1), path) is None:
            raise DataError(f"{path}: record {n - 1} is missing (metadata says {n} records): corrupted")
        if _get(txn, record_key(n), path) is not None:
            raise DataError(f"{path}: holds more records than the {n} its metadata lists: corrupted")
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The validated metadata of the database at ``path`` (opens and closes it)."""
    env = open_env(path)
    try:
        return read_header(env, path)
    finally:
        close_env(env)


def decode_record(raw: bytes | None, path: Path, i: int, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """``{"id", "meta", <arrays>}`` of record ``i``; ``DataError`` naming the record when broken."""
    if raw is None:
        raise DataError(f"{path}: record {i} is missing: corrupted")
    try:
        arrays, smeta = codec.decode(raw, key=record_key(i))
    except DataError as err:
        raise DataError(f"{path}: record {i}: {err}") from None
    for name in fields or REQUIRED:
        if name not in arrays:
            raise DataError(f"{path}: record {i}: array {name!r} is missing: corrupted")
    n = arrays["z"].shape[0] if "z" in arrays else None
    for name, arr in arrays.items():
        spec = FIELDS.get(name)
        if spec is None or spec[1] is None:
            continue
        shape = tuple(n if s == "N" else s for s in spec[1])
        if arr.shape != shape:
            raise DataError(f"{path}: record {i}: array {name!r} has shape {list(arr.shape)}, expected "
                            f"{list(shape)}: corrupted")
    try:
        meta = json.loads(smeta.get("meta", "{}"))
    except json.JSONDecodeError:
        raise DataError(f"{path}: record {i}: metadata is not valid JSON: corrupted") from None
    return {"id": smeta.get("id", ""), "meta": meta, **arrays}


# ------------------------------------------------------------------------------- writing


def validate_arrays(arrays: Mapping[str, Any], where: str, notes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Cast a structure's arrays to the schema dtypes and check them.

    ``where`` names the source file and record for the error message. Checks: required arrays
    present, no unknown names, integral atomic numbers in 1..118, shapes consistent with the
    number of atoms (at least one), finite values, no two atoms closer than
    :data:`phizoo.validate.MIN_DISTANCE` (coincident atoms). Contacts shorter than
    :data:`phizoo.validate.SHORT_BOND` are kept and described in ``notes`` (when given)."""
    missing = [k for k in REQUIRED if k not in arrays or arrays[k] is None]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    z = np.asarray(arrays["z"])
    if z.ndim != 1 or z.shape[0] == 0:
        raise DataError(f"{where}: atomic numbers 'z' must be a non-empty 1-D array, got shape {list(z.shape)}")
    if z.dtype.kind == "f":
        if not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
            raise DataError(f"{where}: atomic numbers 'z' are not integers: {z[:10].tolist()}")
    elif z.dtype.kind not in "iu":
        raise DataError(f"{where}: atomic numbers 'z' have dtype {z.dtype}, expected integers")
    bad = (z < 1) | (z > MAX_Z)
    if np.any(bad):
        raise DataError(f"{where}: unknown element(s) with atomic number {sorted(set(z[bad].tolist()))} "
                        f"(valid: 1..{MAX_Z})")
    n = z.shape[0]
    out["z"] = z.astype(np.uint8)
    for name, value in arrays.items():
        if name == "z" or value is None:
            continue
        if name not in FIELDS:
            raise DataError(f"{where}: unknown array {name!r} (schema fields: {', '.join(FIELDS)})")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: {name!r} is not numeric ({err})") from None
        spec = FIELDS[name][1]
        if name in ("energy", "total_charge", "spin"):
            if arr.size != 1:
                raise DataError(f"{where}: {name!r} must be one number, got shape {list(arr.shape)}")
            arr = arr.reshape(1)
        elif name == "dipole":
            if arr.size not in (1, 3):
                raise DataError(f"{where}: 'dipole' must have 1 or 3 components, got shape {list(arr.shape)}")
            arr = arr.reshape(-1)
        else:
            shape = tuple(n if s == "N" else s for s in spec)
            if arr.shape != shape:
                raise DataError(f"{where}: {name!r} has shape {list(arr.shape)} but {n} atoms need {list(shape)}")
        finite = np.isfinite(arr)
        if not finite.all():
            pos = np.argwhere(~finite)[0].tolist()
            raise DataError(f"{where}: {name!r} holds a non-finite value ({arr[tuple(pos)]}) at index {pos}")
        out[name] = arr
    if "pos" in out:
        from ..validate import check_distances

        note = check_distances(out["pos"], where, DataError)
        if note and notes is not None:
            notes.append(note)
    return out


class StoreWriter:
    """Writes a database atomically and resumably.

    Records are committed in batches to ``.<dest name>.partial`` in the destination's directory
    together with a progress entry. ``finalize`` writes the metadata, splits, index and the
    completion marker in one transaction and renames the file onto ``dest``; until then nothing
    at ``dest`` changes. An exclusive ``flock`` on ``.<dest name>.partial.lock`` keeps two
    conversions from writing the same file. Use as a context manager: an exception removes the
    partial file; ``KeyboardInterrupt``/``SystemExit`` keep it so that the same conversion
    (same fingerprint) resumes where it stopped. So do ``OSError`` and ``lmdb.Error`` (a full
    disk, a lost mount): the records committed so far stay in the partial file.
    """

    def __init__(self, dest: str | Path, fingerprint: str, *, overwrite: bool = False, resume: bool = True,
                 commit_every: int = 1000, commit_bytes: int = 64 << 20):
        self.dest = Path(dest)
        if self.dest.is_dir():
            raise DataError(f"{self.dest}: is a directory; give a file name such as data.lmdb")
        if self.dest.exists() and not overwrite:
            raise DataError(f"{self.dest}: already exists; pass --overwrite (overwrite=True) to replace it")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.dest.with_name(f".{self.dest.name}.partial")
        self.fingerprint = fingerprint
        self.commit_every, self.commit_bytes = commit_every, commit_bytes
        self._lock_path = Path(f"{self.partial}.lock")
        self._lock = open(self._lock_path, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise DataError(f"{self.dest}: another conversion is writing it right now ({self.partial})") from None
        self.start, self.fields = 0, None
        self.notes: list[str] = []  # short contacts (see validate_arrays)
        if self.partial.exists():
            if resume:
                self.start, self.fields = self._resumable()
            if self.start == 0:
                self._remove_partial()
        self.count = self.start
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_bytes = 0
        try:
            self._env = lmdb.open(str(self.partial), subdir=False, map_size=256 << 20, lock=False,
                                  readahead=False, meminit=False, max_dbs=0)
        except lmdb.Error as err:
            self._release()
            raise DataError(f"{self.partial}: cannot create the database ({err})") from None

    # -- resume
    def _resumable(self) -> tuple[int, tuple[str, ...] | None]:
        """(records committed, their arrays) of a partial file written with the same
        fingerprint; (0, None) when it cannot be resumed."""
        try:
            env = lmdb.open(str(self.partial), subdir=False, readonly=True, lock=False)
        except lmdb.Error:
            return 0, None
        try:
            with env.begin() as txn:
                raw = txn.get(PROGRESS_KEY)
                if raw is None:
                    return 0, None
                prog = json.loads(bytes(raw))
                n = int(prog.get("committed", 0))
                if prog.get("fingerprint") != self.fingerprint or n <= 0 or txn.get(record_key(n - 1)) is None:
                    return 0, None
                first = decode_record(txn.get(record_key(0)), self.partial, 0)
                return n, tuple(sorted(k for k in first if k not in ("id", "meta")))
        except (lmdb.Error, ValueError):  # DataError is a ValueError
            return 0, None
        finally:
            env.close()

    def existing(self, i: int) -> dict[str, Any]:
        """Record ``i`` < ``start`` already in the partial file (for statistics on resume)."""
        with self._env.begin() as txn:
            return decode_record(txn.get(record_key(i)), self.partial, i)

    # -- writing
    def add(self, arrays: Mapping[str, np.ndarray], id: str = "", meta: Mapping[str, Any] | None = None,
            where: str = "") -> dict[str, np.ndarray]:
        """Validate, encode and queue one record; returns the validated arrays."""
        where = where or f"record {self.count}"
        arrays = validate_arrays(arrays, where, self.notes)
        fields = tuple(sorted(arrays))
        if self.fields is None:
            self.fields = fields
        elif fields != self.fields:
            raise DataError(f"{where}: has arrays {list(fields)} but earlier records have {list(self.fields)}")
        key = record_key(self.count)
        value = codec.encode(arrays, {"id": str(id), "meta": json.dumps(dict(meta or {}), sort_keys=True)}, key=key)
        self._batch.append((key, value))
        self._batch_bytes += len(value)
        self.count += 1
        if len(self._batch) >= self.commit_every or self._batch_bytes >= self.commit_bytes:
            self.flush()
        return arrays

    def _commit(self, items: list[tuple[bytes, bytes]], delete: Iterable[bytes] = (), append: bool = False) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in items:
                        # records arrive in key order: appending fills pages instead of splitting them
                        txn.put(k, v, append=append and k[:1].isdigit())
                    for k in delete:
                        txn.delete(k)
                return
            except lmdb.MapFullError:
                self._env.set_mapsize(int(self._env.info()["map_size"]) * 2)
            except (lmdb.Error, OSError) as err:
                raise StoreWriteError(
                    f"{self.partial}: writing failed ({type(err).__name__}: {err}); the records converted so far "
                    f"are kept there: free space (or fix the problem) and run the same command again to "
                    f"resume") from None

    def flush(self) -> None:
        if not self._batch:
            return
        progress = json.dumps({"fingerprint": self.fingerprint, "committed": self.count}).encode()
        self._commit([(PROGRESS_KEY, progress)] + self._batch, append=True)
        self._batch, self._batch_bytes = [], 0

    def finalize(self, metadata: Mapping[str, Any], splits: Mapping[str, np.ndarray],
                 index: Mapping[str, np.ndarray]) -> Path:
        """Write metadata, splits, index and the completion marker; move the file onto ``dest``."""
        self.flush()
        meta = dict(metadata)
        meta.update(schema=SCHEMA, schema_version=SCHEMA_VERSION, num_records=self.count,
                    fields=list(self.fields or ()))
        done = {"num_records": self.count, "schema_version": SCHEMA_VERSION,
                "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        raw_meta = json.dumps(meta, sort_keys=True, allow_nan=False).encode()
        done["meta_sha256"] = hashlib.sha256(raw_meta).hexdigest()
        items = [(META_KEY, raw_meta),
                 (INDEX_KEY, codec.encode(dict(index), key=INDEX_KEY))]
        for name, idx in splits.items():
            key = SPLIT_PREFIX + name.encode()
            items.append((key, codec.encode({"indices": np.asarray(idx, np.int64)}, key=key)))
        items.append((COMPLETE_KEY, json.dumps(done).encode()))
        self._commit(items, delete=[PROGRESS_KEY])
        self._env.sync(True)
        self._env.close()
        self._env = None
        os.replace(self.partial, self.dest)
        _fsync_dir(self.dest.parent)
        self._release()
        return self.dest

    # -- cleanup
    def _remove_partial(self) -> None:
        for p in (self.partial, Path(f"{self.partial}-lock")):
            if p.exists():
                p.unlink()

    def _release(self) -> None:
        if self._lock is not None:
            try:
                self._lock_path.unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def abort(self, keep: bool = False) -> None:
        """Stop writing; keep the partial file (committed records, resumable) or remove it."""
        if self._env is not None:
            if keep:
                try:
                    self.flush()
                except (lmdb.Error, StoreWriteError):  # still failing (the disk is full): keep what is committed
                    pass
            self._env.close()
            self._env = None
        if not keep:
            self._remove_partial()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._lock is not None:
            self.abort(keep=issubclass(exc_type, (KeyboardInterrupt, SystemExit, OSError, lmdb.Error,
                                                  StoreWriteError)))
        return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
