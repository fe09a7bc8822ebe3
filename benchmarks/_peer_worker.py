"""Worker process of the peer benchmarks (``benchmarks/peer_bench.py``); not meant to be run by hand.

One worker holds one model (phizoo's or a peer's) and answers timing and memory requests on
stdin/stdout, one JSON object per line, so that the orchestrator can alternate requests
between phizoo and the peer and both see the same machine load. It runs under any virtual
environment: phizoo's (``--side phizoo`` and ``--side pyg``) or a peer's own
(``--side schnetpack``, ``--side mace``); it imports only torch, numpy and the side's package.

Requests (``{"op": ...}``): ``info`` -> parameters, versions; ``check`` -> energies, forces and
their rotation/permutation behaviour on one case; ``prepare`` -> builds the input of a case
and runs every task once (warm-up); ``time`` -> wall time of one call of a task; ``memory`` ->
peak CPU tensor memory of one call (the torch profiler's allocation events, with the meter of
``phizoo/eval/leaderboard.py``, loaded from that file so that no second implementation exists);
``quit``.

Tasks: ``ef`` = energy + forces in inference mode (what MD or screening runs), ``train`` = one
training step: forward with forces (graph kept for double backward), loss = mean squared energy
error + mean squared force error against fixed targets, ``zero_grad``, ``backward`` (no optimiser
step, so every repeat runs the same weights).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
import typing
from pathlib import Path

import numpy as np
import torch

MARK = "@@phizoo-bench@@"  # prefix of answers (libraries may print to stdout themselves)
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- memory meter

def load_memory_meter():
    """``cpu_peak_allocated`` from ``phizoo/eval/leaderboard.py``, compiled from that file's source
    (with the helper it needs) so that the peer environments, which do not have phizoo's
    dependencies, run exactly the code that phizoo's leaderboard runs."""
    path = REPO / "phizoo" / "eval" / "leaderboard.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    wanted = {"_quiet_stderr", "cpu_peak_allocated"}
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    if {n.name for n in nodes} != wanted:
        raise RuntimeError(f"{path} no longer defines {sorted(wanted)}")
    module = ast.Module(body=nodes, type_ignores=[])
    import contextlib

    ns = {"contextlib": contextlib, "os": os, "sys": sys, "torch": torch}
    exec(compile(module, str(path), "exec"), ns)
    return ns["cpu_peak_allocated"]


# ----------------------------------------------------------------------------------- geometry helpers

