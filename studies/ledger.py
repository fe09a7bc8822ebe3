"""The studies' committed record of finished runs.

``runs/`` (checkpoints, trainer states, logs) is not committed and does not survive a fresh
checkout; what a finished run measured is small and is. Each driver writes a finished run's result
both into its run directory and under ``studies/results/ledger/<study>/``; a run recorded there is
done (not retrained), and the reports read their numbers from there:

* ``ledger/zoo/<dataset>/<model>-<base|phi>-s<seed>.json``: the run's final card (``best.json``,
  test metrics included); a seed-0 run's weights are its published copy in ``pretrained/``;
* ``ledger/long_range/<task>/<model>-<variant>-n<N>-s<seed>.json``: its ``eval.json``, and
  ``<same name>.nve.json`` its NVE result.
"""
from __future__ import annotations

import json
from pathlib import Path

LEDGER = Path(__file__).resolve().parent / "results" / "ledger"


def write_json(path: Path, obj, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a partial file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None
