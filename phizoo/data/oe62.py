"""OE62 (Stuke et al., Sci. Data 2020) from ``df_62k.json`` (also ``df_31k.json``, ``df_5k.json``).

The file is a pandas DataFrame in ``orient="split"`` JSON. Used columns: ``refcode_csd``
(id), ``xyz_pbe_relaxed`` (an XYZ block: atom count, comment line, ``symbol x y z`` lines in Å),
the target ``total_energy_pbe0_vac_tier2`` (eV) and ``hirshfeld_pbe`` (Hirshfeld charges, e,
one per atom); ``canonical_smiles`` and ``number_of_atoms`` when present. Molecules are neutral.

Split (the Φ-Module paper): shuffle with ``numpy.random.default_rng(seed)`` (seed 42 by default),
then 50,000 train / 6,000 val / the rest (5,489) test. For files (or ``--limit``) with fewer
than 61,489 molecules the two sizes are scaled by ``n / 61,489`` (df_31k, df_5k, tests).
Element reference energies are fitted on the training split only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .convert import Source, Structure, check_limit, train_val_test_split
from .errors import DataError, check_file

OE62_TOTAL = 61489
OE62_SPLIT = (50000, 6000)
DEFAULT_TARGET = "total_energy_pbe0_vac_tier2"
DEFAULT_CHARGES = "hirshfeld_pbe"


def parse_xyz(text: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(atomic numbers, positions Å) of one XYZ block; ``DataError`` naming ``where`` otherwise."""
    from ase.data import atomic_numbers

    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: empty or missing XYZ block ({text!r:.40})")
    lines = text.strip("\n").splitlines()
    try:
        n = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{where}: first XYZ line {lines[0]!r:.40} is not an atom count") from None
    if n <= 0:
        raise DataError(f"{where}: XYZ atom count is {n}")
    body = [ln for ln in lines[2:] if ln.strip()]
    if len(body) < n:
        raise DataError(f"{where}: XYZ block announces {n} atoms but has {len(body)} atom lines")
    z = np.empty(n, dtype=np.int64)
    pos = np.empty((n, 3), dtype=np.float64)
    for k, line in enumerate(body[:n]):
        parts = line.split()
        if len(parts) < 4:
            raise DataError(f"{where}: XYZ atom line {k + 1} {line!r:.60} needs 'symbol x y z'")
        sym = parts[0]
        if sym.isdigit():
            z[k] = int(sym)
        else:
            sym = sym[:1].upper() + sym[1:].lower()
            if sym not in atomic_numbers or atomic_numbers[sym] == 0:
                raise DataError(f"{where}: unknown element {parts[0]!r} in XYZ atom line {k + 1}")
            z[k] = atomic_numbers[sym]
        try:
            pos[k] = [float(x.replace("*^", "e")) for x in parts[1:4]]
        except ValueError:
            raise DataError(f"{where}: XYZ atom line {k + 1} {line!r:.60}: coordinates are not numbers") from None
        if not np.all(np.isfinite(pos[k])):
            raise DataError(f"{where}: XYZ atom line {k + 1} {line!r:.60}: non-finite coordinate")
    return z, pos