def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def radius_edges(pos: np.ndarray, batch: np.ndarray, r: float) -> np.ndarray:
    """All ordered pairs (j, i), j != i, same molecule, |pos_j - pos_i| <= r: [2, E] (source j, target i).
    Only used for the small behaviour checks (the benchmark cases carry phizoo's neighbour list)."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mask = (d <= r) & (batch[:, None] == batch[None]) & ~np.eye(len(pos), dtype=bool)
    i, j = np.nonzero(mask)
    order = np.lexsort((j, i))
    return np.stack([j[order], i[order]])


def behaviour(predict, z, pos, batch) -> dict:
    """predict(z, pos, batch) -> (energy [B], forces [N, 3]) as float64 numpy: shapes, finiteness,
    rotation + translation invariance, permutation invariance (errors relative to max(1, |F|))."""
    e, f = predict(z, pos, batch)
    R = rotation(7)
    e_rot, f_rot = predict(z, pos @ R.T + np.array([1.0, -2.0, 0.5]), batch)
    rng = np.random.default_rng(3)
    perm = np.concatenate([np.flatnonzero(batch == b)[rng.permutation(int((batch == b).sum()))]
                           for b in range(int(batch.max()) + 1)])
    e_perm, f_perm = predict(z[perm], pos[perm], batch[perm])
    scale = max(1.0, float(np.abs(f).max()))
    return {
        "energy_shape": list(e.shape), "forces_shape": list(f.shape),
        "finite": bool(np.isfinite(e).all() and np.isfinite(f).all()),
        "rotation_energy_err": float(np.abs(e_rot - e).max()),
        "rotation_force_err": float(np.abs(f_rot - f @ R.T).max()) / scale,
        "permutation_energy_err": float(np.abs(e_perm - e).max()),
        "permutation_force_err": float(np.abs(f_perm - f[perm]).max()) / scale,
    }


def _version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            out.append(f"{n} ?")
    return ", ".join(out + [f"torch {torch.__version__}"])


# ----------------------------------------------------------------------------------- sides
# Each side: build(hp) -> model; params(); make(case) -> input; ef(input); train(input); predict(z, pos, batch).

class Side:
    dtype = torch.float32

    def __init__(self, hp: dict):
        self.hp = hp

    def loss(self, energy: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
        # fixed targets (zeros): the cost of the loss itself is negligible and identical on both sides
        return energy.pow(2).mean() + forces.pow(2).mean()

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class PhizooSide(Side):
    def __init__(self, hp: dict):
        super().__init__(hp)
        import phizoo
        from torch_geometric.data import Batch, Data

        self.Batch, self.Data = Batch, Data
        torch.manual_seed(0)
        self.model = phizoo.build_model(hp["model"], phi=bool(hp.get("phi", False)), preset="default",
                                        dtype=self.dtype, **hp["phizoo"])
        self.version = f"phizoo {phizoo.__version__}, " + _version("e3nn", "torch_geometric")

    def params(self) -> int:
        return self.model.num_parameters()

    def make(self, z, pos, batch, edge_index):
        parts = [self.Data(z=torch.as_tensor(z[batch == b]), pos=torch.tensor(pos[batch == b], dtype=self.dtype))
                 for b in range(int(batch.max()) + 1)]
        return self.Batch.from_data_list(parts)

    def ef(self, data):
        self.model.eval()
        out = self.model(data)
        return out["energy"], out["forces"]

    def train(self, data):
        self.model.train()
        out = self.model(data)
        loss = self.loss(out["energy"], out["forces"])
        self.model.zero_grad(set_to_none=True)
        loss.backward()

    def neighbour_list_time(self, data) -> float:
        from phizoo.nn.graph import build_graph

        t = time.perf_counter()
        build_graph(data.pos.detach().requires_grad_(True), data.batch, self.model.cutoff, int(data.batch.max()) + 1)
        return time.perf_counter() - t


class SchnetpackSide(Side):
    """schnetpack 2.x ``NeuralNetworkPotential``: PairwiseDistances -> PaiNN -> Atomwise -> Forces.
    Input: the shared neighbour list (schnetpack's own lists run in its data pipeline, outside the model)."""

    def __init__(self, hp: dict):
        super().__init__(hp)
        # schnetpack 2.1 imports a TypeVar that torch >= 2.6 no longer exports from the dataloader module
        import torch.utils.data.dataloader as _dl

        if not hasattr(_dl, "T_co"):
            _dl.T_co = typing.TypeVar("T_co", covariant=True)
        import schnetpack as spk
        import schnetpack.properties as P

        self.P = P
        c = hp["peer"]
        torch.manual_seed(0)
        rep = spk.representation.PaiNN(
            n_atom_basis=c["n_atom_basis"], n_interactions=c["n_interactions"],
            radial_basis=spk.nn.BesselRBF(n_rbf=c["n_rbf"], cutoff=c["cutoff"]),
            cutoff_fn=spk.nn.CosineCutoff(c["cutoff"]))
        self.model = spk.model.NeuralNetworkPotential(
            representation=rep, input_modules=[spk.atomistic.PairwiseDistances()],
            output_modules=[spk.atomistic.Atomwise(n_in=c["n_atom_basis"], output_key="energy"),
                            spk.atomistic.Forces(energy_key="energy", force_key="forces")],
        ).to(self.dtype)
        self.version = _version("schnetpack")

    def make(self, z, pos, batch, edge_index):
        P = self.P
        nb = int(batch.max()) + 1
        n_atoms = np.bincount(batch, minlength=nb)
        return {
            P.Z: torch.as_tensor(z, dtype=torch.long),
            P.R: torch.tensor(pos, dtype=self.dtype),
            P.idx_i: torch.as_tensor(edge_index[1], dtype=torch.long),  # centre
            P.idx_j: torch.as_tensor(edge_index[0], dtype=torch.long),  # neighbour: Rij = R[j] - R[i]
            P.offsets: torch.zeros(edge_index.shape[1], 3, dtype=self.dtype),
            P.idx_m: torch.as_tensor(batch, dtype=torch.long),
            P.n_atoms: torch.as_tensor(n_atoms, dtype=torch.long),
            P.cell: torch.zeros(nb, 3, 3, dtype=self.dtype),
            P.pbc: torch.zeros(nb, 3, dtype=torch.bool),
        }

    def ef(self, inputs):
        self.model.eval()
        out = self.model(dict(inputs))
        return out["energy"], out["forces"]

    def train(self, inputs):
        self.model.train()
        out = self.model(dict(inputs))
        loss = self.loss(out["energy"], out["forces"])
        self.model.zero_grad(set_to_none=True)
        loss.backward()


class PygSide(Side):
    """torch_geometric's ``ViSNet`` (derivative=True: forces by autograd inside the model). PyG 2.8's
    radius_graph needs pyg-lib, which is not installable here: it is replaced, in PyG's visnet module, by
    ``torch_cluster.radius_graph`` (what PyG called before 2.8), as tests/models/test_visnet.py does.
    ``max_num_neighbors`` is set above the largest neighbour count, so the graph is complete."""

    def __init__(self, hp: dict):
        super().__init__(hp)
        import torch_cluster
        from torch_geometric.nn.models import visnet as pyg_visnet

        def radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target", **_):
            return torch_cluster.radius_graph(x, r, batch, loop, max_num_neighbors, flow)

        pyg_visnet.radius_graph = radius_graph
        c = hp["peer"]
        torch.manual_seed(0)
        self.model = pyg_visnet.ViSNet(
            lmax=c["lmax"], vecnorm_type=None, trainable_vecnorm=False, num_heads=c["num_heads"],
            num_layers=c["num_layers"], hidden_channels=c["hidden_channels"], num_rbf=c["num_rbf"],
            trainable_rbf=False, cutoff=c["cutoff"], max_num_neighbors=c["max_num_neighbors"],
            derivative=True).to(self.dtype)
        self.version = _version("torch_geometric", "torch_cluster")

    def make(self, z, pos, batch, edge_index):
        return (torch.as_tensor(z, dtype=torch.long), torch.tensor(pos, dtype=self.dtype),
                torch.as_tensor(batch, dtype=torch.long))

    def ef(self, inputs):
        self.model.eval()
        z, pos, batch = inputs
        y, dy = self.model(z, pos, batch)
        return y.detach(), dy.detach()

    def train(self, inputs):
        self.model.train()
        z, pos, batch = inputs
        y, dy = self.model(z, pos, batch)
        loss = self.loss(y, dy)
        self.model.zero_grad(set_to_none=True)
        loss.backward()


class MaceSide(Side):
    """mace-torch's ``MACE`` with ``RealAgnosticResidualInteractionBlock`` (its default)."""

    def __init__(self, hp: dict):
        super().__init__(hp)
        # e3nn 0.4.4 loads its packaged constants.pt (a tuple holding `slice`s) with torch.load, which
        # torch >= 2.6 refuses under weights_only=True unless `slice` is allow-listed.
        torch.serialization.add_safe_globals([slice])
        from e3nn import o3
        from mace import modules

        c = hp["peer"]
        self.elements = list(c["elements"])
        torch.set_default_dtype(self.dtype)
        torch.manual_seed(0)
        inter = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        K = c["channels"]
        self.model = modules.MACE(
            r_max=c["cutoff"], num_bessel=c["num_bessel"], num_polynomial_cutoff=c["envelope_exponent"],
            max_ell=c["max_ell"], interaction_cls=inter, interaction_cls_first=inter,
            num_interactions=c["num_layers"], num_elements=len(self.elements),
            hidden_irreps=o3.Irreps(f"{K}x0e+{K}x1o" if c["hidden_l"] == 1 else f"{K}x0e"),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(self.elements)),
            avg_num_neighbors=c["avg_num_neighbors"], atomic_numbers=self.elements,
            correlation=c["correlation"], gate=torch.nn.functional.silu, radial_MLP=c["radial_mlp"],
        ).to(self.dtype)
        self.index = {e: i for i, e in enumerate(self.elements)}
        self.version = _version("mace-torch", "e3nn")

    def make(self, z, pos, batch, edge_index):
        nb = int(batch.max()) + 1
        ptr = np.concatenate([[0], np.cumsum(np.bincount(batch, minlength=nb))])
        E = edge_index.shape[1]
        return {
            "positions": torch.tensor(pos, dtype=self.dtype),
            "node_attrs": torch.nn.functional.one_hot(torch.tensor([self.index[int(x)] for x in z]),
                                                      len(self.elements)).to(self.dtype),
            "edge_index": torch.as_tensor(edge_index, dtype=torch.long),
            "shifts": torch.zeros(E, 3, dtype=self.dtype),
            "unit_shifts": torch.zeros(E, 3, dtype=self.dtype),
            "cell": torch.zeros(nb * 3, 3, dtype=self.dtype),
            "batch": torch.as_tensor(batch, dtype=torch.long),
            "ptr": torch.as_tensor(ptr, dtype=torch.long),
            "weight": torch.ones(nb, dtype=self.dtype),
            "head": torch.zeros(nb, dtype=torch.long),
        }

    def ef(self, data):
        self.model.eval()
        out = self.model(dict(data), training=False, compute_force=True)
        return out["energy"].detach(), out["forces"].detach()

    def train(self, data):
        self.model.train()
        out = self.model(dict(data), training=True, compute_force=True)
        loss = self.loss(out["energy"], out["forces"])
        self.model.zero_grad(set_to_none=True)
        loss.backward()


