"""phizoo's MACE against mace-torch, trained side by side: same data, split, statistics, budget and loss.

    phizoo data convert qm9 -o data/qm9-parity.lmdb --limit 1000 --train-size 500 --val-size 100 --test-size 400
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mace_parity.py --data data/qm9-parity.lmdb --epochs 8

The orchestrator (phizoo's environment) reads the stored splits of a phizoo LMDB database, fits the
data statistics on the TRAIN split once — least-squares element references (MACE's E0s), the
per-atom mean of the residual (shift) and its std, or the force RMS when forces are trained (scale),
and avg_num_neighbors (Σ edges / Σ atoms within the cutoff) — and hands the same numbers and
arrays to two workers, each a run of this file with ``--worker``:

* ``phizoo``: ``phizoo.build_model("mace", ...)`` in ``.venv``; statistics written into
  ``element_energies``, ``shift``, ``scale`` and ``backbone.avg_num_neighbors``;
* ``mace``: mace-torch's ``ScaleShiftMACE`` (``RealAgnosticResidualInteractionBlock``, its default)
  in ``benchmarks/.venvs/mace`` (mace-torch pins e3nn 0.4.4; created by ``_peer_envs.ensure_venv``),
  ``atomic_energies`` = E0s, ``atomic_inter_shift/scale`` = shift/scale, same avg_num_neighbors.

Both run the same loop, written once below: float32, one thread, Adam (lr), the same seeded batch
order, loss = w_E · mean_molecules (E − E_ref)² + w_F · mean_components (F − F_ref)² (eV, eV/Å), no
EMA, no schedule; after every epoch the validation errors; the test errors of the epoch with the
best validation force MAE (energy MAE when no forces are trained) and of the last epoch. Matched hyperparameters: channels K (``K×0e + K×1o``), max_ell,
correlation, 2 layers, 8 Bessel functions, polynomial envelope p = 5, radial MLP, cutoff, one-hot
elements of the training set, the readouts (a linear one per layer, a bias-free 16-unit MLP on the
last; phizoo's ``readout: per_layer`` from its preset). Results: ``benchmarks/results/<name>.{json,md}``
(``--name``), with the validation errors before training (``val_initial``) and after every epoch.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- shared (both venvs)

def radius_edges(pos: np.ndarray, r: float) -> np.ndarray:
    """[2, E] (source j, target i), all j != i with |pos_j - pos_i| <= r (one structure)."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    i, j = np.nonzero((d <= r) & ~np.eye(len(pos), dtype=bool))
    return np.stack([j, i])


def batches(n: int, size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[k:k + size] for k in range(0, n, size)]


class PhizooSide:
    def __init__(self, hp: dict, stats: dict):
        import phizoo
        from torch_geometric.data import Batch, Data

        self.Batch, self.Data = Batch, Data
        m = hp["model"]
        self.model = phizoo.build_model(
            "mace", preset="cpu", dtype=torch.float32, num_channels=m["channels"], max_ell=m["max_ell"],
            hidden_l=1, correlation=m["correlation"], num_layers=2, num_bessel=8, cutoff=m["cutoff"],
            envelope_exponent=5, radial_mlp=m["radial_mlp"], elements=stats["elements"], head_hidden=16,
            **hp.get("phizoo_options", {}))
        with torch.no_grad():
            refs = self.model.element_energies
            refs.zero_()
            for z, e in zip(stats["elements"], stats["e0s"]):
                refs[z] = e
            self.model.shift.fill_(stats["shift"])
            self.model.scale.fill_(stats["scale"])
            self.model.backbone.avg_num_neighbors.fill_(stats["avg_num_neighbors"])

    def make(self, z, pos):
        return self.Batch.from_data_list([self.Data(z=torch.as_tensor(a), pos=torch.tensor(p, dtype=torch.float32))
                                          for a, p in zip(z, pos)])

    def __call__(self, data, training: bool):
        self.model.train(training)
        out = self.model(data, create_graph=training)
        return out["energy"], out["forces"]


