"""``phizoo.finetune``: adapts a trained model to new data; freezing, head reset and reference refits."""
from __future__ import annotations

import copy

import pytest
import torch

import phizoo
from phizoo.eval import evaluate
from phizoo.train import Trainer
from tests.train import synthetic


@pytest.fixture(scope="module")
def pretrained():
    items = synthetic.dataset(160, seed=11)
    sp = synthetic.splits(len(items), n_val=20, seed=2)
    torch.manual_seed(0)
    model = phizoo.build_model("painn", phi=True, preset="test")
    cfg = {"epochs": 6, "batch_size": 8, "optimizer": {"lr": 3e-3}, "schedule": {"warmup_steps": 10},
           "loss": {"forces": 1.0}, "ema": {"decay": 0.99}, "progress": False}
    tr = Trainer(model, items, sp, cfg)
    tr.fit()
    return tr.best_model


@pytest.fixture(scope="module")
def shifted():
    """'Another level of theory': per-element offsets moved by a few eV, pair energies scaled by 1.1."""
    items = synthetic.dataset(100, seed=12)
    shift = {1: 0.5, 6: -3.0, 7: 2.0, 8: 1.0}
    out = []
    for d in items:
        d = d.clone()
        pair = d.energy - sum(synthetic.OFFSETS[int(z)] for z in d.z)
        d.energy = sum(synthetic.OFFSETS[int(z)] + shift[int(z)] for z in d.z) + 1.1 * pair
        d.forces = 1.1 * d.forces
        out.append(d)
    return out, synthetic.splits(len(out), n_val=20, n_test=20, seed=3)


def test_finetune_adapts_to_new_references(pretrained, shifted, capsys):
    items, sp = shifted
    before = evaluate(pretrained, items, sp["test"])
    original = {k: v.clone() for k, v in pretrained.state_dict().items()}
    tuned, metrics = phizoo.finetune(pretrained, items, sp, epochs=4, lr=1e-3, batch_size=8,
                                     refit_references=True, loss={"forces": 1.0})
    after = evaluate(tuned, items, sp["test"])
    with capsys.disabled():
        print(f"\n[finetune] test energy MAE {before['energy_mae_meV']:.1f} -> {after['energy_mae_meV']:.1f} meV, "
              f"forces {before['forces_mae_meV_per_A']:.1f} -> {after['forces_mae_meV_per_A']:.1f} meV/Å")
    assert after["energy_mae_meV"] < 0.2 * before["energy_mae_meV"]
    assert after["forces_mae_meV_per_A"] < before["forces_mae_meV_per_A"]
    assert metrics["test"]["energy_mae_meV"] == pytest.approx(after["energy_mae_meV"], rel=1e-6)
    assert metrics["best_epoch"] >= 1 and "val" in metrics
    # the input model is left untouched
    for k, v in pretrained.state_dict().items():
        assert torch.equal(v, original[k]), k
    # references were refitted on the new train split
    assert not torch.equal(tuned.element_energies, pretrained.element_energies)


def test_finetune_freeze_backbone_and_reset_head(pretrained, shifted, tmp_path):
    items, sp = shifted
    tuned, metrics = phizoo.finetune(pretrained, items, sp, epochs=1, freeze_backbone=True, reset_head=True,
                                     refit_references=True, output_dir=tmp_path)
    for (k, a), b in zip(pretrained.backbone.state_dict().items(), tuned.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(pretrained.head[0].weight, tuned.head[0].weight)
    assert metrics["finetune"] == {"freeze_backbone": True, "refit_references": True, "reset_head": True,
                                   "charge_spin": False}
    card = phizoo.pretrained.read_card(tmp_path / "best")
    assert card["references"]["fitted_on"] == "train" and "scale" in card["references"]


def test_finetune_warns_about_elements_without_references(pretrained, shifted):
    items, sp = shifted
    model = copy.deepcopy(pretrained)
    model.element_energies[8] = 0.0
    with pytest.warns(UserWarning, match=r"elements \[8\] have no reference energy"):
        phizoo.finetune(model, items, {"train": sp["train"][:8], "val": sp["val"][:4]}, epochs=0)