SIDES = {"phizoo": PhizooSide, "schnetpack": SchnetpackSide, "pyg": PygSide, "mace": MaceSide}


# ----------------------------------------------------------------------------------- main loop

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", required=True, choices=sorted(SIDES))
    ap.add_argument("--input", required=True, help="npz written by peer_bench.py")
    ap.add_argument("--threads", type=int, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = np.load(args.input, allow_pickle=False)
    hp = json.loads(str(d["config"]))
    side = SIDES[args.side](hp)
    meter = load_memory_meter()
    cases: dict[str, object] = {}
    tasks = {"ef": side.ef, "train": side.train}

    def answer(obj) -> None:
        print(MARK + json.dumps(obj), flush=True)

    def arrays(name):
        return d[f"{name}/z"], d[f"{name}/pos"], d[f"{name}/batch"], d[f"{name}/edge_index"]

    answer({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "quit":
                break
            if op == "info":
                answer({"params": side.params(), "version": side.version, "threads": torch.get_num_threads(),
                        "python": sys.executable})
            elif op == "check":
                z, pos, batch, _ = arrays(req["case"])
                cutoff = hp["cutoff"]

                def predict(z_, pos_, batch_):
                    e, f = side.ef(side.make(z_, pos_, batch_, radius_edges(pos_, batch_, cutoff)))
                    return e.detach().double().numpy(), f.detach().double().numpy()

                answer(behaviour(predict, z, pos, batch))
            elif op == "prepare":
                name = req["case"]
                cases[name] = side.make(*arrays(name))
                out = {}
                for task in req["tasks"]:
                    t = time.perf_counter()
                    tasks[task](cases[name])
                    out[task] = time.perf_counter() - t
                if isinstance(side, PhizooSide):
                    out["neighbour_list"] = min(side.neighbour_list_time(cases[name]) for _ in range(3))
                answer(out)
            elif op == "time":
                fn, data = tasks[req["task"]], cases[req["case"]]
                t = time.perf_counter()
                fn(data)
                answer(time.perf_counter() - t)
            elif op == "memory":
                fn, data = tasks[req["task"]], cases[req["case"]]
                answer(meter(lambda: fn(data)))
            elif op == "drop":
                cases.pop(req["case"], None)
                answer(True)
            else:
                answer({"error": f"unknown op {op}"})
        except Exception as exc:  # report, keep serving
            import traceback

            answer({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]})


if __name__ == "__main__":
    main()
