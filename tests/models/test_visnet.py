"""ViSNet: cross-check against ``torch_geometric.nn.models.ViSNet``.

A PyG ViSNet with random weights is copied into a phizoo ``Potential`` with
``load_pyg_visnet_state``; with ``norm_eps = 0`` (PyG's exact norms in the output head)
energies (PyG ``y``) and forces (PyG ``-dy/dpos``) must agree to float64 round-off on random
molecules, alone and batched, for lmax 1 and 2 and with the optional trainable RBF /
vector-norm weights. phizoo's default smooth norm (``norm_eps > 0``) converges to PyG as
ε → 0 (linearly, tested), and the defect it removes is shown on PyG itself: methane's forces
are not rotation-equivariant and jump across the symmetric geometry. PyG's one unmappable parameter (the bias of
``s_proj``, zero at PyG's initialisation) is kept at zero; see docs/readme/visnet.md.

PyG 2.8's ``radius_graph`` needs pyg-lib, which is not installed; the test replaces it in
PyG's visnet module by ``torch_cluster.radius_graph`` (what PyG used before 2.8) or, without
torch_cluster, by a brute-force search, and asserts that ``max_num_neighbors`` never
truncates, so both models see the same, complete graph.
"""
from __future__ import annotations

import pytest
import torch

import phizoo
from phizoo.models.visnet import ViSNet
from phizoo.models.visnet_pyg import load_pyg_visnet_state
from phizoo.nn.mlp import smooth_norm
from tests.molecules import ase_molecule, batch, random_molecule, random_orthogonal, transformed

pyg_visnet = pytest.importorskip("torch_geometric.nn.models.visnet")

try:
    import torch_cluster
except Exception:  # pragma: no cover - depends on the environment
    torch_cluster = None

SMALL = dict(hidden_channels=16, num_heads=4, num_layers=3, num_rbf=8, cutoff=4.0)


def _radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target", **_):
    """Drop-in for PyG's radius_graph; refuses to run where max_num_neighbors would truncate."""
    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    d = torch.cdist(x, x)
    adj = (d <= r) & (batch[:, None] == batch[None, :])
    if not loop:
        adj.fill_diagonal_(False)
    assert int(adj.sum(1).max()) <= max_num_neighbors, "PyG would truncate this neighbour list"
    if torch_cluster is not None:
        return torch_cluster.radius_graph(x, r, batch, loop, max_num_neighbors, flow)
    i, j = adj.nonzero(as_tuple=True)  # i centre, j neighbour
    return torch.stack([j, i]) if flow == "source_to_target" else torch.stack([i, j])


@pytest.fixture(autouse=True)
def pyg_env(monkeypatch):
    # PyG's Distance builds edge lengths with torch.zeros(...) in the default dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    monkeypatch.setattr(pyg_visnet, "radius_graph", _radius_graph)
    yield
    torch.set_default_dtype(old)


def make_pair(lmax=2, trainable=False, seed=0, scale=0.1, dtype=torch.float64, norm_eps=0.0, **kw):
    """(PyG ViSNet, phizoo Potential) with the same random weights; ``norm_eps = 0``: PyG's exact norms."""
    hp = {**SMALL, **kw}
    torch.manual_seed(seed)
    pyg = pyg_visnet.ViSNet(lmax=lmax, trainable_rbf=trainable, trainable_vecnorm=trainable, derivative=True,
                            std=1.7, **hp)
    with torch.no_grad():
        for p in pyg.parameters():  # everything random, so no term hides behind its initialisation
            p.add_(scale * torch.randn_like(p))
        for layer in pyg.representation_model.vis_mp_layers:
            layer.s_proj.bias.zero_()  # not part of phizoo's ViSNet (cutoff smoothness)
    pyg = pyg.to(dtype).eval()
    ours = phizoo.build_model("visnet", preset="test", dtype=dtype, lmax=lmax, trainable_rbf=trainable,
                              trainable_vecnorm=trainable, head_hidden=hp["hidden_channels"] // 2, norm_eps=norm_eps,
                              **hp)
    load_pyg_visnet_state(ours, pyg)
    return pyg, ours.eval()


def compare(pyg, ours, *mols):
    data = batch(*mols)
    pos = data.pos.to(next(pyg.parameters()).dtype)
    y, dy = pyg(data.z, pos.clone(), data.batch)
    out = ours(data)
    return y.detach().squeeze(-1).double(), dy.detach(), out["energy"], out["forces"]


