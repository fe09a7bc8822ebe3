"""End to end on real data: QM9 (from qm9pack) -> LMDB -> training -> evaluation, base and Φ."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import phizoo
from phizoo.data import LmdbDataset
from phizoo.data import convert_qm9
from phizoo.eval import evaluate
from phizoo.train import Trainer
from tests.optional import needs_qm9pack

pytestmark = needs_qm9pack

CFG = {"epochs": 8, "batch_size": 16, "optimizer": {"lr": 2e-3}, "schedule": {"warmup_steps": 10},
       "loss": {"energy": 1.0, "forces": 0.0}, "ema": {"decay": 0.9},
       "monitor": "val_energy_mae", "progress": False}


@pytest.fixture(scope="module")
def qm9(tmp_path_factory):
    path = convert_qm9("qm9pack", tmp_path_factory.mktemp("qm9") / "qm9.lmdb", limit=800)
    return LmdbDataset(path)


@pytest.mark.parametrize("phi", [False, True], ids=["base", "phi"])
def test_qm9_training_beats_mean_and_composition_baselines(qm9, phi, capsys):
    splits = {k: list(qm9.split_indices(k)) for k in ("train", "val", "test")}
    e = np.asarray(qm9.energies, dtype=np.float64)
    refs = qm9.element_references  # fitted on the train split by the converter
    comp = np.array([sum(refs[int(z)] for z in qm9[i].z) for i in range(len(qm9))])
    offset = (e - comp)[splits["train"]].mean()
    mean_mae = np.abs(e[splits["val"]] - e[splits["train"]].mean()).mean()
    comp_mae = np.abs(e[splits["val"]] - comp[splits["val"]] - offset).mean()
    torch.manual_seed(0)
    model = phizoo.build_model("painn", phi=phi, preset="cpu")
    trainer = Trainer(model, qm9, splits, CFG)
    summary = trainer.fit()
    val_mae = summary["val"]["energy_mae_meV"] / 1000
    test = evaluate(trainer.best_model, qm9, splits["test"])
    assert test["energy_mae_meV"] == pytest.approx(summary["test"]["energy_mae_meV"], rel=1e-4)
    with capsys.disabled():
        print(f"\n[QM9 {'phi' if phi else 'base'}] val energy MAE: mean predictor {mean_mae:.3f} eV, "
              f"composition-only {comp_mae:.3f} eV, trained {val_mae:.3f} eV; test {test['energy_mae_meV']:.1f} meV")
    assert val_mae < 0.5 * comp_mae and val_mae < 1e-3 * mean_mae
