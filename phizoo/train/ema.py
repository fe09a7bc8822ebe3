"""Exponential moving average of the weights.

The EMA copy is a full module (``ema.module``): evaluation and checkpoints use it directly.
Floating-point parameters are averaged; buffers (element references, scale, shift) are
copied from the live model, so the EMA model always carries the current references.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``θ_ema ← d·θ_ema + (1 − d)·θ`` after every optimiser step.

    Args:
        model: the live model (unwrapped, not the DDP wrapper).
        decay: the target decay ``d``.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at update ``n`` so early, random
            weights are forgotten quickly.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.module = copy.deepcopy(model)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for e, p in zip(self.module.parameters(), model.parameters()):
            if p.requires_grad:
                e.mul_(d).add_(p.detach(), alpha=1.0 - d)
            else:
                e.copy_(p.detach())
        live = dict(model.named_buffers())
        for name, e in self.module.named_buffers():
            if name in live:  # a deep copy may hold extra constant buffers (e3nn fx modules)
                e.copy_(live[name])
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Make the EMA equal to ``model`` (used when EMA is disabled)."""
        self.module.load_state_dict(model.state_dict())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "module": {k: v.detach().clone() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"])