class OE62Source(Source):
    dataset = "oe62"

    def __init__(self, path: str | Path, limit: int | None = None, target: str = DEFAULT_TARGET,
                 charges: str | None = DEFAULT_CHARGES, train_size: int | None = None, val_size: int | None = None,
                 test_size: int | None = None):
        import pandas as pd

        self.path = check_file(path, "OE62 JSON file")
        self.target, self.charges_column = target, (charges or None)
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        try:
            df = pd.read_json(self.path, orient="split")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
            raise DataError(f"{self.path}: not a pandas orient='split' JSON table as in df_62k.json "
                            f"({type(err).__name__}: {err})") from None
        required = ["refcode_csd", "xyz_pbe_relaxed", target] + ([self.charges_column] if self.charges_column else [])
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(f"{self.path}: missing column(s) {', '.join(map(repr, missing))} "
                            f"(found: {', '.join(map(str, df.columns[:20]))})")
        self.rows_in_file = len(df)
        limit = check_limit(limit)
        if limit is not None:
            df = df.iloc[:limit]
        self.n = len(df)
        self.labels = df.index.tolist()
        self.refcodes = df["refcode_csd"].astype(str).tolist()
        self.xyz = df["xyz_pbe_relaxed"].tolist()
        self.energy = df[target].tolist()
        self.charges = df[self.charges_column].tolist() if self.charges_column else None
        self.smiles = df["canonical_smiles"].tolist() if "canonical_smiles" in df.columns else None
        self.natoms = df["number_of_atoms"].tolist() if "number_of_atoms" in df.columns else None

    def files(self) -> list[Path]:
        return [self.path]

    def __len__(self) -> int:
        return self.n

    def where(self, i: int) -> str:
        ref = self.refcodes[i] if i < self.n else "?"
        return f"{self.path}: row {i} (refcode_csd {ref})"

    def structure(self, i: int) -> Structure:
        where = self.where(i)
        z, pos = parse_xyz(self.xyz[i], f"{where}, column 'xyz_pbe_relaxed'")
        if self.natoms is not None:
            try:
                declared = int(self.natoms[i])
            except (TypeError, ValueError):
                declared = None
            if declared is not None and declared != len(z):
                raise DataError(f"{where}: column 'number_of_atoms' says {declared} but the XYZ block has {len(z)} atoms")
        try:
            energy = float(self.energy[i])
        except (TypeError, ValueError):
            raise DataError(f"{where}: column {self.target!r} is not a number ({self.energy[i]!r:.40})") from None
        if not np.isfinite(energy):
            raise DataError(f"{where}: column {self.target!r} is {energy} (not finite)")
        q = None
        if self.charges is not None:
            raw = self.charges[i]
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    raise DataError(f"{where}: column {self.charges_column!r} is not a list of numbers") from None
            try:
                q = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{where}: column {self.charges_column!r} is not a list of numbers") from None
            if q.shape != (len(z),):
                raise DataError(f"{where}: column {self.charges_column!r} has shape {list(q.shape)} but the "
                                f"molecule has {len(z)} atoms")
            if not np.all(np.isfinite(q)):
                raise DataError(f"{where}: column {self.charges_column!r} holds a non-finite charge at atom "
                                f"{int(np.argmin(np.isfinite(q)))}")
        meta = {"row": i, "index_label": _plain(self.labels[i]), "refcode_csd": self.refcodes[i]}
        if self.smiles is not None:
            meta["smiles"] = str(self.smiles[i]).strip()
        return Structure(z=z, pos=pos, energy=energy, charges=q, total_charge=0.0, id=self.refcodes[i], meta=meta)

    def splits(self, n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return train_val_test_split(n, seed, OE62_SPLIT, OE62_TOTAL, "the paper's 50,000 / 6,000",
                                    'OE62 (Φ-Module paper): shuffle with numpy.random.default_rng(seed).permutation, then train / val / rest test',
                                    self.train_size, self.val_size, self.test_size)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": "OE62",
            "level_of_theory": "PBE0 (FHI-aims, tier 2 basis, vacuum) on PBE-relaxed geometries"
            if self.target == DEFAULT_TARGET else f"column {self.target}",
            "target": self.target,
            "charges_source": self.charges_column,
            "source_format": "pandas DataFrame JSON, orient='split' (df_62k.json / df_31k.json / df_5k.json)",
            "source_units": {"energy": "eV", "length": "angstrom", "charge": "e"},
            "conversion": {"energy": 1.0, "length": 1.0, "charge": 1.0},
            "rows_in_file": self.rows_in_file,
        }

    def options(self) -> dict[str, Any]:
        return {"limit": self.n, "target": self.target, "charges": self.charges_column,
                "train_size": self.train_size, "val_size": self.val_size, "test_size": self.test_size}


def _plain(x):
    return x.item() if hasattr(x, "item") else (x if isinstance(x, (int, float, str)) else str(x))
