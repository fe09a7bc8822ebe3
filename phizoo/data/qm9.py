"""QM9 (Ramakrishnan et al., Sci. Data 2014) from the CSV files of the PyPI package ``qm9pack``.

``qm9pack`` (1.0.3) ships ``qm9pack/data/qm9_part1.csv`` .. ``qm9_part3.csv`` (130,831
molecules, the QM9 set without the 3,054 molecules that failed the consistency check) and
``qm9_polarizability.csv``. Its ``import`` fails with new setuptools (it imports
``pkg_resources``), so phizoo NEVER imports it: the data folder is located with
``importlib.util.find_spec("qm9pack")`` (which does not execute the package) or, failing that,
``importlib.metadata.files("qm9pack")``.

CSV layout (one row per molecule; list-valued cells are JSON-like strings)::

    XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,
    Harmonic_Freq_cmi,RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,
    LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,
    Enthalphy_298K_au,GibbsFreeEnergy_298K_au,Heatcapacity_Cv_cal_mol_K

``Elements`` is ``"['C','H',...]"``, ``XYZ_Ang`` ``"[[x,y,z],...]"`` (Å), ``Mulliken_pop``
``"[q1,...]"`` (e). Stored: geometry, ``energy`` = U0 (``InternalEnergy_0K_au``, Hartree ×
``ase.units.Hartree`` → eV, float64), Mulliken ``charges``, ``dipole`` = |μ| (Debye ×
``ase.units.Debye`` → e·Å), total charge 0.

Split: shuffle with ``numpy.random.default_rng(seed)``, 110,000 train / 10,000 val / rest
(10,831) test; scaled by ``n / 130,831`` for ``--limit``; ``train_subsets`` adds nested
``train_<k>`` subsets of the training split (first k in shuffled order).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np
from ase import units

from .convert import Source, Structure, check_limit, train_val_test_split
from .errors import DataError, DataFileNotFoundError, check_file

QM9_TOTAL = 130831
QM9_SPLIT = (110000, 10000)
COLUMNS = ("XYZ_file", "Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", "Mulliken_pop", "Dipole_debye",
           "InternalEnergy_0K_au")
_PART = re.compile(r"qm9_part(\d+)\.csv$")
_SYMBOL = re.compile(r"[A-Za-z]+")


def qm9pack_data_dir() -> Path:
    """``site-packages/qm9pack/data`` of the installed qm9pack, found without importing it."""
    spec = importlib.util.find_spec("qm9pack")  # top-level: locates the package, does not run it
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" for p in spec.submodule_search_locations]
    try:
        for f in importlib.metadata.files("qm9pack") or []:
            if _PART.search(str(f)):
                candidates.append(Path(f.locate()).parent)
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_dir() and any(_PART.search(p.name) for p in c.iterdir()):
            return c
    raise DataFileNotFoundError("qm9pack is not installed (or has no data/qm9_part*.csv): "
                                "pip install qm9pack, or pass the folder holding qm9_part*.csv")


def qm9_files(src: str | Path | None) -> list[Path]:
    """The CSV files of ``src``: None/"qm9pack" (the installed package), a folder holding
    ``qm9_part*.csv`` (in part order), or one CSV file in the qm9pack layout."""
    if src is None or str(src) == "qm9pack":
        folder = qm9pack_data_dir()
    else:
        folder = Path(src)
        if not folder.exists():
            raise DataFileNotFoundError(f"{folder}: no such file or folder")
        if not folder.is_dir():
            return [check_file(folder, "QM9 CSV file")]
    parts = sorted((p for p in folder.iterdir() if _PART.search(p.name)), key=lambda p: int(_PART.search(p.name)[1]))
    if not parts:
        raise DataError(f"{folder}: holds no qm9_part*.csv files")
    return [check_file(p, "QM9 CSV file") for p in parts]


def qm9pack_version() -> str | None:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return None


class QM9Source(Source):
    dataset = "qm9"

    def __init__(self, src: str | Path | None = None, limit: int | None = None, train_size: int | None = None,
                 val_size: int | None = None,
                 test_size: int | None = None):
        import pandas as pd

        self.from_package = src is None or str(src) == "qm9pack"
        self.paths = qm9_files(src)
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        remaining = check_limit(limit)
        frames, self.rows = [], []  # rows: (file, row in file) per structure
        for path in self.paths:
            if remaining == 0:
                break
            try:
                header = pd.read_csv(path, nrows=0)
            except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
                raise DataError(f"{path}: not a QM9 CSV in the qm9pack layout ({type(err).__name__}: {err})") from None
            missing = [c for c in COLUMNS if c not in header.columns]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))} of the qm9pack "
                                f"layout (found: {', '.join(map(str, header.columns[:30]))})")
            try:
                df = pd.read_csv(path, usecols=list(COLUMNS), nrows=remaining,
                                 dtype={"XYZ_file": str, "SMILES": str, "Elements": str, "XYZ_Ang": str,
                                        "Mulliken_pop": str})
            except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as err:
                raise DataError(f"{path}: unreadable CSV ({type(err).__name__}: {err})") from None
            frames.append(df)
            self.rows += [(path, r) for r in range(len(df))]
            if remaining is not None:
                remaining -= len(df)
        df = pd.concat(frames, ignore_index=True) if frames else None
        self.n = 0 if df is None else len(df)
        if self.n:
            self.cols = {c: df[c].tolist() for c in COLUMNS}

    @property
    def label(self) -> str:
        return str(self.paths[0].parent if len(self.paths) > 1 else self.paths[0])

    def files(self) -> list[Path]:
        return list(self.paths)

    def __len__(self) -> int:
        return self.n

    def where(self, i: int) -> str:
        if i >= self.n:
            return f"{self.label}: record {i}"
        path, r = self.rows[i]
        return f"{path}: row {r} ({self.cols['XYZ_file'][i]})"

    def _list(self, i: int, col: str, where: str, width: int = 0) -> np.ndarray:
        """A cell such as ``[-0.53,0.13]`` or ``[[0.59,0.,1.],...]`` (numbers like ``0.`` are not JSON)."""
        raw = str(self.cols[col][i]).strip()
        depth = 2 if width else 1
        if not (raw.startswith("[" * depth) and raw.endswith("]" * depth)):
            raise DataError(f"{where}: column {col!r} is not a {'nested ' if width else ''}list of numbers "
                            f"({raw!r:.60})")
        tokens = raw.replace("[", " ").replace("]", " ").replace(",", " ").replace("*^", "e").split()
        try:
            values = np.array([float(t) for t in tokens], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where}: column {col!r} is not a list of numbers ({raw!r:.60})") from None
        if width:
            rows = raw.count("[") - 1
            if rows * width != values.size:
                raise DataError(f"{where}: column {col!r} has {values.size} numbers in {rows} rows, "
                                f"expected {width} per row")
            values = values.reshape(rows, width)
        return values

    def _number(self, i: int, col: str, where: str) -> float:
        raw = self.cols[col][i]
        try:
            v = float(str(raw).replace("*^", "e")) if isinstance(raw, str) else float(raw)
        except (TypeError, ValueError):
            raise DataError(f"{where}: column {col!r} is not a number ({raw!r:.40})") from None
        if not np.isfinite(v):
            raise DataError(f"{where}: column {col!r} is {v} (not finite)")
        return v

    def structure(self, i: int) -> Structure:
        from ase.data import atomic_numbers

        where = self.where(i)
        symbols = _SYMBOL.findall(str(self.cols["Elements"][i]))
        z = np.empty(len(symbols), dtype=np.int64)
        for k, s in enumerate(symbols):
            zk = atomic_numbers.get(s, 0)
            if zk == 0:
                raise DataError(f"{where}: column 'Elements': unknown element {s!r} (atom {k})")
            z[k] = zk
        pos = self._list(i, "XYZ_Ang", where, width=3)
        q = self._list(i, "Mulliken_pop", where)
        try:
            n_declared = int(self.cols["N_atoms"][i])
        except (TypeError, ValueError):
            raise DataError(f"{where}: column 'N_atoms' is not an integer ({self.cols['N_atoms'][i]!r})") from None
        if len(z) != n_declared or pos.shape != (n_declared, 3) or q.shape != (n_declared,):
            raise DataError(f"{where}: shapes disagree: N_atoms={n_declared}, Elements has {len(z)}, "
                            f"XYZ_Ang has shape {list(pos.shape)}, Mulliken_pop has shape {list(q.shape)}")
        for col, arr in (("XYZ_Ang", pos), ("Mulliken_pop", q)):
            if not np.all(np.isfinite(arr)):
                raise DataError(f"{where}: column {col!r} holds a non-finite value")
        u0 = self._number(i, "InternalEnergy_0K_au", where)
        mu = self._number(i, "Dipole_debye", where)
        name = str(self.cols["XYZ_file"][i])
        name = name[:-4] if name.endswith(".xyz") else name
        try:
            index = int(self.cols["Index"][i])
        except (TypeError, ValueError):
            raise DataError(f"{where}: column 'Index' is not an integer ({self.cols['Index'][i]!r})") from None
        meta = {"qm9_index": index, "smiles": str(self.cols["SMILES"][i]),
                "file": self.rows[i][0].name, "row": self.rows[i][1]}
        return Structure(z=z, pos=pos, energy=u0 * units.Hartree, charges=q, total_charge=0.0,
                         dipole=np.array([mu * units.Debye]), id=name, meta=meta)

    def splits(self, n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return train_val_test_split(n, seed, QM9_SPLIT, QM9_TOTAL, '110,000 / 10,000',
                                    'QM9: shuffle with numpy.random.default_rng(seed).permutation, then train / val / rest test',
                                    self.train_size, self.val_size, self.test_size)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": "QM9",
            "level_of_theory": "B3LYP/6-31G(2df,p)",
            "target": "U0: internal energy at 0 K (InternalEnergy_0K_au)",
            "charges_source": "Mulliken_pop (Mulliken charges)",
            "dipole": "magnitude |mu| (Dipole_debye)",
            "source_format": "qm9pack CSV (qm9_part*.csv)",
            "source_units": {"energy": "Hartree", "dipole": "Debye", "length": "angstrom", "charge": "e"},
            "conversion": {"energy": units.Hartree, "dipole": units.Debye, "length": 1.0, "charge": 1.0,
                           "note": "ase.units.Hartree (eV/Hartree) and ase.units.Debye (e*angstrom/Debye)"},
            "qm9pack_version": qm9pack_version() if self.from_package else None,
        }

    def options(self) -> dict[str, Any]:
        return {"limit": self.n, "train_size": self.train_size, "val_size": self.val_size, "test_size": self.test_size}
