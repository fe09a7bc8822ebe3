"""``schedule.type: plateau``: the learning rate halves after ``patience`` validations without
improvement, training stops at the validation plateau (lr at its floor and still no progress), the
budget's last ``anneal_epochs`` anneal lr to its floor, and an interrupted run resumes to the same
state, also when the anneal is added on resume."""
from __future__ import annotations

import pytest
import torch

import phizoo
from phizoo.pretrained import read_card
from phizoo.train import Trainer, TrainingInterrupted
from phizoo.train.schedule import WarmupPlateau
from tests.train import synthetic


def _schedule(**kw):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    args = {"warmup_steps": 4, "min_ratio": 0.25, "reduce": 0.5, "patience": 2, "threshold": 0.01} | kw
    return WarmupPlateau(opt, **args)


def test_lr_warms_up_then_halves_on_each_plateau_and_stops_at_the_floor():
    s = _schedule()
    lrs = []
    for _ in range(6):
        lrs.append(s.lr)
        s.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    seen = []
    # improving by more than 1 % keeps lr; 0.995 of the best is no improvement
    for value in (10.0, 9.0, 8.95, 8.99, 8.0, 8.0, 8.0, 8.0, 8.0):
        s.observe(value)
        seen.append((s.lr, s.finished))
    assert seen == [(1.0, False), (1.0, False), (1.0, False), (0.5, False), (0.5, False), (0.5, False),
                    (0.25, False), (0.25, False), (0.25, True)]
    s.step()
    assert s.lr == 0.25  # the per-step update keeps the reduced rate


def test_state_round_trip():
    a = _schedule()
    for _ in range(5):
        a.step()
    for value in (3.0, 3.0, 3.0):
        a.observe(value)
    b = _schedule()
    b.load_state_dict(a.state_dict())
    for s in (a, b):
        s.observe(3.0)
        s.observe(3.0)
        s.step()
    assert (a.lr, a.scale, a.best, a.bad, a.finished) == (b.lr, b.scale, b.best, b.bad, b.finished)
    assert a.lr == 0.25


def test_anneal_takes_the_last_steps_of_the_budget_from_the_plateau_lr_to_the_floor():
    s = _schedule(total_steps=20, anneal_steps=8, patience=1)
    plain = _schedule(patience=1)
    lrs = []
    for step in range(21):
        if step == 6:  # a plateau: lr halves (scale 0.5) before the anneal starts
            for t in (s, plain):
                t.observe(1.0), t.observe(1.0)
        lrs.append(s.lr)
        assert s.lr == pytest.approx(plain.lr if step <= 12 else lrs[-1])
        s.step(), plain.step()
    assert lrs[12] == pytest.approx(0.5) and lrs[20] == pytest.approx(0.25)  # lr0·min_ratio at the end
    assert all(a > b for a, b in zip(lrs[12:20], lrs[13:21]))               # a monotone cosine
    assert lrs[16] == pytest.approx(0.25 + 0.25 * 0.5)                        # half way: the mean
    resumed = _schedule(total_steps=40, anneal_steps=8, patience=1)          # a budget raised on resume
    resumed.load_state_dict(s.state_dict())
    assert resumed.total_steps == 40 and resumed.lr == pytest.approx(0.5)    # back before the anneal


CFG = {"epochs": 40, "batch_size": 8, "optimizer": {"lr": 2e-3},
       "schedule": {"type": "plateau", "warmup_steps": 2, "patience": 1, "factor": 0.5, "min_lr_ratio": 0.25,
                    "threshold": 0.5},  # "improving" needs halving the error: a plateau within a few epochs
       "loss": {"forces": 1.0}, "ema": {"decay": 0.9}, "progress": False, "monitor": "val_energy_mae"}


def test_training_stops_at_the_validation_plateau_and_resumes_identically(tmp_path):
    items = synthetic.dataset(60, seed=1)
    sp = {"train": list(range(40)), "val": list(range(40, 52))}

    def model():
        torch.manual_seed(0)
        return phizoo.build_model("painn", preset="test")

    ref = Trainer(model(), items, sp, CFG, output_dir=tmp_path / "a")
    summary = ref.fit()
    lrs = [r["lr"] for r in ref.history]
    assert ref.schedule.finished and summary["epochs"] == len(ref.history) < CFG["epochs"]
    assert set(lrs) <= {2e-3, 1e-3, 5e-4} and lrs[-1] == pytest.approx(5e-4)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert read_card(tmp_path / "a" / "best.json")["training"]["stopped"] == "validation plateau"
    capped = Trainer(model(), items, sp, CFG | {"epochs": 2}, output_dir=tmp_path / "c")
    capped.fit()  # the budget runs out before the plateau: the card says so
    assert read_card(tmp_path / "c" / "best.json")["training"]["stopped"] == "epoch limit"
    no_plateau = CFG["schedule"] | {"patience": 100, "anneal_epochs": 2}
    annealed = Trainer(model(), items, sp, CFG | {"epochs": 3, "schedule": no_plateau}, output_dir=tmp_path / "d")
    annealed.fit()  # lr0 for the first epoch, then the cosine ends the budget at lr0·min_ratio
    assert [r["lr"] for r in annealed.history] == pytest.approx([2e-3, 1.25e-3, 5e-4])

    def kill(trainer):
        if trainer.step == 12:
            raise TrainingInterrupted("simulated crash")

    crashed = Trainer(model(), items, sp, CFG | {"checkpoint_every": 4}, output_dir=tmp_path / "b", callbacks=[kill])
    with pytest.raises(TrainingInterrupted):
        crashed.fit()
    resumed = Trainer(model(), items, sp, CFG | {"checkpoint_every": 4}, output_dir=tmp_path / "b")
    resumed.fit(resume=True)
    assert [r["lr"] for r in resumed.history] == lrs and resumed.step == ref.step
