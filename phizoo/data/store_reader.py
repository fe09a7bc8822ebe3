"""Reading the phizoo LMDB store (schema: :mod:`phizoo.data.store`): a shared, lock-free
read-only environment per (process, file), the validated header (schema, version, completion
marker, metadata digest) and record decoding with digest, key and shape checks."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import lmdb

from . import codec
from .errors import DataError
from .store import (COMPLETE_KEY, FIELDS, META_KEY, PROGRESS_KEY, REQUIRED, SCHEMA, SCHEMA_VERSION,
                    DatabaseNotFoundError, IncompleteDatabaseError, SchemaVersionError, record_key)


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
