"""Trainer: learning works, references use the train split only, resume is exact, losses are float64-safe."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

import phizoo
from phizoo.train import Trainer, TrainingInterrupted, load_trainer_state
from phizoo.train.config import load_config, make_config, parse_override
from phizoo.train.losses import compute_loss
from phizoo.train.references import fit_element_references
from phizoo.train.schedule import WarmupCosine
from phizoo.train.state import STATE_FILE
from tests.train import synthetic


@pytest.fixture(scope="module")
def data():
    items = synthetic.dataset(300, seed=1)
    return items, synthetic.splits(len(items), n_val=40, n_test=20, seed=0)


def _model(phi: bool, seed: int = 0):
    torch.manual_seed(seed)
    return phizoo.build_model("painn", phi=phi, preset="test")


def _baselines(items, sp):
    """MAE (eV) of the mean predictor, of the best composition-only predictor, and of zero forces."""
    e = {k: np.array([float(items[i].energy) for i in v]) for k, v in sp.items()}
    refs = fit_element_references(items, sp["train"]).numpy()
    comp = {k: np.array([refs[items[i].z.numpy()].sum() for i in v]) for k, v in sp.items()}
    res_mean = (e["train"] - comp["train"]).mean()
    return {
        "mean": float(np.abs(e["val"] - e["train"].mean()).mean()),
        "composition": float(np.abs(e["val"] - comp["val"] - res_mean).mean()),
        "zero_forces": float(torch.cat([items[i].forces for i in sp["val"]]).abs().mean()),
    }


TRAIN_CFG = {"epochs": 8, "batch_size": 16, "optimizer": {"lr": 3e-3}, "schedule": {"warmup_steps": 20},
             "loss": {"energy": 1.0, "forces": 1.0}, "ema": {"decay": 0.99},
             "monitor": "val_energy_mae", "progress": False}


@pytest.mark.parametrize("phi", [False, True], ids=["base", "phi"])
def test_training_beats_baselines(data, phi, tmp_path, capsys):
    items, sp = data
    base = _baselines(items, sp)
    summary = Trainer(_model(phi), items, sp, TRAIN_CFG, output_dir=tmp_path).fit()
    first, best = summary["history"][0], summary["val"]
    e_mae, f_mae = best["energy_mae_meV"] / 1000, best["forces_mae_meV_per_A"] / 1000
    with capsys.disabled():
        print(f"\n[{'phi' if phi else 'base'}] val energy MAE: mean predictor {base['mean']:.4g} eV, "
              f"composition-only {base['composition']:.4g} eV, after epoch 1 {first['val_energy_mae']:.4g} eV, "
              f"trained {e_mae:.4g} eV; force MAE: zero {base['zero_forces']:.4g}, trained {f_mae:.4g} eV/Å; "
              f"test {summary['test']['energy_mae_meV']:.4g} meV")
    assert e_mae < 0.25 * base["composition"] and e_mae < 1e-3 * base["mean"]
    assert f_mae < 0.25 * base["zero_forces"]
    assert e_mae < first["val_energy_mae"]
    # outputs: checkpoint with card, metrics CSV, resolved config
    card = phizoo.pretrained.read_card(tmp_path / "best")
    assert card["split"]["train"]["size"] == len(sp["train"]) and card["training"]["best_epoch"] >= 1
    assert card["metrics"]["test"]["energy_mae_meV"] == pytest.approx(summary["test"]["energy_mae_meV"])
    assert "hardware" in card["training"] and card["hyperparameters"]["optimizer"]["lr"] == 3e-3
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + TRAIN_CFG["epochs"] and "val_energy_mae" in lines[0]
    loaded = phizoo.load_checkpoint(tmp_path / "best")
    torch.testing.assert_close(loaded.element_energies, fit_element_references(items, sp["train"]))
    assert "val_pde_residual" not in lines[0]  # the continuous Φ has no PDE residual to log (ρ = Lφ)


def _weights_equal(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("kill_at", [13, 20], ids=["mid-epoch", "epoch-boundary"])
def test_resume_reaches_the_uninterrupted_state(data, tmp_path, kill_at):
    items, sp = data
    small = {"train": sp["train"][:80], "val": sp["val"][:16]}
    cfg = {"epochs": 3, "batch_size": 8, "optimizer": {"lr": 2e-3}, "schedule": {"warmup_steps": 5},
           "loss": {"forces": 1.0}, "ema": {"decay": 0.9}, "checkpoint_every": 3,
           "progress": False}
    ref = Trainer(_model(True), items, small, cfg, output_dir=tmp_path / "a")
    ref.fit()

    def kill(trainer):
        if trainer.step == kill_at:
            raise TrainingInterrupted("simulated crash")

    crashed = Trainer(_model(True), items, small, cfg, output_dir=tmp_path / "b", callbacks=[kill])
    with pytest.raises(TrainingInterrupted):
        crashed.fit()
    state = torch.load(tmp_path / "b" / STATE_FILE, weights_only=True)  # no arbitrary unpickling
    assert state["step"] < kill_at + 1 and state["step"] > 0
    resumed = Trainer(_model(True, seed=123), items, small, cfg, output_dir=tmp_path / "b")  # other init: overwritten
    resumed.fit(resume=True)
    assert resumed.step == ref.step == 30
    assert _weights_equal(ref.model.state_dict(), resumed.model.state_dict()) <= 1e-6
    assert _weights_equal(ref.ema.module.state_dict(), resumed.ema.module.state_dict()) <= 1e-6
    sa, sb = ref.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert max(float((sa[i]["exp_avg_sq"] - sb[i]["exp_avg_sq"]).abs().max()) for i in sa) <= 1e-6
    drop = ("time_s",)
    ha = [{k: v for k, v in r.items() if k not in drop} for r in ref.history]
    hb = [{k: v for k, v in r.items() if k not in drop} for r in resumed.history]
    assert ha == hb
    best_a = phizoo.load_checkpoint(tmp_path / "a" / "best").state_dict()
    best_b = phizoo.load_checkpoint(tmp_path / "b" / "best").state_dict()
    assert _weights_equal(best_a, best_b) <= 1e-6
    assert load_trainer_state(tmp_path / "b" / STATE_FILE)["epoch"] == 3


def test_resume_refuses_other_splits(data, tmp_path):
    items, sp = data
    small = {"train": sp["train"][:16], "val": sp["val"][:8]}
    cfg = {"epochs": 1, "batch_size": 8, "progress": False}
    Trainer(_model(False), items, small, cfg, output_dir=tmp_path).fit()
    other = {"train": sp["train"][1:17], "val": sp["val"][:8]}
    with pytest.raises(RuntimeError, match="different splits"):
        Trainer(_model(False), items, other, cfg, output_dir=tmp_path).fit(resume=True)


def test_references_are_fitted_on_the_train_split_only(data, tmp_path):
    items, sp = data
    items = [d.clone() for d in items]
    fit = fit_element_references(items, sp["train"])
    for i in sp["test"] + sp["val"]:  # change every held-out energy: the fit must not move
        items[i].energy = items[i].energy + 50.0
    torch.testing.assert_close(fit_element_references(items, sp["train"]), fit, rtol=0, atol=0)
    items[sp["train"][0]].energy = items[sp["train"][0]].energy + 50.0
    assert not torch.equal(fit_element_references(items, sp["train"]), fit)
    # the trainer writes exactly that fit into the model
    small = {"train": sp["train"], "val": sp["val"][:4], "test": sp["test"]}
    tr = Trainer(_model(False), items, small, {"epochs": 0, "progress": False})
    tr.fit()
    torch.testing.assert_close(tr.model.element_energies, fit_element_references(items, sp["train"]))
    assert tr.model.element_energies.dtype == torch.float64
    # the fit recovers the synthetic per-element offsets up to the pair-energy contribution
    for z, off in synthetic.OFFSETS.items():
        assert abs(float(fit[z]) - off) < 2.0


def test_train_and_heldout_overlap_is_an_error(data):
    items, sp = data
    with pytest.raises(ValueError, match="train split and in val/test"):
        Trainer(_model(False), items, {"train": sp["train"], "val": sp["train"][:3]}, {"progress": False})


def test_energy_loss_uses_float64_totals():
    """ΔE is formed in float64 and then cast: a 1 meV error on a 10⁵ eV total survives float32."""
    z = torch.tensor([6, 1, 1])
    b = Batch.from_data_list([Data(z=z, pos=torch.zeros(3, 3), energy=torch.tensor([-123456.789], dtype=torch.float64))])
    out = {"energy": torch.tensor([-123456.788], dtype=torch.float64)}
    loss, parts = compute_loss(out, b, {"energy": 1.0, "per_atom_energy": False, "type": "l1"}, torch.float32)
    assert loss.dtype == torch.float32
    assert abs(parts["energy"] - 1e-3) < 1e-8
    loss, parts = compute_loss(out, b, {"energy": 1.0, "per_atom_energy": True, "type": "mse"}, torch.float32)
    assert abs(parts["energy"] - (1e-3 / 3) ** 2) < 1e-12


def test_schedule_warmup_then_cosine():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = WarmupCosine(opt, total_steps=110, warmup_steps=10, min_ratio=0.1)
    lrs = []
    for _ in range(110):
        lrs.append(s.lr)
        s.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.lr == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_config_overrides_and_unknown_keys(tmp_path):
    cfg = make_config({"model": {"name": "painn"}}, parse_override("optimizer.lr=1e-3"), parse_override("epochs=3"))
    assert cfg["optimizer"]["lr"] == 1e-3 and cfg["epochs"] == 3
    with pytest.raises(KeyError, match="optimizer.lrr"):
        make_config(parse_override("optimizer.lrr=1"))
    from phizoo.registry import repo_root

    import phizoo

    for model in phizoo.list_models():  # every backbone has a training config per shipped dataset
        for dataset in ("qm9", "md22"):
            c = load_config(repo_root() / "zoo_configs" / f"{model}-{dataset}.yaml")
            assert c["model"]["name"] == model and c["model"]["phi"] is True and c["data"]["dataset"] == dataset
            assert c["model"]["preset"] == "cpu" and (c["loss"]["forces"] > 0) == (dataset == "md22")
            assert c["schedule"]["type"] == "plateau"  # the zoo is trained to a validation plateau (issue 14)


def test_selected_model_is_the_best_validation_epoch_without_output_dir(data):
    """No files: the returned model is still the best validation epoch, not the last one."""
    items, sp = data
    small = {"train": sp["train"][:32], "val": sp["val"][:16]}
    cfg = {"epochs": 2, "batch_size": 8, "optimizer": {"lr": 1e-3}, "ema": {"enabled": False},
           "monitor": "val_energy_mae", "progress": False}
    snapshot = {}

    def sabotage(trainer):
        if trainer.step == 4:  # last step of epoch 1: remember what is validated
            snapshot.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        if trainer.step == 8:  # last step of epoch 2: ruin the weights
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(0.2 * torch.randn_like(p))
            trainer.ema.copy_from(trainer.model)

    tr = Trainer(_model(False), items, small, cfg, callbacks=[sabotage], verbose=False)
    summary = tr.fit()
    assert summary["best_epoch"] == 1 and tr.history[1]["val_energy_mae"] > tr.history[0]["val_energy_mae"]
    assert _weights_equal(tr.best_model.state_dict(), snapshot) == 0.0
