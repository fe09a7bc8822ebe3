"""E2GNN-specific tests: the virtual node (scope, isolation, global reach), the layer's
equivariance on vector features, the torch connected-components routine, parameters."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

import phizoo
from phizoo.models.e2gnn import E2GNN, E2GNNLayer, VirtualNodes
from phizoo.nn.graph import build_graph, connected_components, radius_graph
from tests.molecules import batch, merged, random_molecule, random_orthogonal

TEST_KW = dict(hidden_channels=16, num_layers=2, num_rbf=8, cutoff=4.0)


def scipy_components(edge_index, n):
    """Reference labelling with scipy, relabelled by first atom."""
    import numpy as np
    import scipy.sparse
    import scipy.sparse.csgraph

    ei = edge_index.numpy()
    adj = scipy.sparse.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    c, labels = scipy.sparse.csgraph.connected_components(adj, directed=False)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(c, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(c)
    return torch.as_tensor(rank[labels]), int(c)


def backbone(seed=0, **kw):
    torch.manual_seed(seed)
    model = E2GNN(**{**TEST_KW, **kw}).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def features(model, data):
    b = data if isinstance(data, Batch) else batch(data)
    graph = build_graph(b.pos.double(), b.batch, model.cutoff, int(b.num_graphs))
    return model(b.z, graph)


def chain(n, spacing=1.4):
    """A zig-zag chain: connected, with a hop diameter of ~n (far beyond 2 layers x cutoff)."""
    pos = torch.tensor([[spacing * i, 0.3 * (i % 2), 0.0] for i in range(n)], dtype=torch.float64)
    return Data(z=torch.full((n,), 6, dtype=torch.long), pos=pos)


# ---------------------------------------------------------------- connected components

@pytest.mark.parametrize("seed", range(4))
def test_components_match_scipy(seed):
    g = torch.Generator().manual_seed(seed)
    n = 60
    pos = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([40.0, 6.0, 6.0], dtype=torch.float64)
    ei = radius_graph(pos, 2.5)
    ours, c_ours = connected_components(ei, n)
    ref, c_ref = scipy_components(ei, n)
    assert c_ours == c_ref
    # same partition, and both label components in order of their first atom
    assert torch.equal(ours, ref)


def test_components_long_chain_and_isolated():
    n = 300
    pos = torch.zeros(n, 3, dtype=torch.float64)
    pos[:250, 0] = torch.arange(250, dtype=torch.float64) * 1.5  # one long chain (diameter 249 hops)
    pos[250:, 0] = 1000.0 + torch.arange(50, dtype=torch.float64) * 10.0  # 50 isolated atoms
    comp, c = connected_components(radius_graph(pos, 1.6), n)
    assert c == 51
    assert bool((comp[:250] == 0).all()) and torch.equal(comp[250:], torch.arange(1, 51))
    comp, c = connected_components(torch.zeros(2, 0, dtype=torch.long), 5)
    assert c == 5 and torch.equal(comp, torch.arange(5))


# ---------------------------------------------------------------- the virtual node

def test_virtual_node_reaches_the_whole_component():
    """Within one connected component the virtual node couples atoms far beyond the
    message-passing range (2 layers x 4 Å); without it they are independent."""
    mol = chain(20)  # 26.6 Å long
    mod = chain(20)
    mod.z = mod.z.clone()
    mod.z[-1] = 8
    for mode, coupled in (("screened", True), ("component", True), ("molecule", True), ("none", False)):
        model = backbone(virtual_node=mode)
        a = features(model, mol).features[0]
        b = features(model, mod).features[0]
        assert (not torch.allclose(a, b, atol=1e-10, rtol=0)) == coupled, mode


def test_virtual_node_per_component_is_size_consistent_per_molecule_is_not():
    a, b = random_molecule(8, 8), random_molecule(6, 9)
    both = merged(a, b, [100.0, 0.0, 0.0])
    for mode, separable in (("screened", True), ("component", True), ("molecule", False), ("none", True)):
        model = backbone(virtual_node=mode)
        fa, fb, fab = features(model, a).features, features(model, b).features, features(model, both).features
        same = torch.allclose(fab, torch.cat([fa, fb]), atol=1e-10, rtol=0)
        assert same == separable, mode


def test_virtual_nodes_isolate_molecules_of_a_batch():
    """Changing molecule B in a batch changes nothing for molecule A (both VN modes)."""
    a, b = random_molecule(7, 1), random_molecule(5, 2)
    b2 = random_molecule(9, 3)
    for mode in ("screened", "component", "molecule"):
        model = backbone(virtual_node=mode)
        f1 = features(model, batch(a, b)).layer_features
        f2 = features(model, batch(a, b2)).layer_features
        for l1, l2 in zip(f1, f2):
            torch.testing.assert_close(l1[:7], l2[:7], atol=1e-12, rtol=0)


def test_screened_virtual_node_tends_to_the_component_mean():
    """μ_v → 0: the screened diffusion μ(L + μ)⁻¹h becomes the mean over the connected component,
    so the screened model approaches the per-component one (same weights)."""
    data = batch(random_molecule(7, 1), random_molecule(5, 2))
    model_c = backbone(virtual_node="component")
    ref = features(model_c, data).features
    errors = []
    for mu in (1e-2, 1e-4, 1e-6):
        model_s = E2GNN(**TEST_KW, virtual_node="screened", virtual_node_mu=mu).double().eval()
        model_s.load_state_dict(model_c.state_dict())
        errors.append(float((features(model_s, data).features - ref).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4, errors


def test_component_mode_equals_molecule_mode_on_connected_molecules():
    model_c = backbone(virtual_node="component")
    model_m = E2GNN(**TEST_KW, virtual_node="molecule").double().eval()
    model_m.load_state_dict(model_c.state_dict())
    data = batch(random_molecule(7, 1), random_molecule(5, 2), random_molecule(9, 3))
    torch.testing.assert_close(features(model_c, data).features, features(model_m, data).features, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- the layer

def test_layer_is_equivariant_on_vectors():
    """Rotating positions, atom vectors and virtual-node vectors rotates the output vectors and
    leaves scalars unchanged (rotoreflection included: vectors here are polar)."""
    torch.manual_seed(0)
    F, n = 8, 7
    layer = E2GNNLayer(F).double()
    mol = random_molecule(n, 4)
    x, vec = torch.randn(n, F, dtype=torch.float64), torch.randn(n, 3, F, dtype=torch.float64)
    gx, gvec = torch.randn(1, F, dtype=torch.float64), torch.randn(1, 3, F, dtype=torch.float64)
    comp = torch.zeros(n, dtype=torch.long)

    def run(pos, vec, gvec):
        g = build_graph(pos, comp, 4.0, 1)
        vn = VirtualNodes("molecule", g, g.dist, 0.0)
        filt = torch.randn(g.dist.shape[0], 3 * F, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return layer(x, vec, gx, gvec, vn, filt, -g.vec / g.dist[:, None], g.src, g.dst)

    R = random_orthogonal(5, reflect=True)
    ref = run(mol.pos, vec, gvec)
    rot = run(mol.pos @ R.T, torch.einsum("ab,nbf->naf", R, vec), torch.einsum("ab,nbf->naf", R, gvec))
    torch.testing.assert_close(rot[0], ref[0])
    torch.testing.assert_close(rot[2], ref[2])
    torch.testing.assert_close(rot[1], torch.einsum("ab,nbf->naf", R, ref[1]))
    torch.testing.assert_close(rot[3], torch.einsum("ab,nbf->naf", R, ref[3]))


def test_edges_at_the_cutoff_carry_nothing():
    """The envelope multiplies the whole filter (bias included): a neighbour exactly at the
    cutoff changes no feature (same component, so only the message could differ)."""
    model = backbone()
    mol = chain(4)
    g = build_graph(mol.pos, torch.zeros(4, dtype=torch.long), model.cutoff, 1)
    out = model(mol.z, g).features
    rc = model.cutoff
    g.dist = g.dist.clone()
    far = (g.src == 0) & (g.dst == 1) | (g.src == 1) & (g.dst == 0)
    g.dist[far] = rc  # pretend the 0-1 bond sits at the cutoff (direction unchanged)
    out_rc = model(mol.z, g).features
    g.edge_index, g.vec, g.dist = g.edge_index[:, ~far], g.vec[~far], g.dist[~far]
    out_cut = model(mol.z, g).features
    torch.testing.assert_close(out_rc, out_cut, atol=1e-12, rtol=0)
    assert not torch.allclose(out, out_rc)


# ---------------------------------------------------------------- shapes and parameters

def test_shapes_and_every_parameter_is_used():
    model = phizoo.build_model("e2gnn", preset="test", dtype=torch.float64).train()
    data = batch(random_molecule(6, 1), random_molecule(4, 2))
    out = model.backbone(data.z, build_graph(data.pos, data.batch, model.cutoff, 2))
    assert out.features.shape == (10, 16)
    assert [f.shape for f in out.layer_features] == [(10, 16), (10, 16)]
    assert model.backbone.layer_feature_dims == [16, 16]
    r = model(data)
    (r["energy"].sum() + r["forces"].pow(2).sum()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused  # no dead weights (the last layer builds no virtual-node update)


def test_isolated_atom_zero_vectors_have_finite_gradients():
    model = phizoo.build_model("e2gnn", preset="test", dtype=torch.float32).train()
    data = batch(random_molecule(1, 3))
    model(data)["energy"].sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_options_are_validated():
    with pytest.raises(ValueError, match="virtual_node"):
        E2GNN(**TEST_KW, virtual_node="global")
    none = E2GNN(**TEST_KW, virtual_node="none")
    full = E2GNN(**TEST_KW)
    assert not any("vn" in n for n, _ in none.named_parameters())
    assert sum(p.numel() for p in full.parameters()) > sum(p.numel() for p in none.parameters())
