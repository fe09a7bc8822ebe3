"""The trainer's optimiser set-up: AdamW parameter groups (no weight decay on biases and scalars)
and the learning-rate schedule (linear warm-up + cosine decay, stepped per optimiser step)."""
from __future__ import annotations

import math

import torch


class WarmupCosine:
    """lr(step) = lr0 · (step+1)/warmup during warm-up, then cosine from lr0 to lr0·min_ratio."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float):
        self.optimizer = optimizer
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.min_ratio = float(min_ratio)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs), "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_ratio": self.min_ratio}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.total_steps, self.warmup_steps = int(state["total_steps"]), int(state["warmup_steps"])
        self.min_ratio = float(state["min_ratio"])
        self._apply()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
