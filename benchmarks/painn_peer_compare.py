"""phizoo's PaiNN vs schnetpack's PaiNN, side by side (see ``peer_bench.py``).

schnetpack runs in its own virtual environment, ``benchmarks/.venvs/schnetpack``, created here on
first use: ``pip install torch==2.13.0`` first, then ``schnetpack==2.1.1`` without its declared
dependencies (it pins sympy <= 1.12, which torch 2.13 cannot use) and the packages its model code
imports; torch is checked afterwards. schnetpack 2.1 imports ``T_co`` from torch's dataloader
module, gone since torch 2.6: the worker defines it before importing schnetpack.

    python benchmarks/painn_peer_compare.py [--quick] [other peer_bench.py options]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(peer_bench.main(["--peers", "painn", *sys.argv[1:]]))
