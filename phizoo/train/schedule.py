"""The trainer's optimiser set-up: AdamW parameter groups (no weight decay on biases and scalars)
and the learning-rate schedules, stepped per optimiser step and told every validation result:

* ``WarmupCosine`` (``schedule.type: cosine``): linear warm-up, then cosine decay to lr0·min_ratio
  at the last step of the epoch budget;
* ``WarmupPlateau`` (``schedule.type: plateau``): linear warm-up, then lr0 until the monitored
  validation metric stops improving; lr × factor after ``patience`` validations without a relative
  improvement of ``threshold``, and training ends (the validation plateau) when a reduction is due
  with lr already at lr0·min_ratio. The epoch budget stays the upper limit; with
  ``anneal_epochs`` > 0 the last that many epochs of the budget anneal the lr by a cosine from its
  plateau value to lr0·min_ratio, so a run the budget ends does not stop at a high lr."""
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

    finished = False  # the cosine schedule runs the whole epoch budget

    def observe(self, value: float) -> None:
        """A validation result (unused: the cosine is fixed in advance)."""

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs), "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_ratio": self.min_ratio}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.total_steps, self.warmup_steps = int(state["total_steps"]), int(state["warmup_steps"])
        self.min_ratio = float(state["min_ratio"])
        self._apply()


class WarmupPlateau(WarmupCosine):
    """lr = lr0 · warm-up ramp · scale · anneal; ``observe`` multiplies scale by ``reduce`` (the
    config's ``factor``) after ``patience`` validations without a relative improvement of
    ``threshold`` and sets ``finished`` when a reduction is due at scale = min_ratio (module
    docstring). anneal = 1 until ``total_steps - anneal_steps``, then a cosine from 1 to
    min_ratio/scale at ``total_steps``: the end of the budget always reaches lr0·min_ratio."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, min_ratio: float, reduce: float,
                 patience: int, threshold: float, total_steps: int = 1, anneal_steps: int = 0):
        self.scale, self.reduce, self.patience, self.threshold = 1.0, float(reduce), int(patience), float(threshold)
        self.best, self.bad, self.finished = math.inf, 0, False
        self.anneal_steps = max(int(anneal_steps), 0)
        super().__init__(optimizer, total_steps, warmup_steps, min_ratio)

    def factor(self, step: int) -> float:
        f = ((step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0) * self.scale
        start = self.total_steps - self.anneal_steps
        if self.anneal_steps and step > start:
            floor = min(self.min_ratio / self.scale, 1.0)
            progress = min((step - start) / self.anneal_steps, 1.0)
            f *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return f

    def observe(self, value: float) -> None:
        if value < self.best * (1.0 - self.threshold):
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad < self.patience:
            return
        self.bad = 0
        if self.scale <= self.min_ratio * (1.0 + 1e-9):
            self.finished = True
        self.scale = max(self.scale * self.reduce, self.min_ratio)
        self._apply()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "scale": self.scale, "best": self.best, "bad": self.bad,
                "finished": self.finished, "plateau": [self.reduce, self.patience, self.threshold]}

    def load_state_dict(self, state: dict) -> None:
        """Progress (scale, best, steps) comes from ``state``; the budget (total and anneal steps)
        from the config this schedule was built with, which may have been raised for the resume."""
        self.scale, self.best, self.bad = float(state["scale"]), float(state["best"]), int(state["bad"])
        self.finished = bool(state["finished"])
        self.reduce, self.patience, self.threshold = (float(state["plateau"][0]), int(state["plateau"][1]),
                                                      float(state["plateau"][2]))
        total = self.total_steps
        super().load_state_dict(state)
        self.total_steps = total
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
