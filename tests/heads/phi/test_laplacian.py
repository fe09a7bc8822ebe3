"""Laplacian construction: the properties the Φ-Module relies on."""
import torch

from phizoo.nn.graph import build_graph, connected_components
from phizoo.heads.phi.laplacian import dense_laplacian, edge_weights, pack_components
from tests.molecules import batch, merged, random_molecule


def _blocks(*mols, cutoff=3.0):
    b = batch(*mols)
    g = build_graph(b.pos, b.batch, cutoff, len(mols))
    return g, pack_components(g.edge_index, g.batch)


def test_combinatorial_laplacian_is_psd_with_constant_null_vector():
    g, blocks = _blocks(random_molecule(10, 1), random_molecule(4, 2))
    L = dense_laplacian(blocks, g.edge_index, edge_weights(g.dist, 3.0))
    torch.testing.assert_close(L, L.transpose(-1, -2))
    ones = blocks.mask.to(L.dtype)[..., None]
    torch.testing.assert_close(L @ ones, torch.zeros_like(ones))
    assert float(torch.linalg.eigvalsh(L).min()) > -1e-12


def test_normalized_laplacian_spectrum_in_0_2():
    g, blocks = _blocks(random_molecule(10, 3))
    L = dense_laplacian(blocks, g.edge_index, edge_weights(g.dist, 3.0), kind="normalized")
    lam = torch.linalg.eigvalsh(L)
    assert float(lam.min()) > -1e-12 and float(lam.max()) < 2 + 1e-12


def test_weights_vanish_smoothly_at_cutoff():
    r = torch.tensor([0.0, 2.999999, 3.0, 3.5], dtype=torch.float64, requires_grad=True)
    for kind in ("cosine", "polynomial"):
        w = edge_weights(r, 3.0, kind)
        (dw,) = torch.autograd.grad(w.sum(), r)
        assert float(w[0]) == 1.0 and float(w[2]) == 0.0 and float(w[3]) == 0.0
        assert abs(float(w[1])) < 1e-10 and abs(float(dw[1])) < 1e-5


def test_components_split_far_apart_fragments_and_isolated_atoms():
    a, b = random_molecule(6, 4), random_molecule(5, 5)
    single = random_molecule(1, 6)
    structure = merged(merged(a, b, [50.0, 0, 0]), single, [-50.0, 0, 0])
    g, blocks = _blocks(structure, random_molecule(3, 7))
    assert blocks.num_components == 4
    assert blocks.sizes.tolist() == [6, 5, 1, 3]
    assert blocks.comp_graph.tolist() == [0, 0, 0, 1]
    x = torch.randn(structure.z.numel() + 3, 2)
    torch.testing.assert_close(blocks.from_dense(blocks.to_dense(x)), x)


def test_connected_components_labels_follow_atom_order():
    ei = torch.tensor([[3, 4, 0, 1], [4, 3, 1, 0]])
    labels, n = connected_components(ei, 5)
    assert n == 3 and labels.tolist() == [0, 0, 1, 2, 2]
