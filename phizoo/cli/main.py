"""``phizoo`` command line. Every module in ``phizoo.cli`` that defines
``register(subparsers)`` adds its subcommand(s); each sets ``func`` on its parser."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"phizoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
