"""Tests specific to the MACE-like backbone: irreps equivariance of intermediate features, the
fused kernels against e3nn's tensor products, body order of the product basis, element handling."""
from __future__ import annotations

import math

import pytest
import torch
from e3nn import o3

import phizoo
from phizoo.models.mace import MACE
from phizoo.models.mace_blocks import SymmetricProductBasis, natural_irreps
from phizoo.nn.fused_tp import ChannelwiseTP, EdgeTensorProduct, from_ir_mul, to_ir_mul
from phizoo.nn.graph import Graph, build_graph
from tests.molecules import batch, random_molecule, random_orthogonal

SMALL = dict(num_channels=4, max_ell=3, hidden_l=1, correlation=3, num_layers=2, num_bessel=4, cutoff=4.0,
             radial_mlp=[8], avg_num_neighbors=5.0, element_dim=4)


def backbone(dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    return MACE(**{**SMALL, **kw}).to(dtype)


def graph_of(mol, cutoff, pos=None):
    pos = mol.pos if pos is None else pos
    b = torch.zeros(pos.shape[0], dtype=torch.long)
    return build_graph(pos, b, cutoff, 1)


# e3nn's D_from_matrix is accurate to ~1e-7 even in float64 (its Wigner-D constants), so the
# equivariance checks of irreps features use that tolerance; a broken equivariance is O(1).
D_TOL = dict(atol=1e-6, rtol=1e-5)


def layer_outputs(model, z, graph):
    """Irreps features after every layer (hidden irreps in between, scalars after the last)."""
    outs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append(o)) for layer in model.layers]
    model(z, graph)
    for h in hooks:
        h.remove()
    return outs


# ---------------------------------------------------------------- shapes and layout

def test_shapes_and_feature_dims():
    model = backbone()
    mol = random_molecule(7, seed=1)
    out = model(mol.z, graph_of(mol, model.cutoff))
    K, T = SMALL["num_channels"], SMALL["num_layers"]
    assert model.feature_dim == K * T and model.layer_feature_dims == [K] * T
    assert out.features.shape == (7, K * T)
    assert [f.shape for f in out.layer_features] == [(7, K)] * T
    assert str(model.irreps_a) == f"{K}x0e+{K}x1o+{K}x2e+{K}x3o"
    assert [str(layer.irreps_out) for layer in model.layers] == [f"{K}x0e+{K}x1o", f"{K}x0e"]


def test_ir_mul_layout_roundtrip():
    irreps = natural_irreps(3, 2)
    x = torch.randn(5, irreps.dim)
    y = to_ir_mul(x, irreps)
    assert y.shape == (5, 9, 3)
    torch.testing.assert_close(y[:, 1:4, 2], x[:, 3 + 2 * 3:3 + 3 * 3])  # l=1 block, channel 2
    torch.testing.assert_close(from_ir_mul(y, irreps), x)


# ---------------------------------------------------------------- equivariance of intermediate irreps

@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "rotoreflection"])
def test_intermediate_features_are_equivariant(reflect):
    model = backbone()
    mol = random_molecule(8, seed=2)
    R = random_orthogonal(5, reflect=reflect)
    ref = layer_outputs(model, mol.z, graph_of(mol, model.cutoff))
    rot = layer_outputs(model, mol.z, graph_of(mol, model.cutoff, mol.pos @ R.T))
    for layer, a, b in zip(model.layers, ref, rot):
        D = layer.irreps_out.D_from_matrix(R)
        torch.testing.assert_close(b, a @ D.T, **D_TOL)
    # the hidden features really carry l = 1 information (non-trivial test)
    K = SMALL["num_channels"]
    assert ref[0][:, K:].abs().max() > 1e-3


def test_one_particle_basis_is_equivariant():
    model = backbone()
    layer = model.layers[1]
    mol = random_molecule(8, seed=3)
    R = random_orthogonal(6, reflect=True)
    captured = []
    hook = layer.product.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    model(mol.z, graph_of(mol, model.cutoff))
    model(mol.z, graph_of(mol, model.cutoff, mol.pos @ R.T))
    hook.remove()
    D = model.irreps_a.D_from_matrix(R)
    torch.testing.assert_close(captured[1], captured[0] @ D.T, **D_TOL)
    assert captured[0][:, -7 * SMALL["num_channels"]:].abs().max() > 1e-4  # l = 3 part present


# ---------------------------------------------------------------- fused kernels == e3nn
# e3nn's tensor products keep their Clebsch-Gordan buffers in the dtype they were built in (a
# float32-built module converted to float64 has float32-rounded coefficients; the fused kernels keep
# exact float64 masters), so the reference modules are built with float64 as the default dtype.