class MaceSide:
    def __init__(self, hp: dict, stats: dict):
        torch.serialization.add_safe_globals([slice])  # e3nn 0.4.4's constants.pt under torch >= 2.6
        from e3nn import o3
        from mace import modules

        m = hp["model"]
        self.elements, self.cutoff = stats["elements"], m["cutoff"]
        self.index = {e: i for i, e in enumerate(self.elements)}
        inter = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        K = m["channels"]
        self.model = modules.ScaleShiftMACE(
            r_max=m["cutoff"], num_bessel=8, num_polynomial_cutoff=5, max_ell=m["max_ell"], interaction_cls=inter,
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=2, num_elements=len(self.elements), hidden_irreps=o3.Irreps(f"{K}x0e+{K}x1o"),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array(stats["e0s"]),
            avg_num_neighbors=stats["avg_num_neighbors"], atomic_numbers=self.elements,
            correlation=m["correlation"], gate=torch.nn.functional.silu, radial_MLP=m["radial_mlp"],
            atomic_inter_scale=stats["scale"], atomic_inter_shift=stats["shift"]).to(torch.float32)

    def make(self, z, pos):
        edges, off, batch = [], 0, []
        for b, p in enumerate(pos):
            edges.append(radius_edges(p, self.cutoff) + off)
            off += len(p)
            batch += [b] * len(p)
        edge_index = torch.as_tensor(np.concatenate(edges, axis=1), dtype=torch.long)
        nb, E = len(pos), edge_index.shape[1]
        ptr = np.concatenate([[0], np.cumsum([len(p) for p in pos])])
        zz = np.concatenate(z)
        return {
            "positions": torch.tensor(np.concatenate(pos), dtype=torch.float32),
            "node_attrs": torch.nn.functional.one_hot(torch.tensor([self.index[int(x)] for x in zz]),
                                                      len(self.elements)).float(),
            "edge_index": edge_index, "shifts": torch.zeros(E, 3), "unit_shifts": torch.zeros(E, 3),
            "cell": torch.zeros(nb * 3, 3), "batch": torch.as_tensor(batch, dtype=torch.long),
            "ptr": torch.as_tensor(ptr, dtype=torch.long), "weight": torch.ones(nb), "head": torch.zeros(nb, dtype=torch.long),
        }

    def __call__(self, data, training: bool):
        self.model.train(training)
        out = self.model(dict(data), training=training, compute_force=True)
        return out["energy"].double(), out["forces"]


