"""Writing the phizoo LMDB store (schema: :mod:`phizoo.data.store`): :class:`StoreWriter`,
atomic (a hidden partial file renamed at the end) and resumable (progress entry, fingerprint)."""
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
from .errors import DataError
from .store import (COMPLETE_KEY, INDEX_KEY, META_KEY, PROGRESS_KEY, SCHEMA, SCHEMA_VERSION, SPLIT_PREFIX,
                    StoreWriteError, record_key, validate_arrays)
from .store_reader import decode_record


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
