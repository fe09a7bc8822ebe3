"""phizoo's MACE-like backbone vs mace-torch's MACE, side by side (see ``peer_bench.py``).

mace-torch pins e3nn 0.4.4 and phizoo needs e3nn >= 0.5, so mace-torch runs in its own virtual
environment, ``benchmarks/.venvs/mace``, which this script creates on first use
(``pip install torch==2.13.0`` first, then ``mace-torch==0.3.16``; torch is checked afterwards).
A worker process in that environment and one in phizoo's are timed alternately on the same
structures and neighbour list (energy + forces for 1 and 16 structures of 42, 118 and 378 atoms,
one training step), matched hyperparameters, float32, same thread count.

    python benchmarks/mace_peer_compare.py             # full
    python benchmarks/mace_peer_compare.py --quick
    python benchmarks/mace_peer_compare.py --mace-python /path/to/venv/bin/python   # an existing mace-torch env

Any other option of ``peer_bench.py`` is passed on. Writes ``benchmarks/results/peer_mace.json`` and
regenerates ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_bench  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--mace-python" in argv:  # the option of the earlier version of this script
        argv[argv.index("--mace-python")] = "--peer-python"
    sys.exit(peer_bench.main(["--peers", "mace", *argv]))
