"""``phizoo`` command line. Every module in ``phizoo.cli`` that defines
``register(subparsers)`` adds its subcommand(s); each sets ``func`` on its parser.

Errors never end in a traceback: phizoo's own errors (bad data, checkpoints, configs, inputs,
divergence), file-system errors and unexpected ones are printed as one line,
``phizoo: error: ...``, with exit status 2 (1 for an unexpected error, whose traceback
``PHIZOO_DEBUG=1`` shows; 130 after Ctrl-C). Warnings print as ``phizoo: warning: ...``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

from .. import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phizoo", description="Equivariant potentials with the Φ-Module")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda i: i.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"{cli.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def check_device(device: str) -> str:
    """``device`` if this machine can use it ("auto", "cpu", "cuda", "cuda:N"); ``ValueError`` otherwise."""
    import torch

    if device == "auto":
        return device
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: phizoo runs on cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}"
                             f"{', a CPU-only build' if torch.version.cuda is None else ', no GPU visible'}); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def check_output_dir(out, option: str = "--output") -> None:
    """Create ``out`` if needed and make sure files can be written there, before any work is done."""
    import tempfile
    from pathlib import Path

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out}: is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as err:
        raise ValueError(f"{option} {out}: cannot write there ({err.strerror or err})") from None


def message(err: BaseException) -> str:
    """One line for an exception: its message (a KeyError's without quotes, an OSError's with the file)."""
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def _show_warning(msg, category, filename, lineno, file=None, line=None) -> None:
    print(f"phizoo: warning: {' '.join(str(msg).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nphizoo: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        if os.environ.get("PHIZOO_DEBUG"):
            raise
        print(f"phizoo: error: {message(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: still one line, with the way to the traceback
        if os.environ.get("PHIZOO_DEBUG"):
            raise
        print(f"phizoo: error: unexpected {type(err).__name__}: {message(err)} (a bug in phizoo? rerun with "
              f"PHIZOO_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
