"""phizoo's ViSNet vs torch_geometric's ViSNet, side by side (see ``peer_bench.py``).

PyG is one of phizoo's own dependencies, so the peer worker runs in phizoo's environment (still a
separate process, timed alternately with phizoo's). PyG 2.8's ``radius_graph`` needs pyg-lib, which
is not installable here; the worker substitutes ``torch_cluster.radius_graph`` (as
tests/models/test_visnet.py does) with ``max_num_neighbors`` above the largest neighbour count.

    python benchmarks/visnet_peer_compare.py [--quick] [other peer_bench.py options]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(peer_bench.main(["--peers", "visnet", *sys.argv[1:]]))
