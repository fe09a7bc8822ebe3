"""Build-time pages for the docs site (run by the ``gen-files`` plugin of ``mkdocs build``).

* ``cli.md``: the command-line reference, generated from phizoo's argparse parsers
  (``phizoo.cli.main.build_parser``), so it cannot drift from the code.
* the generated plots of ``benchmarks/results/`` and ``studies/results/`` are copied into the
  site under the same paths, so the generated reports (``LEADERBOARD.md``,
  ``benchmarks/RESULTS.md``), included verbatim by ``pymdownx.snippets``, find their images.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent


def copy_generated_images() -> None:
    for folder in ("benchmarks/results", "studies/results", "docs/figures"):
        for src in sorted((ROOT / folder).rglob("*.png")):
            rel = src.relative_to(ROOT)
            if rel.parts[0] == "docs":
                continue  # already part of the docs
            with mkdocs_gen_files.open(rel.as_posix(), "wb") as f:
                f.write(src.read_bytes())


def subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name), sub


def walk(parser: argparse.ArgumentParser, path: list[str], out: list[str]) -> None:
    subs = list(subcommands(parser))
    level = min(len(path) + 1, 4)
    out.append(f"{'#' * level} `{' '.join(path)}`\n")
    out.append("```text\n" + parser.format_help().rstrip() + "\n```\n")
    for name, _help, sub in subs:
        walk(sub, path + [name], out)


def cli_reference() -> str:
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal width: fix it
    from phizoo.cli.main import build_parser

    parser = build_parser()
    out = ["# Command-line reference\n",
           "Generated at build time from the argparse parsers of `phizoo.cli` "
           "(`phizoo.cli.main.build_parser`); `phizoo <command> --help` prints the same text.\n",
           "Errors are one line, `phizoo: error: <what, where, what to do>`, exit status 2 "
           "(see [Reliability guarantees](reliability.md)).\n"]
    commands = [name for name, _, _ in subcommands(parser)]
    out.append("Commands: " + ", ".join(f"`phizoo {c}`" for c in commands) + ".\n")
    walk(parser, ["phizoo"], out)
    return "\n".join(out)


copy_generated_images()
with mkdocs_gen_files.open("cli.md", "w") as f:
    f.write(cli_reference())
