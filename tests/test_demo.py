"""``make demo`` pieces on the shipped weights (the live leaderboard is covered by the shipped-weights
and leaderboard tests)."""
import re

import numpy as np
import phizoo
from phizoo import demo


def test_demo_properties_and_md(capsys):
    model = phizoo.load_model("visnet", phi=True)
    demo.properties(model, "Φ-ViSNet")
    out = capsys.readouterr().out
    energy = float(re.search(r"E = (-?\d+\.\d+) eV", out).group(1))
    # ethanol: QM9 molecule 14 (CCO), B3LYP U0 = -154.972731 Ha = -4217.08 eV; ase.build's geometry
    # is close to, not at, the B3LYP minimum
    assert abs(energy - (-154.972731 * 27.211386)) < 0.5
    assert "net charge" in out
    demo.short_md(phizoo.load_model("visnet", phi=True, pretrained="md22-xtb-ac-ala3"), steps=40)
    out = capsys.readouterr().out
    drift = float(re.search(r"drift ([+-]\d+\.\d+) meV", out).group(1))
    assert np.isfinite(drift) and abs(drift) < 20.0  # 20 fs of NVE at 0.5 fs: energy is conserved
