"""The sGDML dataset file that ``phizoo data xtb-md`` writes.

Output (sGDML dataset format, what :mod:`phizoo.data.md22` and sGDML read)::

    R  [n, N, 3] float64  positions, Å
    z  [N]       int64    atomic numbers
    E  [n, 1]    float64  total GFN2-xTB energy, kcal/mol
    F  [n, N, 3] float64  forces = -gradient, kcal/mol/Å
    Q  [n, N]    float64  GFN2-xTB (Mulliken) partial charges, e   (not in sGDML; phizoo reads it)
    name, theory ('GFN2-xTB (tblite <version>)'), type 'd', r_unit 'Ang', e_unit 'kcal/mol',
    md5 (sGDML's dataset fingerprint: md5 of the md5 digests of z, R, E, F),
    E_min/E_max/E_mean/E_var, F_min/F_max/F_mean/F_var (as sGDML's dataset scripts write),
    xtb_md (JSON: every setting, the starting structure, program versions)

Written atomically (temporary file, then rename) and byte-reproducibly (zip entries carry a
fixed timestamp).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .optional import theory_string

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def sgdml_md5(data: dict[str, np.ndarray]) -> bytes:
    """sGDML's dataset fingerprint (``sgdml.utils.io.dataset_md5``): md5 over the md5 digests of
    ``z``, ``R``, ``E`` (when present) and ``F``, each flattened in its stored dtype."""
    h = hashlib.md5()
    for key in ("z", "R", "E", "F"):
        if key in data:
            h.update(hashlib.md5(np.ascontiguousarray(data[key]).ravel()).digest())
    return h.hexdigest().encode("utf-8")


def write_npz(path: str | Path, arrays: dict[str, Any], compress: bool = True) -> Path:
    """``np.savez``-compatible archive, written atomically (temporary file in the same folder,
    fsync, rename) and byte-reproducibly (fixed zip timestamps, keys in the given order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=method) as zf:
                for key, value in arrays.items():
                    info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
                    info.compress_type = method
                    info.external_attr = 0o644 << 16
                    with zf.open(info, "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dataset_arrays(name: str, z: np.ndarray, R: np.ndarray, E: np.ndarray, F: np.ndarray, Q: np.ndarray,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """The arrays of an sGDML dataset file (see the module docstring), in writing order."""
    d: dict[str, Any] = {
        "type": np.array("d"),
        "name": np.array(name),
        "theory": np.array(theory_string()),
        "r_unit": np.array("Ang"),
        "e_unit": np.array("kcal/mol"),
        "z": np.asarray(z, dtype=np.int64),
        "R": np.asarray(R, dtype=np.float64),
        "E": np.asarray(E, dtype=np.float64).reshape(-1, 1),
        "F": np.asarray(F, dtype=np.float64),
        "Q": np.asarray(Q, dtype=np.float64),
    }
    d["E_min"], d["E_max"] = np.float64(d["E"].min()), np.float64(d["E"].max())
    d["E_mean"], d["E_var"] = np.float64(d["E"].mean()), np.float64(d["E"].var())
    d["F_min"], d["F_max"] = np.float64(d["F"].min()), np.float64(d["F"].max())
    d["F_mean"], d["F_var"] = np.float64(d["F"].mean()), np.float64(d["F"].var())
    d["md5"] = np.array(sgdml_md5(d))
    d["xtb_md"] = np.array(json.dumps(meta, sort_keys=True))
    return d
