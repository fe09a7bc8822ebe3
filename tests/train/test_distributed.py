"""DDP (gloo, 2 CPU processes via torchrun) gives the weights of one process on the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import phizoo
from phizoo.train import Trainer
from tests.train import synthetic

ROOT = Path(__file__).resolve().parents[2]
# 32 training molecules, global batch 8 -> 4 steps; each rank takes 4 molecules of every global batch
CONFIG = {"epochs": 1, "batch_size": 8, "val_batch_size": 4, "optimizer": {"lr": 2e-3},
          "schedule": {"warmup_steps": 2}, "loss": {"forces": 1.0},
          "ema": {"decay": 0.9}, "progress": False}


def make_data():
    items = synthetic.dataset(44, seed=3)
    return items, {"train": list(range(32)), "val": list(range(32, 44))}


def make_model(phi: bool):
    torch.manual_seed(0)
    return phizoo.build_model("painn", phi=phi, preset="test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("phi", [True], ids=["phi"])
def test_ddp_matches_single_process(tmp_path, phi, capsys):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not found next to the interpreter")
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(ROOT / "tests" / "train" / "ddp_worker.py"), str(out), "phi" if phi else "base"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the single-process reference runs meanwhile
    items, splits = make_data()
    single = Trainer(make_model(phi), items, splits, CONFIG, device="cpu")
    summary = single.fit()
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-4000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["steps"] == single.step == 4
    diff = max(float((ddp["model"][k] - v).abs().max()) for k, v in single.model.state_dict().items())
    ema_diff = max(float((ddp["ema"][k] - v).abs().max()) for k, v in single.ema.module.state_dict().items())
    moved = max(float((v - make_model(phi).state_dict()[k]).abs().max()) for k, v in single.model.state_dict().items()
                if k not in ("element_energies", "scale", "shift"))
    with capsys.disabled():
        print(f"\n[ddp] max |w_ddp - w_single| = {diff:.3g} (EMA {ema_diff:.3g}); weights moved by up to {moved:.3g}")
    assert moved > 1e-3  # training did something
    assert diff < 1e-5 and ema_diff < 1e-5
    # validation metrics gathered over both ranks match the single-process ones
    for k in ("energy_mae_meV", "forces_mae_meV_per_A"):
        assert ddp["val"][k] == pytest.approx(summary["val"][k], rel=1e-4)
