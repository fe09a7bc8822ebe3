"""Do the Coulomb head's charges mean anything? PaiNN + Coulomb on QM9, two ways:

* ``supervised``: energy + Mulliken charges (``loss.charges``) + dipole magnitude (``loss.dipole``);
* ``latent``: energy only (LES-style; QM9 has no forces), charges never shown to the model.

Reported on the first ``--n-test`` molecules of QM9's test split: Pearson r between predicted and
Mulliken charges (all atoms and per element), charge MAE (e), dipole-magnitude MAE (e·Å; QM9
stores |μ| only), energy MAE (meV). Writes ``studies/results/coulomb_charges.json``.

    OMP_NUM_THREADS=1 python studies/coulomb_charges.py                      # 2,000 train molecules, 6 epochs
    python studies/coulomb_charges.py --n-train 20000 --epochs 30 --threads 4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "studies" / "results" / "coulomb_charges.json"
SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}


def config(mode: str, a) -> dict:
    loss = {"energy": 1.0, "charges": 0.0, "dipole": 0.0}
    if mode == "supervised":
        loss.update(charges=a.w_charges, dipole=a.w_dipole)
    return {"model": {"name": a.model, "preset": a.preset, "coulomb": True}, "loss": loss,
            "epochs": a.epochs, "batch_size": 16, "optimizer": {"lr": 1e-3}, "seed": a.seed,
            "progress": False, "evaluate_test": False, "monitor": "val_energy_mae"}


@torch.no_grad()
def evaluate(model, dataset, indices) -> dict:
    from torch_geometric.data import Batch

    model.eval()
    qp, qr, zs, dmu, de = [], [], [], [], []
    for s in range(0, len(indices), 64):
        b = Batch.from_data_list([dataset[int(i)] for i in indices[s:s + 64]])
        out = model(b, compute_forces=False)
        qp.append(out["coulomb_charges"].double())
        qr.append(b.charges.double())
        zs.append(b.z)
        dmu.append(out["dipole"].double().norm(dim=-1) - b.dipole.double().reshape(-1))
        de.append(out["energy"] - b.energy.double())
    qp, qr, zs = torch.cat(qp).numpy(), torch.cat(qr).numpy(), torch.cat(zs).numpy()
    res = {"pearson_r": float(np.corrcoef(qp, qr)[0, 1]), "charges_mae_e": float(np.abs(qp - qr).mean()),
           "dipole_mae_eA": float(torch.cat(dmu).abs().mean()), "energy_mae_meV": 1e3 * float(torch.cat(de).abs().mean()),
           "per_element": {}}
    for z, sym in SYMBOLS.items():
        m = zs == z
        if m.sum() > 2:
            res["per_element"][sym] = {"n": int(m.sum()), "pearson_r": float(np.corrcoef(qp[m], qr[m])[0, 1]),
                                       "mean_pred": float(qp[m].mean()), "mean_ref": float(qr[m].mean()),
                                       "std_pred": float(qp[m].std()), "std_ref": float(qr[m].std())}
    return res


def main() -> int:
    from phizoo.data.dataset import LmdbDataset
    from phizoo.train import train_from_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data" / "qm9.lmdb"))
    p.add_argument("--model", default="painn")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--w-charges", type=float, default=10.0)
    p.add_argument("--w-dipole", type=float, default=1.0)
    p.add_argument("--modes", nargs="+", default=["supervised", "latent"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ds = LmdbDataset(a.data)
    splits = {"train": list(ds.split_indices("train")[:a.n_train]), "val": list(ds.split_indices("val")[:a.n_val])}
    test = ds.split_indices("test")[:a.n_test]
    results = {"settings": vars(a), "runs": {}}
    for mode in a.modes:
        t = time.time()
        trainer, _ = train_from_config(config(mode, a), ds, splits=splits)
        model = trainer.ema.module if trainer.ema is not None else trainer.model
        results["runs"][mode] = {**evaluate(model, ds, test), "train_seconds": round(time.time() - t, 1)}
        print(mode, json.dumps(results["runs"][mode], indent=1), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)  # after every mode: a cut-short run keeps what it has
        OUT.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
