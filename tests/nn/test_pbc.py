"""Periodic neighbour lists: vesin, torch_cluster and the pure-torch fallback give identical edges
and shifts, equal to ASE's neighbour list, in small (self-image) and triclinic cells; the list is
symmetric ((j→i, S) ⇔ (i→j, −S)); interatomic vectors are exact far from the origin."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from torch_geometric.data import Data

import phizoo
from phizoo.nn import graph, neighbors
from phizoo.nn.neighbors import CellError, periodic_radius_graph

BACKENDS = ["torch"] + (["vesin"] if neighbors.has_vesin() else []) + \
           (["torch_cluster"] if graph.has_torch_cluster() else [])


def systems():
    rng = np.random.default_rng(0)
    tri = Atoms("H5", positions=rng.normal(size=(5, 3)) * 4.0,  # unwrapped, far outside the cell
                cell=[[2.5, 0, 0], [1.1, 2.2, 0], [0.7, -0.4, 2.0]], pbc=True)
    slab = tri.copy()
    slab.pbc = [True, False, True]
    one = Atoms("Na", positions=[[0.1, 0.2, 0.3]], cell=[[1.9, 0, 0], [0, 2.1, 0], [0, 0, 2.4]], pbc=True)
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    mol = molecule("CH3CH2OH")
    return {"triclinic": tri, "slab": slab, "one_atom": one, "nacl": nacl, "molecule": mol}


def triples(edge_index, shifts):
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(), map(tuple, shifts.tolist())))


def run(atoms_list, r, backend):
    pos = torch.tensor(np.concatenate([a.positions for a in atoms_list]))
    batch = torch.cat([torch.full((len(a),), b) for b, a in enumerate(atoms_list)])
    cell = torch.tensor(np.stack([np.asarray(a.cell) for a in atoms_list]))
    pbc = torch.tensor(np.stack([a.pbc for a in atoms_list]))
    return periodic_radius_graph(pos, r, batch, cell, pbc, backend)


@pytest.mark.parametrize("name", list(systems()))
@pytest.mark.parametrize("r", [3.0, 4.5])
def test_backends_identical_and_equal_to_ase(name, r):
    atoms = systems()[name]
    ref = None
    for backend in BACKENDS:
        ei, s = run([atoms], r, backend)
        if ref is None:
            ref = (ei, s)
        assert torch.equal(ei, ref[0]) and torch.equal(s, ref[1]), backend
    i, j, S = neighbor_list("ijS", atoms, r)
    assert triples(*ref) == set(zip(j.tolist(), i.tolist(), map(tuple, S.tolist())))
    assert len(ref[1]) > 0


def test_self_images_and_symmetry():
    atoms = systems()["one_atom"]
    ei, s = run([atoms], 4.5, "torch")
    assert (ei[0] == 0).all() and (ei[1] == 0).all() and len(s) > 6  # only its own images
    for backend in BACKENDS:
        ei, s = run(list(systems().values()), 4.0, backend)
        t = triples(ei, s)
        assert t == {(i, j, tuple(-x for x in sh)) for j, i, sh in t}
        key = ei[1] * 10**6 + ei[0]
        assert bool((key[1:] >= key[:-1]).all())  # sorted by target, then source


def test_batched_graph_is_per_structure():
    """A batch of periodic and non-periodic structures: build_graph equals each structure alone."""
    structs = list(systems().values())
    datas = [Data(z=torch.tensor(a.numbers), pos=torch.tensor(a.positions),
                  cell=torch.tensor(np.asarray(a.cell)).reshape(1, 3, 3), pbc=torch.tensor(a.pbc).reshape(1, 3))
             for a in structs]
    from torch_geometric.data import Batch
    b = Batch.from_data_list(datas)
    g = graph.build_graph(b.pos, b.batch, 3.5, len(structs), cell=b.cell, pbc=b.pbc)
    assert g.shifts is not None and b.cell.shape == (len(structs), 3, 3)
    start = 0
    for k, a in enumerate(structs):
        gi = graph.build_graph(datas[k].pos, torch.zeros(len(a), dtype=torch.long), 3.5, 1,
                               cell=datas[k].cell, pbc=datas[k].pbc)
        mask = g.batch[g.dst] == k
        torch.testing.assert_close(g.vec[mask], gi.vec)
        if gi.shifts is not None:
            assert torch.equal(g.edge_index[:, mask] - start, gi.edge_index)
        start += len(a)


def test_bad_cells_are_named():
    atoms = systems()["triclinic"]
    pos, batch = torch.tensor(atoms.positions), torch.zeros(len(atoms), dtype=torch.long)
    flat = torch.tensor([[[2.0, 0, 0], [0, 2.0, 0], [2.0, 2.0, 0]]], dtype=torch.float64)
    with pytest.raises(CellError, match="singular cell"):
        periodic_radius_graph(pos, 3.0, batch, flat, torch.ones(1, 3, dtype=torch.bool))
    # a singular cell is fine where the dependent direction is not periodic
    periodic_radius_graph(pos, 3.0, batch, flat, torch.tensor([[True, True, False]]))
    model = phizoo.build_model("painn", preset="test", dtype=torch.float64)
    data = Data(z=torch.tensor(atoms.numbers), pos=pos, cell=flat, pbc=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="singular cell"):
        model(data)
    with pytest.raises(ValueError, match="non-finite"):
        model(Data(z=data.z, pos=pos, cell=flat * float("nan"), pbc=data.pbc))


@pytest.mark.parametrize("name", ["painn", "visnet", "e2gnn", "mace"])
@pytest.mark.parametrize("phi", [False, True])
def test_float32_far_from_origin(name, phi):
    """issue 15.4: float32 ethanol energy moves < 1e-4 eV between the origin and 1e6 Å away."""
    torch.manual_seed(0)
    model = phizoo.build_model(name, phi=phi, preset="test", dtype=torch.float32).eval()
    atoms = molecule("CH3CH2OH")
    out = {}
    for shift in (0.0, 1e6):
        d = Data(z=torch.tensor(atoms.numbers), pos=torch.tensor(atoms.positions + shift))
        out[shift] = model(d)
    de = abs(float(out[1e6]["energy"][0] - out[0.0]["energy"][0]))
    df = float((out[1e6]["forces"] - out[0.0]["forces"]).abs().max())
    print(f"{name} phi={phi}: |ΔE| {de:.2e} eV, max |ΔF| {df:.2e} eV/Å at 1e6 Å")
    assert de < 1e-4 and df < 1e-3
