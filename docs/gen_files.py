"""Build-time pages for the docs site (run by the ``gen-files`` plugin of ``mkdocs build``).

* ``cli.md``: the command-line reference, generated from phizoo's argparse parsers
  (``phizoo.cli.main.build_parser``), so it cannot drift from the code.
* ``pretrained.md``: the page on disk with its table of shipped checkpoints regenerated from
  ``pretrained/manifest.json`` and the model cards (between the ``pretrained-table`` markers).
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


def _schedule(card: dict) -> str:
    """"cosine" (a fixed epoch budget), "to plateau" (stopped at the validation plateau) or
    "plateau, capped" (the epoch budget ran out first)."""
    if card["hyperparameters"]["schedule"].get("type", "cosine") != "plateau":
        return "cosine"
    return "to plateau" if card["training"].get("stopped") == "validation plateau" else "plateau, capped"


def pretrained_table() -> str:
    """One row per manifest entry: test errors, parameters, epochs (and schedule) and training time from its card;
    ``Φ`` says which formulation the weights use, ``Coulomb head`` its correction and charge training; ``status`` is the manifest's ``stale`` mark, if any."""
    import json

    manifest = json.loads((ROOT / "pretrained" / "manifest.json").read_text())
    rows = ["| id | backbone | Φ | Coulomb head | parameters | test energy MAE (meV) | test force MAE (meV/Å) | "
            "epochs (schedule) | training (min, 1 CPU thread) | status |", "|---|---|---|---|---:|---:|---:|---|---:|---|"]
    for e in sorted(manifest["checkpoints"], key=lambda e: (e["dataset"] != "qm9", e["model"], e["phi"])):
        card = json.loads((ROOT / "pretrained" / e["card"]).read_text())
        test = card["metrics"]["test"]
        forces = test.get("forces_mae_meV_per_A")
        phi = "–"
        if e["phi"]:
            opts = card["spec"].get("phi_options", {})
            phi = opts.get("formulation", "paper" if "k" in opts else "continuous")
        coulomb = "–"
        if card["spec"].get("coulomb"):
            loss = card["hyperparameters"]["loss"]
            coulomb = (f"{card['spec']['coulomb_options']['correction']} correction, "
                       f"{'supervised' if loss.get('charges') or loss.get('dipole') else 'latent'} charges")
        rows.append(f"| `{e['id']}` | {e['model']} | {phi} | {coulomb} | {card['num_parameters']:,} | "
                    f"{test['energy_mae_meV']:.1f} | {'–' if forces is None else f'{forces:.1f}'} | "
                    f"{card['training']['epochs_completed']} ({_schedule(card)}) | {card['training']['time_s'] / 60:.1f} | "
                    f"{'stale: ' + e['stale'] if e.get('stale') else 'current'} |")
    return "\n".join(rows) + "\n"


def pretrained_page() -> str:
    text = (ROOT / "docs" / "pretrained.md").read_text()
    start, end = "<!-- pretrained-table:start -->", "<!-- pretrained-table:end -->"
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + pretrained_table() + text[b:]


copy_generated_images()
with mkdocs_gen_files.open("pretrained.md", "w") as f:
    f.write(pretrained_page())
with mkdocs_gen_files.open("cli.md", "w") as f:
    f.write(cli_reference())
