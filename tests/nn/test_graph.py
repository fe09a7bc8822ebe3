"""Neighbour lists: both backends give the same edges as a brute-force reference."""
import itertools

import numpy as np
import pytest
import torch

from phizoo.nn import graph
from tests.molecules import batch, random_molecule


def brute_force(pos, r, batch_vec):
    edges = set()
    for i, j in itertools.permutations(range(pos.shape[0]), 2):
        if batch_vec[i] == batch_vec[j] and float(torch.linalg.norm(pos[i] - pos[j])) <= r:
            edges.add((j, i))
    return edges


def as_set(edge_index):
    return set(map(tuple, edge_index.T.tolist()))


@pytest.mark.parametrize("seed", range(4))
def test_torch_backend_matches_brute_force(seed):
    mols = [random_molecule(n, seed + 10 * n) for n in (1, 5, 17, 9)]
    b = batch(*mols)
    ei = graph.radius_graph(b.pos, 3.0, b.batch, backend="torch", block=7)  # small blocks: exercise windows
    assert as_set(ei) == brute_force(b.pos, 3.0, b.batch)
    assert as_set(ei) == as_set(ei.flip(0))  # symmetric


@pytest.mark.skipif(not graph.has_torch_cluster(), reason="torch_cluster not installed")
@pytest.mark.parametrize("batched", [False, True])
def test_backends_identical(batched):
    rng = np.random.default_rng(0)
    for trial in range(5):
        mols = [random_molecule(int(n), 100 * trial + i) for i, n in enumerate(rng.integers(1, 60, size=4 if batched else 1))]
        b = batch(*mols)
        a = graph.radius_graph(b.pos, 4.0, b.batch, backend="torch")
        c = graph.radius_graph(b.pos, 4.0, b.batch, backend="torch_cluster")
        assert torch.equal(a, c)


@pytest.mark.skipif(not graph.has_torch_cluster(), reason="torch_cluster not installed")
def test_torch_cluster_never_truncates_dense_clusters():
    pos = torch.randn(200, 3, dtype=torch.float64) * 0.8  # ~all pairs within 6 Å
    bvec = torch.zeros(200, dtype=torch.long)
    a = graph.radius_graph(pos, 6.0, bvec, backend="torch")
    c = graph.radius_graph(pos, 6.0, bvec, backend="torch_cluster")
    assert torch.equal(a, c)


def test_auto_backend_and_errors():
    b = batch(random_molecule(6, 1))
    auto = graph.radius_graph(b.pos, 3.0, b.batch)
    assert torch.equal(auto, graph.radius_graph(b.pos, 3.0, b.batch, backend="torch"))
    with pytest.raises(ValueError, match="backend"):
        graph.radius_graph(b.pos, 3.0, b.batch, backend="kdtree")
    with pytest.raises(ValueError, match="sorted"):
        graph.radius_graph(b.pos, 3.0, torch.tensor([1, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        graph.radius_graph(b.pos[:, :2], 3.0, b.batch)
