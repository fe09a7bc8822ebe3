"""What a training run reports and writes besides its resumable state: validation metrics,
the checkpoint card, the ``best``/``last`` checkpoints, ``metrics.csv``, TensorBoard and the
hardware it ran on (:class:`TrainerOutputs`, methods of ``Trainer``)."""
from __future__ import annotations

import csv
import io
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..io import atomic_write
from ..pretrained import save_checkpoint
from .data import indices_digest
from .losses import finalize_errors

if TYPE_CHECKING:
    from .trainer import Trainer


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _tensorboard(logdir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(str(logdir))


class TrainerOutputs:
    """``Trainer`` methods: validation metrics, checkpoint cards and checkpoints, ``metrics.csv``."""

    def validate(self, split: str = "val", model=None) -> dict[str, float]:
        """Metrics (eV units) of the EMA model (or ``model``) on ``split``, all ranks combined."""
        from ..eval.metrics import error_sums, has_forces

        m = model if model is not None else self.ema.module
        idx = self.splits[split]
        sums = error_sums(m, self.dataset, idx, int(self.cfg["val_batch_size"]), self.device,
                          forces=has_forces(self.dataset, idx), info=self.dist)
        metrics = finalize_errors(sums)
        w = self._weights()
        e_key = "energy_rmse_per_atom" if w.get("per_atom_energy", True) else "energy_rmse"
        ea_key = "energy_mae_per_atom" if w.get("per_atom_energy", True) else "energy_mae"
        sq = w.get("type", "mse") == "mse"
        loss = w["energy"] * (metrics[e_key] ** 2 if sq else metrics[ea_key])
        if "forces_mae" in metrics and w.get("forces"):
            loss += w["forces"] * (metrics["forces_rmse"] ** 2 if sq else metrics["forces_mae"])
        if "pde_residual" in metrics:
            loss += w.get("pde", 0.0) * metrics["pde_residual"] + w.get("charge", 0.0) * metrics["charge_error_mae"]
        metrics["loss"] = loss
        return metrics

    # ---------------------------------------------------------- checkpoints
    def card(self, metrics: dict | None = None) -> dict[str, Any]:
        split_names = self.cfg["data"]
        return {
            "dataset": self.dataset_info,
            "split": {k: {"name": split_names.get(k, k), "size": len(v), "sha256": indices_digest(v)}
                      for k, v in self.splits.items()},
            "hyperparameters": self.cfg,
            "references": {"fitted_on": "train" if self.cfg["references"]["fit"] else "not refitted",
                           **{k: v for k, v in self.references_info.items() if k != "element_energies"}},
            "training": {"time_s": round(self.elapsed, 3), "epochs_completed": self.epoch, "steps": self.step,
                         "stopped": self.stop_reason(), "best_epoch": self.best["epoch"], "monitor": self.cfg["monitor"],
                         "selection": "best validation epoch (EMA weights); test never used for selection",
                         "world_size": self.dist.world_size, "device": str(self.device), "hardware": hardware()},
            "metrics": metrics or {},
        }

    def stop_reason(self) -> str:
        """Why training ended: "validation plateau" (``schedule.type: plateau`` reached its floor and
        stopped improving), "epoch limit" (the budget ``epochs`` ran out first), "max_steps", or
        "in progress" (a card written during training)."""
        if getattr(self.schedule, "finished", False):
            return "validation plateau"
        if self.epoch >= int(self.cfg["epochs"]):
            return "epoch limit"
        if self.step >= self._total_steps():
            return "max_steps"
        return "in progress"

    def _save_model(self, name: str, metrics: dict) -> None:
        if self.output_dir is None or not self.is_main:
            return
        save_checkpoint(self.ema.module, self.output_dir / name, **self.card(metrics))

    def _write_metrics(self) -> None:
        if self.output_dir is None or not self.is_main or not self.history:
            return
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        atomic_write(self.output_dir / "metrics.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _sums_for(trainer: Trainer, model, split: str) -> dict[str, float]:
    from ..eval.metrics import error_sums, has_forces

    idx = trainer.splits[split]
    return error_sums(model, trainer.dataset, idx, int(trainer.cfg["val_batch_size"]), trainer.device,
                      forces=has_forces(trainer.dataset, idx), info=trainer.dist)


def _metrics_for_card(row: dict) -> dict[str, float]:
    from ..eval.metrics import to_mev

    out = to_mev({k[4:]: v for k, v in row.items() if k.startswith("val_")})
    out["epoch"] = row.get("epoch")
    return out