def worker(side: str, npz: Path, hp: dict) -> dict:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    stats = hp["stats"]
    torch.manual_seed(hp["seed"])
    model = (PhizooSide if side == "phizoo" else MaceSide)(hp, stats)
    arr = np.load(npz, allow_pickle=False)
    split = {}
    for name in ("train", "val", "test"):
        n = int(arr[f"{name}_n"])
        z = [arr[f"{name}_z{i}"] for i in range(n)]
        pos = [arr[f"{name}_pos{i}"] for i in range(n)]
        e = arr[f"{name}_energy"]
        f = [arr[f"{name}_forces{i}"] for i in range(n)] if hp["forces"] else None
        split[name] = (z, pos, e, f)
    params = sum(p.numel() for p in model.model.parameters())
    opt = torch.optim.Adam(model.model.parameters(), lr=hp["lr"])
    w_e, w_f = hp["energy_weight"], hp["forces_weight"]

    def evaluate(name):
        z, pos, e, f = split[name]
        abs_e, abs_f, nf = 0.0, 0.0, 0
        for idx in batches(len(z), 64, 0, 0):
            data = model.make([z[i] for i in idx], [pos[i] for i in idx])
            energy, forces = model(data, training=False)
            abs_e += float((energy.detach().double() - torch.as_tensor(e[idx])).abs().sum())
            if f is not None:
                ref = torch.as_tensor(np.concatenate([f[i] for i in idx]))
                abs_f += float((forces.detach().double() - ref).abs().sum())
                nf += ref.numel()
        return {"energy_mae_meV": 1000 * abs_e / len(z), **({"forces_mae_meV_A": 1000 * abs_f / nf} if nf else {})}

    # model selection: validation force MAE when forces are trained (MD data), else energy MAE
    monitor = "forces_mae_meV_A" if split["train"][3] is not None and w_f else "energy_mae_meV"
    initial = evaluate("val")  # the untrained model: how far each side starts from the data
    history, best, best_state, t0 = [], float("inf"), None, time.perf_counter()
    z, pos, e, f = split["train"]
    for epoch in range(hp["epochs"]):
        for idx in batches(len(z), hp["batch_size"], hp["seed"], epoch):
            data = model.make([z[i] for i in idx], [pos[i] for i in idx])
            energy, forces = model(data, training=True)
            loss = w_e * (energy - torch.as_tensor(e[idx])).pow(2).mean()
            if f is not None and w_f:
                ref = torch.as_tensor(np.concatenate([f[i] for i in idx]), dtype=forces.dtype)
                loss = loss + w_f * (forces - ref).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = evaluate("val")
        history.append(val)
        if val[monitor] < best:
            best, best_state = val[monitor], copy.deepcopy(model.model.state_dict())
    train_s = time.perf_counter() - t0
    final = evaluate("test")
    model.model.load_state_dict(best_state)
    return {"side": side, "parameters": params, "train_seconds": train_s, "val_initial": initial,
            "val_history": history,
            "monitor": monitor, "best_val": best, "test": evaluate("test"), "test_final_epoch": final}


# ----------------------------------------------------------------------------- orchestrator (phizoo venv)

