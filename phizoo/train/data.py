"""Datasets for training: any map-style torch ``Dataset`` of PyG ``Data`` plus split indices.

An item must carry ``z`` long [N], ``pos`` [N, 3] Å and ``energy`` [1] eV (float64 total
energy); optionally ``forces`` [N, 3] eV/Å, ``charges`` [N] and ``total_charge`` [1].
An in-memory ``list`` of ``Data`` works (tests); the LMDB store of ``phizoo.data`` is opened
through :func:`open_dataset`, and its stored splits are read with :func:`split_indices`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch_geometric.data import Batch


def collate(items: list) -> Batch:
    return Batch.from_data_list(items)


class _Indexed(torch.utils.data.Dataset):
    """``dataset[indices[i]]`` (torch's ``Subset`` without the typing fuss about lists)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def loader(dataset, indices: Sequence[int], batches: list[list[int]], num_workers: int = 0):
    """A DataLoader over fixed ``batches`` (positions into ``indices``): no hidden randomness."""
    return torch.utils.data.DataLoader(_Indexed(dataset, indices), batch_sampler=batches, collate_fn=collate,
                                       num_workers=num_workers)


def chunk(seq: Sequence[int], size: int) -> list[list[int]]:
    seq = list(seq)
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def indices_digest(indices: Sequence[int]) -> str:
    """sha256 of the split (recorded in checkpoint cards)."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()


# ------------------------------------------------------------------ the LMDB store (phizoo.data)

def open_dataset(path: str | Path):
    """Open an LMDB store written by ``phizoo.data`` (adapter: the only place the trainer,
    the CLI and the leaderboard touch that package)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    try:
        from ..data.dataset import LmdbDataset
    except ImportError as err:
        raise RuntimeError(f"cannot open {path}: phizoo.data.LmdbDataset is not available ({err})") from None
    return LmdbDataset(path)


def split_indices(dataset, name: str) -> list[int]:
    """Indices of the stored split ``name`` ("train", "val", "test", ...).

    Accepts the forms a store may offer: ``dataset.split(name)`` returning indices or a
    ``Subset``-like object with ``.indices``, or a ``dataset.splits`` mapping.
    """
    for attr in ("split_indices", "split"):
        fn = getattr(dataset, attr, None)
        if callable(fn):
            got = fn(name)
            got = getattr(got, "indices", got)
            return [int(i) for i in (got.tolist() if hasattr(got, "tolist") else got)]
    splits = getattr(dataset, "splits", None)
    if callable(splits):
        splits = splits()
    if isinstance(splits, dict):
        if name not in splits:
            raise KeyError(f"dataset has no split {name!r}; stored splits: {', '.join(map(str, splits))}")
        got = splits[name]
        return [int(i) for i in (got.tolist() if hasattr(got, "tolist") else got)]
    raise KeyError(f"dataset {type(dataset).__name__} stores no splits; pass split indices explicitly")


def named_splits(dataset, names: dict) -> dict[str, list[int]]:
    """Index lists for the split names of a config's ``data`` section (train, val, optional test)."""
    splits = {"train": split_indices(dataset, names["train"]), "val": split_indices(dataset, names["val"])}
    if names.get("test"):
        try:
            splits["test"] = split_indices(dataset, names["test"])
        except KeyError:
            pass
    return splits


def describe_dataset(dataset, path: str | Path | None = None, name: str | None = None) -> dict[str, Any]:
    """What a checkpoint card records about the data."""
    info: dict[str, Any] = {"num_structures": len(dataset)}
    meta = getattr(dataset, "metadata", None)
    if callable(meta):
        meta = meta()
    if isinstance(meta, dict):
        for key in ("name", "dataset", "source", "target", "version", "level_of_theory", "units"):
            if key in meta:
                info[key] = meta[key]
    if name:
        info["name"] = name
    if path is not None:
        info["path"] = str(path)
    return info