@pytest.fixture
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_fused_model_equals_e3nn_tensor_products(float64_default):
    fused, ref = backbone(seed=4), backbone(seed=4, fused=False)
    ref.load_state_dict(fused.state_dict())
    mols = batch(random_molecule(9, seed=5), random_molecule(6, seed=6))
    pos = mols.pos.clone().requires_grad_(True)
    g = build_graph(pos, mols.batch, fused.cutoff, 2)
    e1 = fused(mols.z, g).features.sum()
    e2 = ref(mols.z, g).features.sum()
    f1, f2 = (torch.autograd.grad(e, pos, retain_graph=True)[0] for e in (e1, e2))
    torch.testing.assert_close(e1, e2, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(f1, f2, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("separate", [False, True], ids=["summed-paths", "separate-paths"])
def test_edge_tensor_product_matches_e3nn(float64_default, separate):
    torch.manual_seed(7)
    irreps_in, sh = natural_irreps(3, 1), o3.Irreps.spherical_harmonics(3)
    conv = EdgeTensorProduct(irreps_in, sh, natural_irreps(3, 3), separate_paths=separate).double()
    N, E = 5, 12
    x = torch.randn(N, irreps_in.dim, dtype=torch.float64)
    y = o3.spherical_harmonics(sh, torch.randn(E, 3, dtype=torch.float64), normalize=True, normalization="component")
    w = torch.randn(E, conv.weight_numel, dtype=torch.float64)
    src, dst = torch.randint(0, N, (E,)), torch.randint(0, N, (E,))
    got = from_ir_mul(conv(to_ir_mul(x, irreps_in), y, w, src, dst, N), conv.irreps_out)
    want = torch.zeros(N, conv.irreps_out.dim, dtype=torch.float64).index_add_(0, dst, conv.tp(x[src], y, w))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_separate_paths_summed_per_irrep_equal_the_summed_product(float64_default):
    """mace-torch's layout (one slot per coupling path) carries the same terms as phizoo's default
    (paths into one irrep summed on the edge): adding up the slots of each irrep gives it back."""
    torch.manual_seed(8)
    irreps_in, sh, out = natural_irreps(3, 1), o3.Irreps.spherical_harmonics(2), natural_irreps(3, 2)
    summed, separate = EdgeTensorProduct(irreps_in, sh, out), EdgeTensorProduct(irreps_in, sh, out, separate_paths=True)
    assert separate.irreps_out.num_irreps == 3 * summed.num_paths and separate.weight_numel == summed.weight_numel
    N, E = 4, 10
    x = to_ir_mul(torch.randn(N, irreps_in.dim), irreps_in)
    y = o3.spherical_harmonics(sh, torch.randn(E, 3), normalize=True, normalization="component")
    w = torch.randn(E, summed.weight_numel)
    src, dst = torch.randint(0, N, (E,)), torch.randint(0, N, (E,))
    # e3nn's "element" path normalisation divides a summed irrep by √(paths into it); undo that
    got = from_ir_mul(separate(x, y, w, src, dst, N), separate.irreps_out)
    want = from_ir_mul(summed(x, y, w, src, dst, N), out)
    slots = separate.irreps_out.slices()
    for i, (_, ir) in enumerate(out):
        parts = [got[:, slots[p]] for p, (_, irp) in enumerate(separate.irreps_out) if irp == ir]
        torch.testing.assert_close(sum(parts) / len(parts) ** 0.5, want[:, out.slices()[i]], atol=1e-12, rtol=1e-12)


def test_fused_kernels_keep_exact_cg_after_float32_to_float64():
    torch.manual_seed(3)
    model = MACE(**SMALL)  # built in float32
    model = model.double()
    for layer in model.layers:
        assert torch.equal(layer.conv.g, layer.conv._g64)
        final = layer.product.fused_final
        assert all(torch.equal(getattr(final, f"mat_{g}"), m) for g, m in enumerate(final._mats64))
    model = model.float().double()
    assert torch.equal(model.layers[0].conv.g, model.layers[0].conv._g64)


def test_channelwise_tp_matches_e3nn(float64_default):
    pb = SymmetricProductBasis(natural_irreps(2, 3), natural_irreps(2, 1), 3, attr_dim=3)
    a = torch.randn(4, pb.irreps_a.dim, dtype=torch.float64)
    attr = torch.randn(4, 3, dtype=torch.float64)
    got = pb(a, attr)
    pb.fused = False
    torch.testing.assert_close(got, pb(a, attr), atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError):
        ChannelwiseTP(o3.FullyConnectedTensorProduct("2x0e", "2x0e", "2x0e"))


# ---------------------------------------------------------------- the product basis

def test_dropped_couplings_vanish_on_symmetric_input():
    """Sym(A ⊗ A) keeps l1 <= l2 and, for l1 == l2, the symmetric couplings only: the others vanish."""
    irreps = natural_irreps(3, 3)
    instr, outs = [], []
    for i1, (_, ir1) in enumerate(irreps):
        for ir in ir1 * ir1:
            instr.append((i1, i1, len(outs), "uuu", False))
            outs.append((3, ir))
    tp = o3.TensorProduct(irreps, irreps, o3.Irreps(outs), instr).double()
    a = torch.randn(6, irreps.dim, dtype=torch.float64)
    out = tp(a, a)
    for (_, ir_out), ins, sl in zip(outs, instr, tp.irreps_out.slices()):
        norm = out[:, sl].abs().max()
        assert (norm < 1e-12) == (ir_out.l % 2 == 1), (irreps[ins[0]], ir_out, float(norm))


def _product_along_ray(pb, a, attr, scales):
    return torch.stack([pb(s * a, attr) for s in scales])


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_product_basis_is_polynomial_of_degree_correlation(correlation):
    """B(sA) is a polynomial in s of degree exactly ν: body order ν + 1 per layer (4 for ν = 3)."""
    torch.manual_seed(8)
    pb = SymmetricProductBasis(natural_irreps(3, 3), natural_irreps(3, 1), correlation, attr_dim=2).double()
    a = torch.randn(5, pb.irreps_a.dim, dtype=torch.float64)
    attr = torch.randn(5, 2, dtype=torch.float64)
    scales = torch.arange(-3, 4, dtype=torch.float64)  # 7 points: fits degree <= 6 exactly
    f = _product_along_ray(pb, a, attr, scales)  # [7, N, D]
    V = torch.vander(scales, 7, increasing=True)
    coef = torch.linalg.solve(V, f.reshape(7, -1)).reshape(7, *f.shape[1:])
    scale = f.abs().max()
    assert coef[0].abs().max() < 1e-10 * scale  # no constant: B = 0 without neighbours
    assert coef[correlation + 1:].abs().max() < 1e-9 * scale
    assert coef[correlation].abs().max() > 1e-3 * coef[1].abs().max()
    assert pb.num_paths.keys() == set(range(1, correlation + 1))


def _star(angle: float, dtype=torch.float64):
    """Centre atom 0 with two neighbours at 1.2 Å; only neighbour -> centre edges (no 1-2 edge)."""
    r = 1.2
    pos = torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0], [r * math.cos(angle), r * math.sin(angle), 0.0]], dtype=dtype)
    edge_index = torch.tensor([[1, 2], [0, 0]])
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    return Graph(edge_index=edge_index, vec=vec, dist=vec.norm(dim=-1), batch=torch.zeros(3, dtype=torch.long),
                 num_graphs=1)


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_three_body_angle_sensitivity(correlation):
    """With only the two bonds to the centre, a correlation-1 layer sees two distances (a 2-body
    function) and cannot tell 60° from 120°; correlation >= 2 (>= 3-body) can."""
    model = backbone(num_layers=1, correlation=correlation)
    z = torch.tensor([6, 1, 1])
    f60 = model(z, _star(math.pi / 3)).features[0]
    f120 = model(z, _star(2 * math.pi / 3)).features[0]
    diff = float((f60 - f120).abs().max())
    if correlation == 1:
        assert diff < 1e-12
    else:
        assert diff > 1e-6


