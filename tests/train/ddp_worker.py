"""Run by ``torchrun --nproc_per_node 2`` from test_distributed.py: one epoch of DDP training."""
from __future__ import annotations

import sys

import torch

from tests.train.test_distributed import CONFIG, make_model, make_data
from phizoo.train import Trainer


def main(out: str, phi: str) -> None:
    torch.set_num_threads(1)
    items, splits = make_data()
    trainer = Trainer(make_model(phi == "phi"), items, splits, CONFIG, device="cpu")
    assert trainer.dist.world_size == 2, trainer.dist
    summary = trainer.fit()
    if trainer.dist.rank == 0:
        torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict(),
                    "val": summary["val"], "steps": trainer.step}, out)
    import torch.distributed as dist

    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
