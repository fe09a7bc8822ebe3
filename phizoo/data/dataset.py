"""``LmdbDataset``: a map-style torch ``Dataset`` over a phizoo LMDB store.

Opening validates the header (schema, version, completion marker, record count, no truncation)
and reads nothing else: open time does not depend on the number of records. The LMDB
environment is opened lazily, read-only and without locks, once per process, so the dataset
works with ``DataLoader(num_workers > 0)`` (forked or spawned workers each open their own).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import codec
from .errors import DataError
from .store import INDEX_KEY, SPLIT_PREFIX, record_key
from .store_reader import _get, close_env, decode_record, open_env, read_header


class LmdbDataset(torch.utils.data.Dataset):
    """Structures of a phizoo LMDB database as torch_geometric ``Data``.

    Each item has ``z`` (long [N]), ``pos`` ([N, 3] Å, ``dtype``), ``energy`` (float64 [1] eV),
    ``total_charge`` ([1] e), ``idx`` (long [1], the record index) and, when the database holds
    them, ``forces`` ([N, 3] eV/Å), ``charges`` ([N] e), ``dipole`` ([1] or [3] e·Å), ``spin``
    ([1] multiplicity), ``cell`` ([1, 3, 3] Å, float64) with ``pbc`` ([1, 3] bool) and ``stress``
    ([1, 3, 3] eV/Å³).

    Args:
        path: the database file.
        dtype: floating dtype of positions, forces, charges (energies stay float64).
        transform: optional callable applied to every ``Data``.
        return_ids: also set ``data.id`` (the source identifier, a string).
    """

    def __init__(self, path: str | Path, dtype: torch.dtype = torch.float32, transform=None,
                 return_ids: bool = False):
        self.path = Path(path)
        self.dtype = dtype
        self.transform = transform
        self.return_ids = return_ids
        env = open_env(self.path)
        try:
            self._meta = read_header(env, self.path)
        finally:
            close_env(env)
        self._n = int(self._meta["num_records"])
        self._fields = tuple(self._meta.get("fields", ()))
        self._env = None
        self._pid: int | None = None
        self._splits: dict[str, np.ndarray] = {}
        self._index: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ environment (per process)
    def _environment(self):
        pid = os.getpid()
        if self._env is None or self._pid != pid:
            self._env = None  # an environment inherited through fork is never used (nor closed)
            self._env = open_env(self.path)
            self._pid = pid
        return self._env

    def _raw(self, key: bytes) -> bytes | None:
        with self._environment().begin() as txn:
            return _get(txn, key, self.path)

    def close(self) -> None:
        """Release this process's LMDB environment (reopened on the next access)."""
        if self._env is not None and self._pid == os.getpid():
            close_env(self._env)
        self._env = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_env"], state["_pid"] = None, None
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """The dataset metadata stored in the database (units, source, splits, statistics...)."""
        return self._meta

    @property
    def units(self) -> dict[str, str]:
        return dict(self._meta.get("units", {}))

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    @property
    def element_references(self) -> dict[int, float] | None:
        """Per-element reference energies (eV) fitted on the training split, or None."""
        refs = self._meta.get("element_references")
        if not refs:
            return None
        return {int(z): float(e) for z, e in refs["energies"].items()}

    @property
    def split_names(self) -> list[str]:
        return list(self._meta.get("splits", {}).get("sizes", {}))

    def split_indices(self, name: str) -> np.ndarray:
        """Sorted record indices (int64) of the stored split ``name``."""
        if name not in self._splits:
            raw = self._raw(SPLIT_PREFIX + name.encode())
            if raw is None:
                raise KeyError(f"{self.path}: no split {name!r}; stored splits: {', '.join(self.split_names) or 'none'}")
            try:
                arrays, _ = codec.decode(raw, key=SPLIT_PREFIX + name.encode())
                idx = np.array(arrays["indices"], dtype=np.int64)
            except (DataError, KeyError) as err:
                raise DataError(f"{self.path}: split {name!r} is unreadable ({err}): corrupted") from None
            if idx.size and (idx.min() < 0 or idx.max() >= self._n):
                raise DataError(f"{self.path}: split {name!r} holds indices outside 0..{self._n - 1}: corrupted")
            self._splits[name] = idx
        return self._splits[name]

    def split(self, name: str) -> torch.utils.data.Subset:
        """The stored split ``name`` ("train", "val", "test", "train_<n>"...) as a ``Subset``."""
        return torch.utils.data.Subset(self, self.split_indices(name).tolist())

    def _index_arrays(self) -> dict[str, np.ndarray]:
        if self._index is None:
            raw = self._raw(INDEX_KEY)
            if raw is None:
                raise DataError(f"{self.path}: the per-record index {INDEX_KEY.decode()!r} is missing: corrupted")
            try:
                arrays, _ = codec.decode(raw, key=INDEX_KEY)
            except DataError as err:
                raise DataError(f"{self.path}: index: {err}") from None
            self._index = {k: np.array(v) for k, v in arrays.items()}
        return self._index

    @property
    def natoms(self) -> np.ndarray:
        """Number of atoms of every record (int32 [n]), without reading the records."""
        return self._index_arrays()["natoms"]

    @property
    def energies(self) -> np.ndarray:
        """Total energy of every record (float64 [n], eV), without reading the records."""
        return self._index_arrays()["energy"]

    # ------------------------------------------------------------------ records
    def __len__(self) -> int:
        return self._n

    def _check_index(self, idx) -> int:
        if isinstance(idx, torch.Tensor):
            idx = idx.item()
        if not isinstance(idx, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(idx).__name__}")
        i = int(idx)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"index {idx} out of range for {self._n} records")
        return i

    def get_record(self, idx) -> dict[str, Any]:
        """Record ``idx`` as stored: ``{"id", "meta", "z", "pos", "energy", ...}`` (numpy arrays)."""
        i = self._check_index(idx)
        rec = decode_record(self._raw(record_key(i)), self.path, i, self._fields)
        return {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in rec.items()}

    def __getitem__(self, idx):
        from torch_geometric.data import Data

        i = self._check_index(idx)
        rec = decode_record(self._raw(record_key(i)), self.path, i, self._fields)
        f = self.dtype
        data = Data(z=torch.tensor(rec["z"], dtype=torch.long),
                    pos=torch.tensor(rec["pos"], dtype=f),
                    energy=torch.tensor(rec["energy"], dtype=torch.float64).reshape(1),
                    total_charge=torch.tensor(rec["total_charge"], dtype=f).reshape(1),
                    idx=torch.tensor([i], dtype=torch.long))
        for name in ("forces", "charges", "dipole"):
            if name in rec:
                data[name] = torch.tensor(rec[name], dtype=f)
        if "spin" in rec:
            data.spin = torch.tensor(rec["spin"], dtype=f).reshape(1)
        if "cell" in rec:  # per structure: [1, 3, 3] / [1, 3], batched to [B, 3, 3] / [B, 3]
            data.cell = torch.tensor(rec["cell"], dtype=torch.float64).reshape(1, 3, 3)
            data.pbc = torch.tensor(rec["pbc"] > 0.5).reshape(1, 3)
        if "stress" in rec:
            data.stress = torch.tensor(rec["stress"], dtype=f).reshape(1, 3, 3)
        if self.return_ids:
            data.id = rec["id"]
        if self.transform is not None:
            data = self.transform(data)
        return data

    def __repr__(self) -> str:
        return (f"LmdbDataset({str(self.path)!r}, dataset={self._meta.get('dataset')!r}, "
                f"records={self._n}, splits={self.split_names})")
