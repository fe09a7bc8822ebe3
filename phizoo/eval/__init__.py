"""Evaluation: plain metrics (metrics.py), figures (plots.py), leaderboards (leaderboard.py).

``phizoo.eval.evaluate(model, dataset, indices)`` -> metrics in meV (plus charges in e and dipoles
in e·Å for models with a Coulomb head on data with reference charges / dipoles);
``phizoo.eval.leaderboard(checkpoints, dataset, ...)`` -> list of dicts (one per model);
``phizoo.eval.nve_stability(model, atoms, ...)`` -> energy conservation of velocity-Verlet MD (nve.py).
"""
from .metrics import evaluate  # noqa: F401
from .leaderboard import leaderboard, markdown_table, write_leaderboard  # noqa: F401  (function shadows module)
from .nve import nve_stability  # noqa: F401
from .plots import charge_parity_plot, dipole_parity_plot, leaderboard_chart, parity_plot  # noqa: F401
