"""The trainer's resumable state, ``trainer_state.pt``: model, EMA, optimiser, schedule, RNG
states, epoch, position in the epoch and history, as plain tensors and containers (loadable
with ``torch.load(weights_only=True)``). The RNG helpers, the reader, and :class:`TrainerState`,
the ``Trainer`` methods that write and restore it."""
from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write
from .data import indices_digest

STATE_FORMAT = "phizoo-trainer-state/1"
STATE_FILE = "trainer_state.pt"


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def load_trainer_state(path: str | Path) -> dict:
    """Read a trainer state (plain tensors and containers only: ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{path}: not a phizoo trainer state (format {state.get('format')!r})")
    return state


class TrainerState:
    """``Trainer`` methods: its resumable state (``state_dict``, ``load_state_dict``, ``save_state``)."""

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rng_state(),
            "best": dict(self.best),
            "history": list(self.history),
            "accum": dict(self._accum),
            "elapsed": self.elapsed,
            "references": self.references_info,
            "config": self.cfg,
            "world_size": self.dist.world_size,
            "splits_sha256": {k: indices_digest(v) for k, v in self.splits.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        digests = {k: indices_digest(v) for k, v in self.splits.items()}
        if state["splits_sha256"] != digests:
            raise RuntimeError("the trainer state was written for different splits; refusing to resume")
        if state["config"] != self.cfg:
            changed = sorted(k for k in self.cfg if state["config"].get(k) != self.cfg[k])
            warnings.warn(f"resuming with a changed config (keys: {', '.join(changed)}); the run will not "
                          "reproduce an uninterrupted one", stacklevel=2)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch, self.batch_in_epoch, self.step = int(state["epoch"]), int(state["batch_in_epoch"]), int(state["step"])
        self.best = dict(state["best"])
        self.history = list(state["history"])
        self._accum = dict(state["accum"])
        self.elapsed = float(state["elapsed"])
        self.references_info = state.get("references", {})
        set_rng_state(state["rng"])

    def save_state(self) -> None:
        if self.output_dir is None or not self.is_main:
            return
        state = self.state_dict()
        atomic_write(self.output_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))