# ---------------------------------------------------------------- elements

def test_onehot_elements_and_unknown_element():
    model = backbone(elements=[1, 6, 8])
    mol = random_molecule(5, seed=9)
    mol.z = torch.tensor([1, 6, 8, 6, 1])
    out = model(mol.z, graph_of(mol, model.cutoff))
    assert torch.isfinite(out.features).all()
    with pytest.raises(ValueError, match=r"\[7\]"):
        model(torch.tensor([1, 7, 8, 6, 1]), graph_of(mol, model.cutoff))


def test_element_dependent_weights():
    """Swapping the element of an atom changes its product-basis weights (and features)."""
    model = backbone(elements=[1, 6, 8])
    mol = random_molecule(5, seed=10)
    z1, z2 = torch.tensor([1, 6, 8, 6, 1]), torch.tensor([1, 6, 8, 8, 1])
    g = graph_of(mol, model.cutoff)
    assert not torch.allclose(model(z1, g).features[3], model(z2, g).features[3])


def test_isolated_atom_has_no_geometry_dependence():
    model = backbone()
    pos = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    g = build_graph(pos, torch.zeros(1, dtype=torch.long), model.cutoff, 1)
    out = model(torch.tensor([8]), g)
    assert out.features.shape == (1, 2 * SMALL["num_channels"]) and torch.isfinite(out.features).all()


def test_registered_presets_build():
    for preset in ("test", "cpu"):
        m = phizoo.build_model("mace", preset=preset)
        assert m.backbone.layer_feature_dims == [m.backbone.num_channels] * m.backbone.num_layers


