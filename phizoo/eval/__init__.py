"""Evaluation: plain metrics (metrics.py), figures (plots.py), leaderboards (leaderboard.py).

``phizoo.eval.evaluate(model, dataset, indices)`` -> metrics in meV;
``phizoo.eval.leaderboard(checkpoints, dataset, ...)`` -> list of dicts (one per model).
"""
from .metrics import evaluate  # noqa: F401
from .leaderboard import leaderboard, markdown_table, write_leaderboard  # noqa: F401  (function shadows module)
from .plots import leaderboard_chart, parity_plot  # noqa: F401