def mols():
    return [random_molecule(n, seed=100 + n) for n in (2, 5, 9, 14)] + [ase_molecule("C6H6")]


def max_dev(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


@pytest.mark.parametrize("lmax", [1, 2])
@pytest.mark.parametrize("trainable", [False, True], ids=["fixed", "trainable"])
def test_matches_pyg_energy_and_forces(lmax, trainable):
    pyg, ours = make_pair(lmax, trainable, seed=lmax + 2 * trainable)
    ms = mols()
    for m in ms:  # alone
        e_ref, f_ref, e, f = compare(pyg, ours, m)
        assert max_dev(e, e_ref) < 1e-12 and max_dev(f, f_ref) < 1e-11, (max_dev(e, e_ref), max_dev(f, f_ref))
    e_ref, f_ref, e, f = compare(pyg, ours, *ms)  # batched, with an isolated atom among them
    e_ref2, f_ref2, e2, f2 = compare(pyg, ours, ms[3], random_molecule(1, seed=7), ms[0], ms[4])
    for a, b in ((e, e_ref), (f, f_ref), (e2, e_ref2), (f2, f_ref2)):
        assert max_dev(a, b) < 1e-11
    assert f_ref.abs().max() > 1e-2  # forces are not trivially zero


@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_pyg_shallow(num_layers):
    """One layer (first = last: no edge update) and two layers (one edge update)."""
    pyg, ours = make_pair(2, seed=num_layers, num_layers=num_layers)
    e_ref, f_ref, e, f = compare(pyg, ours, *mols())
    assert max_dev(e, e_ref) < 1e-12 and max_dev(f, f_ref) < 1e-11


def test_matches_pyg_rotated_and_cutoff_pairs():
    """Pairs on both sides of the cutoff (a stretched molecule), rotated: still identical."""
    pyg, ours = make_pair(2, seed=5, num_layers=2, cutoff=3.0)
    m = transformed(random_molecule(12, seed=9, bond=(1.3, 2.0)), R=random_orthogonal(3), shift=[1.0, 2.0, 3.0])
    d = torch.cdist(m.pos, m.pos)
    assert bool(((d > 3.0) & (d < 3.5)).any()) and bool(((d > 2.5) & (d < 3.0)).any())
    e_ref, f_ref, e, f = compare(pyg, ours, m)
    assert max_dev(e, e_ref) < 1e-12 and max_dev(f, f_ref) < 1e-11


def test_matches_pyg_float32():
    torch.set_default_dtype(torch.float32)  # PyG's Distance allocates edge lengths in it
    pyg, ours = make_pair(2, seed=11, dtype=torch.float32)
    e_ref, f_ref, e, f = compare(pyg, ours, *mols()[:4])
    assert max_dev(e, e_ref) < 1e-4 and max_dev(f.double(), f_ref.double()) < 1e-3


def test_comparison_is_sensitive():
    """The comparison can fail: one changed weight, or PyG's s_proj bias, changes the result."""
    pyg, ours = make_pair(2, seed=3)
    m = random_molecule(9, seed=4)
    with torch.no_grad():
        ours.backbone.layers[1].qkv.weight[3, 5] += 1e-3
    e_ref, f_ref, e, f = compare(pyg, ours, m)
    assert max_dev(e, e_ref) > 1e-9 or max_dev(f, f_ref) > 1e-9
    with torch.no_grad():
        pyg.representation_model.vis_mp_layers[0].s_proj.bias.fill_(0.1)
    with pytest.raises(ValueError, match="s_proj"):
        load_pyg_visnet_state(ours, pyg)


def test_pyg_s_proj_bias_breaks_cutoff_smoothness():
    """Why phizoo drops that bias: with it, PyG's energy jumps as a pair crosses the cutoff."""
    pyg, ours = make_pair(2, seed=6, num_layers=2)
    from tests.molecules import cutoff_crossing

    def jump(model_fn):
        below, above = (model_fn(cutoff_crossing(4.0, s)) for s in (-1e-7, 1e-7))
        return abs(below - above)

    def pyg_energy(m):
        return float(pyg(m.z, m.pos.clone(), torch.zeros_like(m.z))[0].sum())

    def our_energy(m):
        return float(ours(batch(m))["energy"].sum())

    # moving the atom by 2e-7 Å changes E by ~|F|·2e-7 (|F| ~ 0.1 here): continuous means << 1e-6
    assert jump(pyg_energy) < 1e-7 and jump(our_energy) < 1e-7
    with torch.no_grad():
        for layer in pyg.representation_model.vis_mp_layers:
            layer.s_proj.bias.normal_(0.0, 0.5)
    assert jump(pyg_energy) > 1e-3


def test_isolated_atom_gradients_finite():
    """Vectors stay exactly zero on an isolated atom: norms must give finite gradients."""
    model = phizoo.build_model("visnet", preset="test", dtype=torch.float64).train()
    data = batch(random_molecule(1, seed=1), random_molecule(3, seed=2))
    out = model(data)
    (out["energy"].sum() + out["forces"].pow(2).sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for eps in (0.0, 0.1):  # exact (PyG-compatible) and smooth norm: zero gradient at a zero vector
        x = torch.zeros(2, 8, 4, requires_grad=True)
        smooth_norm(x, 1, eps=eps).sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_lmax_and_heads_validated():
    with pytest.raises(ValueError, match="lmax"):
        ViSNet(hidden_channels=16, num_heads=4, lmax=3)
    with pytest.raises(ValueError, match="divisible"):
        ViSNet(hidden_channels=18, num_heads=4)


# ---------------------------------------------------------------- smooth norm (deliberate difference)

def test_smooth_norm_converges_to_pyg():
    """On non-symmetric molecules the default smooth norm is a small, controlled change of PyG's
    function: the deviation vanishes linearly with ε (n_ε(x) = ‖x‖ - ε + O(ε²/‖x‖))."""
    ms = [random_molecule(n, seed=100 + n) for n in (5, 9)]
    devs = {}
    for eps in (1e-4, 1e-6):
        pyg, ours = make_pair(2, seed=1, norm_eps=eps)
        e_ref, f_ref, e, f = compare(pyg, ours, *ms)
        devs[eps] = (max_dev(e, e_ref), max_dev(f, f_ref))
    for k in (0, 1):
        assert 1e-12 < devs[1e-6][k] < 1e-5
        assert 30 < devs[1e-4][k] / devs[1e-6][k] < 300, devs  # ∝ ε


def _methane():
    return ase_molecule("CH4")  # Td: the carbon's l = 1 and l = 2 features vanish


def _rotation_error(fn, mol, seeds=(1, 2, 3, 4)):
    """max over rotations R of ‖F(R x) - F(x) Rᵀ‖ / ‖F(x)‖."""
    f0 = fn(mol)
    errs = []
    for s in seeds:
        R = random_orthogonal(s)
        errs.append(float((fn(transformed(mol, R=R)) - f0 @ R.T).norm() / f0.norm()))
    return max(errs)


def test_pyg_defect_methane_forces_not_equivariant():
    """PyG's ViSNet (exact norms) gives methane forces that are not rotation-equivariant and that
    jump across the symmetric geometry; phizoo's smooth norm, same weights, fixes both."""
    pyg, _ = make_pair(2, seed=2, num_layers=2)
    _, ours = make_pair(2, seed=2, num_layers=2, norm_eps=0.1)

    def pyg_forces(m):
        return pyg(m.z, m.pos.clone(), torch.zeros_like(m.z))[1].detach()

    def our_forces(m):
        return ours(batch(m))["forces"]

    mol = _methane()
    assert _rotation_error(pyg_forces, mol) > 1e-4  # PyG: rounding noise decides the force (equivariant: ~1e-15)
    assert _rotation_error(our_forces, mol) < 1e-10

    def jump(fn, delta=1e-6):  # move the carbon by ±δ: a C¹ energy changes the force by O(δ)
        u = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)
        u = u / u.norm()
        f = []
        for s in (1.0, -1.0):
            m = transformed(mol)
            m.pos[0] += s * delta * u
            f.append(fn(m))
        scale = fn(transformed(mol, R=random_orthogonal(1))).norm()
        return float((f[0] - f[1]).norm() / scale)

    assert jump(pyg_forces) > 1e-2  # a cusp: the force flips within 2e-6 Å
    assert jump(our_forces) < 1e-4