def export(db: str, out: Path, forces: bool, cutoff: float) -> dict:
    """Arrays of the three stored splits -> ``out`` (npz, no pickles); statistics fitted on train."""
    from phizoo.data import LmdbDataset
    from phizoo.train.references import fit_element_references, residual_statistics

    ds = LmdbDataset(db, dtype=torch.float64)
    arrays, idx = {}, {}
    for name in ("train", "val", "test"):
        idx[name] = [int(i) for i in ds.split(name).indices]
        arrays[f"{name}_n"] = np.array(len(idx[name]))
        arrays[f"{name}_energy"] = np.array([float(ds[i].energy.reshape(-1)[0]) for i in idx[name]])
        for k, i in enumerate(idx[name]):
            d = ds[i]
            arrays[f"{name}_z{k}"] = d.z.numpy().astype(np.int64)
            arrays[f"{name}_pos{k}"] = d.pos.numpy()
            if forces:
                arrays[f"{name}_forces{k}"] = d.forces.numpy()
    np.savez(out, **arrays)
    refs = fit_element_references(ds, idx["train"])
    res = residual_statistics(ds, idx["train"], refs)
    elements = sorted({int(z) for k in range(len(idx["train"])) for z in arrays[f"train_z{k}"]})
    edges = sum(radius_edges(arrays[f"train_pos{k}"], cutoff).shape[1] for k in range(len(idx["train"])))
    atoms = sum(len(arrays[f"train_z{k}"]) for k in range(len(idx["train"])))
    return {"elements": elements, "e0s": [float(refs[z]) for z in elements], "shift": res["shift"],
            "scale": res["force_rms"] if forces else res["std"], "avg_num_neighbors": edges / atoms,
            "sizes": {k: len(v) for k, v in idx.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=["phizoo", "mace"], help=argparse.SUPPRESS)
    ap.add_argument("--npz", help=argparse.SUPPRESS)
    ap.add_argument("--hp", help=argparse.SUPPRESS)
    ap.add_argument("--data", help="phizoo LMDB with train/val/test splits")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--max-ell", type=int, default=2)
    ap.add_argument("--correlation", type=int, default=3)
    ap.add_argument("--radial-mlp", default="32,32")
    ap.add_argument("--cutoff", type=float, default=5.0)
    ap.add_argument("--forces-weight", type=float, default=0.0, help="> 0 trains on forces too (MD data)")
    ap.add_argument("--energy-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sides", default="phizoo,mace")
    ap.add_argument("--name", default="mace_parity", help="results/<name>.{json,md}")
    ap.add_argument("--phizoo-option", action="append", default=[], metavar="KEY=JSON",
                    help="extra MACE constructor argument for phizoo's side (experiments), e.g. num_layers=3")
    args = ap.parse_args()
    if args.worker:
        res = worker(args.worker, Path(args.npz), json.loads(Path(args.hp).read_text()))
        print("@@result@@" + json.dumps(res))
        return

    sys.path.insert(0, str(HERE))
    import tempfile

    from _peer_envs import ensure_venv

    forces = args.forces_weight > 0
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        stats = export(args.data, npz, forces, args.cutoff)
        hp = {"model": {"channels": args.channels, "max_ell": args.max_ell, "correlation": args.correlation,
                        "radial_mlp": [int(x) for x in args.radial_mlp.split(",")], "cutoff": args.cutoff},
              "stats": stats, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
              "forces": forces, "forces_weight": args.forces_weight, "energy_weight": args.energy_weight,
              "phizoo_options": {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.phizoo_option)}}
        hp_path = Path(tmp) / "hp.json"
        hp_path.write_text(json.dumps(hp))
        results = {}
        for side in args.sides.split(","):
            python = sys.executable if side == "phizoo" else str(ensure_venv("mace"))
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
            print(f"training {side} ...", flush=True)
            run = subprocess.run([python, __file__, "--worker", side, "--npz", str(npz), "--hp", str(hp_path)],
                                 capture_output=True, text=True, env=env)
            lines = [ln for ln in run.stdout.splitlines() if ln.startswith("@@result@@")]
            if run.returncode or not lines:
                raise RuntimeError(f"{side} worker failed:\n{run.stderr[-3000:]}")
            results[side] = json.loads(lines[-1][len("@@result@@"):])
            print(json.dumps(results[side]["test"]), f"{results[side]['train_seconds']:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    report = {"data": args.data, "hyperparameters": hp, "results": results}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    unit = "meV/Å" if forces else "meV"
    rows = [f"| model | parameters | train time (s, 1 thread) | best val {'force' if forces else 'energy'} MAE ({unit}) "
            "| test energy MAE (meV) |" + (" test force MAE (meV/Å) |" if forces else "")
            + " last epoch: test energy MAE (meV) |" + (" last epoch: test force MAE (meV/Å) |" if forces else ""),
            "|---|---:|---:|---:|---:|" + ("---:|" if forces else "") + "---:|" + ("---:|" if forces else "")]
    for side, r in results.items():
        label = "phizoo MACE" if side == "phizoo" else "mace-torch ScaleShiftMACE"
        row = f"| {label} | {r['parameters']:,} | {r['train_seconds']:.0f} | {r['best_val']:.1f} |"
        for t in (r["test"], r["test_final_epoch"]):
            row += f" {t['energy_mae_meV']:.1f} |" + (f" {t['forces_mae_meV_A']:.1f} |" if forces else "")
        rows.append(row)
    s = stats["sizes"]
    md = (f"# MACE parity: {Path(args.data).name}, {s['train']} train / {s['val']} val / {s['test']} test, "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, float32, 1 thread\n\n"
          f"K = {args.channels} (Kx0e+Kx1o), max_ell {args.max_ell}, correlation {args.correlation}, "
          f"radial MLP [{args.radial_mlp}], cutoff {args.cutoff} Å, elements {stats['elements']}, "
          f"avg_num_neighbors {stats['avg_num_neighbors']:.3f} (train split)\n\n" + "\n".join(rows) + "\n")
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
