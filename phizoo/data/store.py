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

Code: this module holds the schema (keys, arrays, units, :func:`validate_arrays`, the errors);
:mod:`phizoo.data.store_reader` opens, verifies and decodes a database,
:mod:`phizoo.data.store_writer` writes one (:class:`~phizoo.data.store_writer.StoreWriter`:
atomic, resumable).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

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
