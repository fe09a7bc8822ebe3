"""The conversion pipeline shared by the MD22, OE62 and QM9 converters.

A converter is a :class:`Source`: it knows its files, how many structures it has, how to build
structure ``i`` (in eV, Å, e; energies float64) and how to split ``n`` structures. ``convert``
hashes the source files, writes every structure through :class:`~phizoo.data.store_writer.StoreWriter`
(validated, atomic, resumable), computes the splits, fits the per-element reference energies on
the training split only, gathers statistics and stores all of it as metadata.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DataError
from ..validate import SHORT_BOND
from .store import UNITS
from .store_writer import StoreWriter

_HASH_CACHE: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file (cached per (path, size, mtime) within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


@dataclass
class Structure:
    """One structure in phizoo units: Å, eV (float64), eV/Å, e, e·Å."""
    z: np.ndarray
    pos: np.ndarray
    energy: float
    forces: np.ndarray | None = None
    charges: np.ndarray | None = None
    total_charge: float = 0.0
    dipole: np.ndarray | None = None
    spin: float | None = None          # multiplicity 2S+1
    cell: np.ndarray | None = None     # [3, 3] Å, with pbc
    pbc: np.ndarray | None = None      # [3] 0/1
    stress: np.ndarray | None = None   # [3, 3] eV/Å³ (ASE sign)
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, Any]:
        out = {"z": self.z, "pos": self.pos, "energy": np.float64(self.energy),
               "total_charge": np.float64(self.total_charge)}
        for name in ("forces", "charges", "dipole", "spin", "cell", "pbc", "stress"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class Source:
    """Interface of a dataset converter (see md22.py, oe62.py, qm9.py)."""

    dataset: str = ""                  # "md22", "oe62", "qm9"
    fit_references: bool = True        # per-element references make sense (varying compositions)

    def files(self) -> list[Path]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def structure(self, i: int) -> Structure:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The source as named in messages (its file, or folder)."""
        return str(self.files()[0])

    def where(self, i: int) -> str:
        """Human-readable location of structure ``i`` for error messages."""
        return f"{self.label}: record {i}"

    def splits(self, n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(name -> indices, policy description) for the ``n`` converted structures."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Dataset description: name, level_of_theory, target, source_units, conversion factors."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Converter options that change the output (part of the resume fingerprint)."""
        return {}


def check_limit(limit) -> int | None:
    """``None`` or a positive int; ``DataError`` otherwise."""
    if limit is None:
        return None
    if int(limit) < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    return int(limit)


# ----------------------------------------------------------------------------------- splits


def round_half_up(x: float) -> int:
    """``round`` without banker's rounding (0.5 -> 1), so that split sizes are predictable."""
    return int(np.floor(x + 0.5))


def scaled_sizes(full: Sequence[int], full_total: int, n: int) -> list[int]:
    """Split sizes ``full`` (of a ``full_total``-structure set) scaled to ``n`` structures.

    Each size is ``size * n / full_total`` rounded half up (at least 1 for a non-empty split while
    structures remain), never more than what is left."""
    out, left = [], n
    for size in full:
        s = size if n == full_total else round_half_up(size * n / full_total)
        if size > 0 and s == 0 and left > 0:
            s = 1
        s = min(s, left)
        out.append(s)
        left -= s
    return out


def random_split(n: int, sizes: dict[str, int], seed: int, rest: str | None = "test") -> dict[str, np.ndarray]:
    """Shuffle ``range(n)`` with ``numpy.random.default_rng(seed)`` and cut consecutive chunks of
    ``sizes`` (in order); the remainder forms split ``rest``. Indices are returned sorted."""
    for name, size in sizes.items():
        if isinstance(size, bool) or int(size) != size or size < 0:
            raise DataError(f"split {name!r}: size {size!r} must be a non-negative integer")
    sizes = {k: int(v) for k, v in sizes.items()}
    total = sum(sizes.values())
    if total > n:
        raise DataError(f"split sizes {sizes} need {total} structures but only {n} were converted")
    perm = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = perm[start:start + size]
        start += size
    if rest is not None:
        out[rest] = perm[start:]
    return out


def train_val_test_split(n: int, seed: int, full: Sequence[int], full_total: int, full_label: str, policy: str,
                         train_size: int | None = None, val_size: int | None = None,
                         test_size: int | None = None):
    """Shuffled train / val / test split of ``n`` structures (OE62, QM9).

    Sizes: ``train_size``/``val_size`` when given, else the standard sizes ``full`` (of
    ``full_total``) scaled by ``n / full_total``. The test split is the rest, or the next
    ``test_size`` structures of the same permutation (the remainder then belongs to no split).
    Returns (splits, policy record).
    """
    for option, value in (("--train-size", train_size), ("--val-size", val_size), ("--test-size", test_size)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
            raise DataError(f"{option} must be a non-negative integer, got {value!r}")
    if train_size is not None and int(train_size) < 1:
        raise DataError(f"--train-size must be at least 1, got {train_size}")
    if train_size is not None or val_size is not None:
        n_train = int(train_size if train_size is not None else round_half_up(full[0] * n / full_total))
        n_val = int(val_size if val_size is not None else round_half_up(full[1] * n / full_total))
        note = "sizes given by --train-size/--val-size"
    else:
        n_train, n_val = scaled_sizes(full, full_total, n)
        note = full_label if n == full_total else f"{full_label} of {full_total:,} scaled by {n}/{full_total:,}"
    if test_size is None:
        splits = random_split(n, {"train": n_train, "val": n_val}, seed, rest="test")
    else:
        splits = random_split(n, {"train": n_train, "val": n_val, "test": int(test_size)}, seed, rest=None)
        note += f"; test: {int(test_size)} structures (--test-size), the remaining {n - n_train - n_val - int(test_size)} in no split"
    return splits, {"policy": policy, "sizes_source": note}


def nested_subsets(train_order: np.ndarray, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """``train_<s>``: the first ``s`` training structures in shuffled order (nested: each smaller
    subset is contained in every larger one)."""
    out = {}
    for s in sorted(set(int(x) for x in sizes)):
        if s <= 0 or s > len(train_order):
            raise DataError(f"training subset of {s} structures: the training split has {len(train_order)}")
        out[f"train_{s}"] = train_order[:s]
    return out


# ------------------------------------------------------------------------ statistics & references


class Summary:
    """Accumulates what the metadata needs while records are written (O(atoms) memory)."""

    def __init__(self):
        self.natoms: list[int] = []
        self.energy: list[float] = []
        self.z: list[np.ndarray] = []
        self.f_sq = 0.0
        self.f_n = 0
        self.f_max = 0.0
        self.q_sum = self.q_sq = 0.0
        self.q_n = 0
        self.q_min, self.q_max = np.inf, -np.inf
        self.q_net_err = 0.0

    def add(self, arrays: dict[str, Any]) -> None:
        z = np.asarray(arrays["z"])
        self.natoms.append(len(z))
        self.energy.append(float(np.asarray(arrays["energy"]).reshape(-1)[0]))
        self.z.append(z.astype(np.uint8))
        f = arrays.get("forces")
        if f is not None:
            f = np.asarray(f)
            self.f_sq += float(np.sum(f * f))
            self.f_n += f.size
            self.f_max = max(self.f_max, float(np.max(np.abs(f))))
        q = arrays.get("charges")
        if q is not None:
            q = np.asarray(q)
            self.q_sum += float(q.sum())
            self.q_sq += float(np.sum(q * q))
            self.q_n += q.size
            self.q_min, self.q_max = min(self.q_min, float(q.min())), max(self.q_max, float(q.max()))
            total = float(np.asarray(arrays["total_charge"]).reshape(-1)[0])
            self.q_net_err = max(self.q_net_err, abs(float(q.sum()) - total))

    def composition(self) -> tuple[np.ndarray, np.ndarray]:
        """(elements present (sorted Z), counts [n, len(elements)] float64)."""
        zs = np.concatenate(self.z) if self.z else np.zeros(0, np.uint8)
        elements = np.unique(zs)
        rows = np.repeat(np.arange(len(self.natoms)), self.natoms)
        counts = np.zeros((len(self.natoms), len(elements)), dtype=np.float64)
        np.add.at(counts, (rows, np.searchsorted(elements, zs)), 1.0)
        return elements, counts


def _describe(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return {}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def fit_references(summary: Summary, train: np.ndarray) -> dict[str, Any]:
    """Least squares ``E ≈ Σ_Z n_Z E_Z`` (float64) over the TRAINING structures only."""
    elements, counts = summary.composition()
    energy = np.asarray(summary.energy, dtype=np.float64)
    if len(train) == 0:
        raise DataError("cannot fit element references: the training split is empty")
    a = counts[train]
    present = a.sum(0) > 0
    coef, _, rank, _ = np.linalg.lstsq(a[:, present], energy[train], rcond=None)
    refs = dict(zip(elements[present].tolist(), coef.tolist()))
    resid = energy[train] - a[:, present] @ coef
    per_atom = resid / a.sum(1)
    missing = [int(z) for z in elements[~present]]
    return {
        "method": "least squares E_total ≈ Σ_Z n_Z · E_Z (float64, numpy.linalg.lstsq)",
        "fitted_on": "train",
        "num_structures": int(len(train)),
        "rank": int(rank),
        "full_rank": bool(rank == int(present.sum())),
        "energies": {str(z): float(e) for z, e in refs.items()},
        "elements_without_reference": missing,
        "train_residual": {"mae": float(np.mean(np.abs(resid))), "rmse": float(np.sqrt(np.mean(resid ** 2))),
                           "per_atom": _describe(per_atom)},
    }


def statistics(summary: Summary, splits: dict[str, np.ndarray], refs: dict[str, Any] | None) -> dict[str, Any]:
    from ase.data import chemical_symbols

    natoms = np.asarray(summary.natoms, dtype=np.int64)
    energy = np.asarray(summary.energy, dtype=np.float64)
    elements, counts = summary.composition()
    stats: dict[str, Any] = {
        "num_structures": int(len(natoms)),
        "num_atoms": {"total": int(natoms.sum()), "min": int(natoms.min()), "max": int(natoms.max()),
                      "mean": float(natoms.mean())} if len(natoms) else {},
        "element_counts": {chemical_symbols[int(z)]: int(c) for z, c in zip(elements, counts.sum(0))},
        "energy": _describe(energy),
        "energy_per_atom": _describe(energy / np.maximum(natoms, 1)),
    }
    if summary.f_n:
        stats["forces"] = {"rms": float(np.sqrt(summary.f_sq / summary.f_n)), "max_abs": summary.f_max}
    if summary.q_n:
        mean = summary.q_sum / summary.q_n
        stats["charges"] = {"mean": mean, "std": float(np.sqrt(max(summary.q_sq / summary.q_n - mean ** 2, 0.0))),
                            "min": summary.q_min, "max": summary.q_max,
                            "max_abs_net_minus_total_charge": summary.q_net_err}
    if refs:
        e_ref = np.zeros(len(elements))
        for j, z in enumerate(elements):
            e_ref[j] = refs["energies"].get(str(int(z)), 0.0)
        resid = (energy - counts @ e_ref) / np.maximum(natoms, 1)
        stats["residual_energy_per_atom"] = {name: _describe(resid[idx]) for name, idx in splits.items()}
    return stats


# ----------------------------------------------------------------------------------- convert


def _warn(message: str) -> None:
    import warnings

    from ..validate import PlausibilityWarning

    warnings.warn(message, PlausibilityWarning, stacklevel=3)


def fingerprint(source: Source, hashes: list[dict], seed: int, extra: dict) -> str:
    from .store import SCHEMA_VERSION

    blob = json.dumps({"schema_version": SCHEMA_VERSION, "dataset": source.dataset, "files": hashes,
                       "options": source.options(), "seed": seed, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def held_out_split(n: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every structure in ``test``, no ``train`` or ``val``: a held-out set (e.g. an independent
    trajectory) that checkpoints are evaluated on with ``phizoo eval --split test``."""
    return {"test": np.arange(n)}, {"policy": "--test-only: every structure in 'test' (an independent test set; "
                                              "no train or val split, no element references)"}


def convert(source: Source, dest: str | Path, *, seed: int = 42, train_subsets: Sequence[int] = (),
            test_only: bool = False, overwrite: bool = False, resume: bool = True, progress: bool = True,
            on_record: Callable[[int], None] | None = None) -> Path:
    """Convert ``source`` into the database ``dest`` (atomic; resumes an interrupted run with
    identical inputs and options). Returns ``dest``.

    ``test_only``: every structure goes to the ``test`` split (:func:`held_out_split`) instead of
    the source's train/val/test policy. ``on_record(i)`` is called before structure ``i`` is built
    (used by tests to interrupt)."""
    from tqdm.auto import tqdm

    from .. import __version__

    n = len(source)
    if n == 0:
        raise DataError(f"{source.label}: holds no structures")
    hashes = [{"path": str(p), "name": Path(p).name, "sha256": sha256_file(p), "size": Path(p).stat().st_size}
              for p in source.files()]
    if test_only and train_subsets:
        raise DataError(f"{source.label}: --test-only stores no training split, so --train-subsets cannot be used")
    fp = fingerprint(source, hashes, seed, {"train_subsets": sorted(set(map(int, train_subsets))),
                                            **({"test_only": True} if test_only else {})})
    # splits depend only on n and the seed: computed (and checked) before anything is written
    splits, policy = held_out_split(n) if test_only else source.splits(n, seed)
    if train_subsets:
        splits.update(nested_subsets(splits["train"], train_subsets))
    splits = {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in splits.items()}
    with StoreWriter(dest, fp, overwrite=overwrite, resume=resume) as writer:
        summary = Summary()
        for i in range(writer.start):
            summary.add(writer.existing(i))
        bar = tqdm(total=n, initial=writer.start, disable=not progress, unit="struct",
                   desc=f"{source.dataset} -> {Path(dest).name}", dynamic_ncols=True)
        try:
            for i in range(writer.start, n):
                if on_record is not None:
                    on_record(i)
                s = source.structure(i)
                arrays = writer.add(s.arrays(), s.id, s.meta, where=source.where(i))
                summary.add(arrays)
                bar.update(1)
        finally:
            bar.close()
        if writer.notes:
            _warn(f"{len(writer.notes)} structure(s) have atoms closer than {SHORT_BOND} Å; the first: {writer.notes[0]}")
        refs = None
        if source.fit_references and not test_only:
            refs = fit_references(summary, splits["train"])
        from ase.data import chemical_symbols

        elements = sorted(set(np.concatenate(summary.z).tolist()))
        meta = {
            **source.metadata(),
            "plausibility_warnings": list(source.metadata().get("plausibility_warnings", [])) + writer.notes[:20],
            "dataset": source.dataset,
            "units": dict(UNITS),
            "source": {"files": hashes, "options": source.options(), "num_structures_converted": n},
            "elements": [chemical_symbols[z] for z in elements],
            "atomic_numbers": elements,
            "element_references": refs,
            "statistics": statistics(summary, splits, refs),
            "splits": {"sizes": {k: int(len(v)) for k, v in splits.items()}, "seed": seed, **policy},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "phizoo_version": __version__,
        }
        index = {"natoms": np.asarray(summary.natoms, dtype=np.int32),
                 "energy": np.asarray(summary.energy, dtype=np.float64)}
        return writer.finalize(meta, splits, index)
