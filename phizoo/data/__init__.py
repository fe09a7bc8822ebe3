"""Datasets: a versioned, pickle-free LMDB store and converters for MD22, OE62 and QM9.

* :class:`LmdbDataset` – torch ``Dataset`` of torch_geometric ``Data`` (``z``, ``pos`` Å,
  ``energy`` float64 eV, ``forces`` eV/Å, ``charges`` e, ``total_charge``), with stored splits
  (``dataset.split("train")``) and metadata (units, source sha256, references, statistics).
* :func:`convert_md22`, :func:`convert_oe62`, :func:`convert_qm9` – atomic, resumable
  conversions (also ``phizoo data convert``).
* :class:`DataError` – every problem with input files or databases.

The schema is documented in :mod:`phizoo.data.store`. This package never imports
``phizoo.models`` or ``phizoo.train``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .errors import DataError, DataFileNotFoundError
from .store import (SCHEMA, SCHEMA_VERSION, UNITS, DatabaseNotFoundError, IncompleteDatabaseError,
                    SchemaVersionError)
from .store_reader import read_metadata


def __getattr__(name):  # keep `import phizoo.data` free of torch until a dataset is needed
    if name == "LmdbDataset":
        from .dataset import LmdbDataset
        return LmdbDataset
    raise AttributeError(f"module 'phizoo.data' has no attribute {name!r}")


def convert_md22(src: str | Path, dest: str | Path, *, limit: int | None = None, seed: int = 42,
                 train_size: int | None = None, val_fraction: float = 0.05, molecule: str | None = None,
                 train_subsets: Sequence[int] = (), test_only: bool = False, overwrite: bool = False,
                 resume: bool = True, progress: bool = False) -> Path:
    """Convert an MD22 sGDML ``.npz`` file; see :mod:`phizoo.data.md22`. ``test_only``: every frame
    in ``test`` (an independent trajectory to evaluate on; no budget needed)."""
    from .convert import convert
    from .md22 import MD22Source

    source = MD22Source(src, limit=limit, train_size=train_size, val_fraction=val_fraction, molecule=molecule)
    return convert(source, dest, seed=seed, train_subsets=train_subsets, test_only=test_only, overwrite=overwrite,
                   resume=resume, progress=progress)


def convert_oe62(src: str | Path, dest: str | Path, *, limit: int | None = None, seed: int = 42,
                 target: str = "total_energy_pbe0_vac_tier2", charges: str | None = "hirshfeld_pbe",
                 train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
                 train_subsets: Sequence[int] = (), test_only: bool = False,
                 overwrite: bool = False, resume: bool = True, progress: bool = False) -> Path:
    """Convert OE62 ``df_62k.json`` (or df_31k/df_5k); see :mod:`phizoo.data.oe62`."""
    from .convert import convert
    from .oe62 import OE62Source

    source = OE62Source(src, limit=limit, target=target, charges=charges, train_size=train_size, val_size=val_size,
                        test_size=test_size)
    return convert(source, dest, seed=seed, train_subsets=train_subsets, test_only=test_only, overwrite=overwrite,
                   resume=resume, progress=progress)


def convert_qm9(src: str | Path | None, dest: str | Path, *, limit: int | None = None, seed: int = 42,
                train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
                train_subsets: Sequence[int] = (), test_only: bool = False,
                overwrite: bool = False, resume: bool = True, progress: bool = False) -> Path:
    """Convert QM9 from qm9pack's CSVs (``src`` None or "qm9pack": the installed package)."""
    from .convert import convert
    from .qm9 import QM9Source

    source = QM9Source(src, limit=limit, train_size=train_size, val_size=val_size, test_size=test_size)
    return convert(source, dest, seed=seed, train_subsets=train_subsets, test_only=test_only, overwrite=overwrite,
                   resume=resume, progress=progress)


__all__ = ["LmdbDataset", "DataError", "DataFileNotFoundError", "DatabaseNotFoundError", "IncompleteDatabaseError",
           "SchemaVersionError", "SCHEMA", "SCHEMA_VERSION", "UNITS", "read_metadata", "convert_md22",
           "convert_oe62", "convert_qm9"]