# ---------------------------------------------------------------- data statistics and layer structure

def _brute_force_avg_neighbors(mols, cutoff):
    edges = sum(int(((torch.cdist(m.pos, m.pos) <= cutoff).sum() - m.pos.shape[0])) for m in mols)
    return edges / sum(m.pos.shape[0] for m in mols)


def test_avg_num_neighbors_fitted_and_saved_with_the_weights():
    """``fit_data_statistics`` = Σ edges / Σ atoms within the cutoff (brute force here), stored as a
    buffer (in the state dict), and the energy depends on it as 1/avg in each layer's A."""
    from phizoo.train.references import apply_references

    mols = [random_molecule(n, seed=40 + n) for n in (3, 7, 12)]
    for m in mols:
        m.energy = torch.tensor([-float(m.z.sum())], dtype=torch.float64)
    model = phizoo.build_model("mace", preset="test", dtype=torch.float64)
    info = apply_references(model, mols, [0, 1, 2])
    expected = _brute_force_avg_neighbors(mols, model.cutoff)
    assert expected > 2.0 and info["avg_num_neighbors"] == pytest.approx(expected, rel=1e-12)
    assert float(model.backbone.avg_num_neighbors) == pytest.approx(expected, rel=1e-12)
    state = model.state_dict()
    assert float(state["backbone.avg_num_neighbors"]) == pytest.approx(expected, rel=1e-12)
    fresh = phizoo.build_model("mace", preset="test", dtype=torch.float64)
    fresh.load_state_dict(state, strict=True)
    e = lambda mdl: float(mdl(batch(mols[2]), compute_forces=False)["energy"][0])  # noqa: E731
    assert e(fresh) == e(model)
    with torch.no_grad():
        fresh.backbone.avg_num_neighbors.mul_(2.0)
    assert abs(e(fresh) - e(model)) > 1e-8


def test_first_layer_has_no_residual():
    """As mace-torch: layer 1 reads only the element embedding, so it has no skip tensor product."""
    model = backbone()
    assert model.layers[0].skip is None
    assert all(layer.skip is not None for layer in model.layers[1:])


def test_presets_use_onehot_elements_and_comparable_size():
    for preset, (lo, hi) in {"cpu": (150_000, 320_000), "default": (400_000, 1_200_000)}.items():
        m = phizoo.build_model("mace", preset=preset)
        assert m.backbone.elements == [1, 6, 7, 8, 9, 15, 16, 17] and m.backbone.element_embedding is None
        assert lo <= m.num_parameters() <= hi, (preset, m.num_parameters())


def test_path_scaling_changes_the_parameterisation_not_the_initial_function(float64_default):
    """``path_scaling="init"`` (mace-torch's) moves e3nn's constant path weights 1/√count into the
    initial weights: the same product basis at initialisation, unit path constants."""
    irreps_a, irreps_out = natural_irreps(4, 2), natural_irreps(4, 1)
    outs = []
    for scaling in ("constant", "init"):
        torch.manual_seed(0)
        basis = SymmetricProductBasis(irreps_a, irreps_out, 3, 3, onehot=True, path_scaling=scaling)
        consts = {round(ins.path_weight / math.sqrt(basis.irreps_out[ins.i_out].ir.dim), 12)
                  for ins in basis.final.instructions}
        assert (consts == {1.0}) == (scaling == "init")
        torch.manual_seed(1)
        outs.append(basis(torch.randn(5, irreps_a.dim), torch.eye(3)[[0, 1, 2, 0, 1]]))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="path_scaling"):
        SymmetricProductBasis(irreps_a, irreps_out, 3, 3, path_scaling="none")


def test_specs_saved_before_the_new_options_rebuild_the_old_model():
    """Weights saved before ``separate_paths``/``path_scaling`` existed were trained with summed edge
    paths and constant path weights; their spec (without the keys) must rebuild exactly that."""
    from phizoo.registry import build_from_spec

    new = phizoo.build_model("mace", preset="test")
    assert new.spec["backbone"]["separate_paths"] is True and new.spec["backbone"]["path_scaling"] == "init"
    old_spec = {**new.spec, "backbone": {k: v for k, v in new.spec["backbone"].items()
                                         if k not in ("separate_paths", "path_scaling")}}
    old = build_from_spec(old_spec)
    assert old.backbone.layers[1].conv.irreps_out == old.backbone.irreps_a  # layer 2: 0e+1o in, 7 paths
    assert len(new.backbone.layers[1].conv.irreps_out) == 7 > len(new.backbone.irreps_a)
    assert old.backbone.layers[0].product.final.instructions != new.backbone.layers[0].product.final.instructions
