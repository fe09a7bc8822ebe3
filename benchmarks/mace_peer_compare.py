"""phizoo's MACE-like backbone vs mace-torch's MACE at matched hyperparameters.

mace-torch pins e3nn 0.4.4 and phizoo needs e3nn >= 0.5, so they live in different virtual
environments. This script runs under phizoo's interpreter, writes the structures and the one
shared neighbour list to a file, and runs itself a second time under mace-torch's interpreter
(``--mace-python``) as a worker that imports mace only. Both models get the same structures,
edges, dtype and thread count.

Reported per model: parameter count, output shapes, energies/forces finite, rotation/permutation
invariance (energy) and equivariance (forces), and wall time (median over repeats) for
energy + forces (inference) and for one training step (energy + force loss, backward through
the forces). Not a weight-exact match: the weights are random and the architectures differ in
the details listed in docs/readme/mace.md.

Set-up of mace-torch (outside the repository; never into phizoo's .venv):

    python3 -m venv /tmp/macevenv && /tmp/macevenv/bin/pip install torch==2.13.0 mace-torch

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mace_peer_compare.py --mace-python /tmp/macevenv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ELEMENTS = [1, 6, 7, 8]
MARK = "@@phizoo-bench@@"  # prefix of the worker's answers (mace may print to stdout itself)


def _read_marked(proc) -> str | None:
    for line in proc.stdout:
        if line.startswith(MARK):
            return line[len(MARK):]
    return None


# ------------------------------------------------------------------ shared helpers (both environments)

def random_molecule(n: int, rng: np.random.Generator, dmin: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """A connected random molecule (each atom at 1.0-1.5 Å from an earlier one, no pair closer than dmin)."""
    pos = [np.zeros(3)]
    while len(pos) < n:
        anchor = pos[rng.integers(len(pos))]
        d = rng.normal(size=3)
        cand = anchor + d / np.linalg.norm(d) * rng.uniform(1.0, 1.5)
        if min(np.linalg.norm(cand - p) for p in pos) >= dmin:
            pos.append(cand)
    return rng.choice(ELEMENTS, size=n), np.array(pos)


def radius_edges(pos: np.ndarray, batch: np.ndarray, r: float) -> np.ndarray:
    """All ordered pairs (j, i), j != i, same molecule, |pos_j - pos_i| <= r, as [2, E] (source, target)."""
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    mask = (d <= r) & (batch[:, None] == batch[None]) & ~np.eye(len(pos), dtype=bool)
    i, j = np.nonzero(mask)
    return np.stack([j, i])


def rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def behaviour(predict, z, pos, batch, perm_seed=3) -> dict:
    """predict(z, pos, batch) -> (energy [B], forces [N, 3]) as float64 numpy."""
    e, f = predict(z, pos, batch)
    R = rotation(7)
    e_rot, f_rot = predict(z, pos @ R.T + np.array([1.0, -2.0, 0.5]), batch)
    # permute atoms inside every molecule (keeps molecules contiguous)
    rng = np.random.default_rng(perm_seed)
    perm = np.concatenate([np.flatnonzero(batch == b)[rng.permutation(int((batch == b).sum()))]
                           for b in range(int(batch.max()) + 1)])
    e_perm, f_perm = predict(z[perm], pos[perm], batch[perm])
    scale = max(1.0, float(np.abs(f).max()))
    return {
        "energy_shape": list(e.shape), "forces_shape": list(f.shape),
        "finite": bool(np.isfinite(e).all() and np.isfinite(f).all()),
        "energies": [float(x) for x in e],
        "rotation_energy_err": float(np.abs(e_rot - e).max()),
        "rotation_force_err": float(np.abs(f_rot - f @ R.T).max()) / scale,
        "permutation_energy_err": float(np.abs(e_perm - e).max()),
        "permutation_force_err": float(np.abs(f_perm - f[perm]).max()) / scale,
        "max_force": float(np.abs(f).max()),
    }


# ------------------------------------------------------------------ mace-torch worker

def mace_worker(infile: str) -> None:
    # e3nn 0.4.4 loads its own packaged constants.pt (a tuple holding `slice`s) with torch.load, which
    # torch >= 2.6 refuses under weights_only=True unless `slice` is allow-listed.
    torch.serialization.add_safe_globals([slice])
    from e3nn import o3
    from mace import modules

    d = np.load(infile, allow_pickle=False)
    cfg = json.loads(str(d["config"]))
    dtype = getattr(torch, cfg["dtype"])
    torch.set_default_dtype(dtype)
    torch.manual_seed(0)
    inter = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.MACE(
        r_max=cfg["cutoff"], num_bessel=cfg["num_bessel"], num_polynomial_cutoff=cfg["envelope_exponent"],
        max_ell=cfg["max_ell"], interaction_cls=inter, interaction_cls_first=inter,
        num_interactions=cfg["num_layers"], num_elements=len(ELEMENTS),
        hidden_irreps=o3.Irreps(f"{cfg['channels']}x0e+{cfg['channels']}x1o" if cfg["hidden_l"] == 1
                                else f"{cfg['channels']}x0e"),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(ELEMENTS)),
        avg_num_neighbors=cfg["avg_num_neighbors"], atomic_numbers=ELEMENTS, correlation=cfg["correlation"],
        gate=torch.nn.functional.silu, radial_MLP=cfg["radial_mlp"],
    ).to(dtype)
    model.eval()
    index = {e: i for i, e in enumerate(ELEMENTS)}

    def make(z, pos, batch, edge_index):
        n = len(z)
        nb = int(batch.max()) + 1
        ptr = np.concatenate([[0], np.cumsum(np.bincount(batch, minlength=nb))])
        return {
            "positions": torch.tensor(pos, dtype=dtype),
            "node_attrs": torch.nn.functional.one_hot(torch.tensor([index[int(x)] for x in z]),
                                                      len(ELEMENTS)).to(dtype),
            "edge_index": torch.tensor(edge_index, dtype=torch.long),
            "shifts": torch.zeros(edge_index.shape[1], 3, dtype=dtype),
            "unit_shifts": torch.zeros(edge_index.shape[1], 3, dtype=dtype),
            "cell": torch.zeros(nb * 3, 3, dtype=dtype),
            "batch": torch.tensor(batch, dtype=torch.long),
            "ptr": torch.tensor(ptr, dtype=torch.long),
            "weight": torch.ones(nb, dtype=dtype),
            "head": torch.zeros(nb, dtype=torch.long),
        }

    def predict(z, pos, batch):
        data = make(z, pos, batch, radius_edges(pos, batch, cfg["cutoff"]))
        out = model(data, training=False, compute_force=True)
        return out["energy"].detach().double().numpy(), out["forces"].detach().double().numpy()

    z, pos, batch, edge_index = d["z"], d["pos"], d["batch"], d["edge_index"]
    result = {"params": sum(p.numel() for p in model.parameters()), "version": _mace_version()}
    result.update(behaviour(predict, z, pos, batch))
    data = make(z, pos, batch, edge_index)

    def infer():
        model(dict(data), training=False, compute_force=True)

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def train_step():
        out = model(dict(data), training=True, compute_force=True)
        loss = out["energy"].pow(2).mean() + out["forces"].pow(2).mean()
        opt.zero_grad()
        loss.backward()

    infer(), train_step()  # warm-up
    print(MARK + json.dumps(result), flush=True)
    # serve timing requests, so the two models are timed alternately under the same machine load
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        fn = {"infer": infer, "train": train_step}[cmd]
        if cmd == "infer":
            model.eval()
        else:
            model.train()
        t = time.perf_counter()
        fn()
        print(MARK + json.dumps(time.perf_counter() - t), flush=True)


def _mace_version() -> str:
    try:
        from importlib.metadata import version
        return f"mace-torch {version('mace-torch')}, e3nn {version('e3nn')}"
    except Exception:  # pragma: no cover
        return "unknown"




# ------------------------------------------------------------------ phizoo side

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mace-python", default="/tmp/macevenv/bin/python")
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--max-ell", type=int, default=3)
    ap.add_argument("--hidden-l", type=int, default=1)
    ap.add_argument("--correlation", type=int, default=3)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--molecules", type=int, default=4)
    ap.add_argument("--atoms", type=int, default=50, help="atoms per molecule")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--worker", metavar="IN", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mace_worker(args.worker)
        return

    import phizoo
    from phizoo.nn.graph import radius_graph

    rng = np.random.default_rng(0)
    mols = [random_molecule(args.atoms, rng) for _ in range(args.molecules)]
    z = np.concatenate([m[0] for m in mols])
    pos = np.concatenate([m[1] for m in mols])
    batch = np.repeat(np.arange(len(mols)), [len(m[0]) for m in mols])
    cutoff = 5.0
    edge_index = radius_graph(torch.tensor(pos), cutoff, torch.tensor(batch)).numpy()
    avg = edge_index.shape[1] / len(z)
    cfg = {"channels": args.channels, "max_ell": args.max_ell, "hidden_l": args.hidden_l,
           "correlation": args.correlation, "num_layers": args.layers, "num_bessel": 8, "cutoff": cutoff,
           "envelope_exponent": 5, "radial_mlp": [64, 64, 64], "avg_num_neighbors": avg,
           "dtype": args.dtype, "repeats": args.repeats}
    dtype = getattr(torch, args.dtype)

    # phizoo
    torch.manual_seed(0)
    model = phizoo.build_model("mace", preset="default", dtype=dtype, num_channels=args.channels,
                               max_ell=args.max_ell, hidden_l=args.hidden_l, correlation=args.correlation,
                               num_layers=args.layers, num_bessel=8, cutoff=cutoff, envelope_exponent=5,
                               radial_mlp=[64, 64, 64], avg_num_neighbors=avg, elements=ELEMENTS, head_hidden=16)
    model.eval()
    from torch_geometric.data import Batch, Data

    def to_batch(z_, pos_, batch_):
        parts = [Data(z=torch.tensor(z_[batch_ == b]), pos=torch.tensor(pos_[batch_ == b], dtype=dtype))
                 for b in range(int(batch_.max()) + 1)]
        return Batch.from_data_list(parts)

    def predict(z_, pos_, batch_):
        out = model(to_batch(z_, pos_, batch_))
        return out["energy"].double().numpy(), out["forces"].double().numpy()

    ours = {"params": model.num_parameters(), "backbone_params": sum(p.numel() for p in model.backbone.parameters()),
            "version": f"phizoo {phizoo.__version__ if hasattr(phizoo, '__version__') else ''}".strip()}
    ours.update(behaviour(predict, z, pos, batch))
    data = to_batch(z, pos, batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def infer():
        model.eval()
        model(data)

    def train_step():
        model.train()
        out = model(data)
        loss = out["energy"].pow(2).mean() + out["forces"].pow(2).mean()
        opt.zero_grad()
        loss.backward()

    infer(), train_step()  # warm-up
    theirs: dict = {"error": f"{args.mace_python} not found"}
    times = {("phizoo", k): [] for k in ("infer", "train")}
    times.update({("mace_torch", k): [] for k in ("infer", "train")})
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        if os.path.exists(args.mace_python):
            infile = os.path.join(tmp, "in.npz")
            np.savez(infile, z=z, pos=pos, batch=batch, edge_index=edge_index, config=json.dumps(cfg))
            errlog = open(os.path.join(tmp, "worker.err"), "w+")
            proc = subprocess.Popen([args.mace_python, os.path.abspath(__file__), "--worker", infile],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True)
            line = _read_marked(proc)
            if line is not None:
                theirs = json.loads(line)
            else:
                proc.wait()
                errlog.seek(0)
                theirs = {"error": errlog.read()[-2000:]}
                proc = None
        for _ in range(args.repeats):  # alternate: the two models see the same machine load
            for kind, fn in (("infer", infer), ("train", train_step)):
                t = time.perf_counter()
                fn()
                times[("phizoo", kind)].append(time.perf_counter() - t)
                if proc is not None:
                    proc.stdin.write(kind + "\n")
                    proc.stdin.flush()
                    times[("mace_torch", kind)].append(json.loads(_read_marked(proc)))
        if proc is not None:
            proc.stdin.write("quit\n")
            proc.stdin.close()
            proc.wait()
    for who, res in (("phizoo", ours), ("mace_torch", theirs)):
        for kind, key in (("infer", "time_inference_s"), ("train", "time_train_step_s")):
            ts = times[(who, kind)]
            if ts:
                res[key] = float(np.median(ts))
                res[key[:-2] + "_min_s"] = float(np.min(ts))

    report = {"config": cfg, "atoms": int(len(z)), "edges": int(edge_index.shape[1]),
              "threads": torch.get_num_threads(), "phizoo": ours, "mace_torch": theirs}
    print(f"structures: {args.molecules} random H/C/N/O molecules x {args.atoms} atoms = {len(z)} atoms, "
          f"{edge_index.shape[1]} edges (avg {avg:.1f} neighbours), {args.dtype}, {torch.get_num_threads()} thread(s)")
    print(f"hyperparameters: {args.channels}x0e" + (f"+{args.channels}x1o" if args.hidden_l == 1 else "")
          + f", max_ell {args.max_ell}, correlation {args.correlation}, {args.layers} layers, 8 Bessel, p=5, "
          f"cutoff {cutoff} Å, radial MLP [64,64,64], elements {ELEMENTS}")
    keys = ["params", "energy_shape", "forces_shape", "finite", "rotation_energy_err", "rotation_force_err",
            "permutation_energy_err", "permutation_force_err", "time_inference_s", "time_inference_min_s",
            "time_train_step_s", "time_train_step_min_s"]
    print(f"{'':28s}{'phizoo mace':>16s}{'mace-torch':>16s}")
    for k in keys:
        a, b = ours.get(k, "-"), theirs.get(k, "-")
        fmt = (lambda v: f"{v:16.3g}") if isinstance(a, float) else (lambda v: f"{str(v):>16s}")
        print(f"{k:28s}{fmt(a)}{fmt(b) if not isinstance(b, str) or b != '-' else '-':>16}")
    if "error" in theirs:
        print("mace-torch side failed:\n" + theirs["error"])
    elif theirs.get("time_inference_s"):
        print(f"speed-up (mace-torch time / phizoo time, medians; mins in brackets): inference "
              f"{theirs['time_inference_s'] / ours['time_inference_s']:.2f}x "
              f"({theirs['time_inference_min_s'] / ours['time_inference_min_s']:.2f}x), training step "
              f"{theirs['time_train_step_s'] / ours['time_train_step_s']:.2f}x "
              f"({theirs['time_train_step_min_s'] / ours['time_train_step_min_s']:.2f}x)  ({theirs.get('version')})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
