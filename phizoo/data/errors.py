"""The one exception type of ``phizoo.data``."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input or a bad database: the message names the file, the key or record and the problem.

    Raised for missing/wrong keys, mismatched shapes, non-finite values, unknown elements,
    empty sources, truncated or corrupted LMDB files, incomplete (interrupted) conversions and
    databases written with a newer schema version.
    """


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A source file or database does not exist."""


def check_file(path, what: str = "file"):
    """``Path(path)`` if it is an existing, non-empty regular file; ``DataError`` otherwise."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise DataFileNotFoundError(f"{p}: no such {what}")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a {what}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    return p
