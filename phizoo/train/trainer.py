"""The phizoo trainer.

* AdamW (no weight decay on biases and scalars), linear warm-up + cosine decay per step,
  gradient-norm clipping, EMA of the weights (validation, selection and checkpoints use
  the EMA weights).
* Loss: energy (optionally per atom) + forces + λ_pde·pde_residual + λ_q·|Σρ − Q|.
* Element references fitted by least squares on the TRAINING split only, written into
  ``model.element_energies``; ``scale``/``shift`` from training statistics.
* Selection on validation only (``monitor``); the test split, if any, is evaluated once
  with the selected checkpoint and reported, never used to choose anything.
* Output directory: ``best.{safetensors,json}`` (phizoo checkpoint, EMA weights of the best
  validation epoch), ``last.*`` (EMA weights of the last epoch), ``trainer_state.pt``
  (everything needed to resume, loadable with ``torch.load(weights_only=True)``),
  ``metrics.csv``, ``config.yaml`` and ``tensorboard/`` when TensorBoard is installed.
* Resume: the state holds model, EMA, optimiser, schedule, RNG states, epoch, position in
  the epoch and history; batches come from a seeded permutation per epoch, so a resumed run
  retraces the uninterrupted one exactly (bitwise on CPU).
* Distributed: under ``torchrun`` every rank takes ``batch_size / world_size`` molecules of
  each global batch (``DistributedSampler`` order); losses are normalised by global counts so
  gradients equal the single-process global-batch gradients. Rank 0 logs and writes.

The pieces next to this module: ``schedule.py`` (AdamW groups, warm-up + cosine),
``state.py`` (the resumable trainer state, RNG states), ``outputs.py`` (validation metrics,
checkpoints and their cards, ``metrics.csv``, TensorBoard).
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import yaml

from ..io import atomic_write
from ..pretrained import save_checkpoint
from . import distributed as D
from .config import make_config
from .data import chunk, describe_dataset, loader
from .ema import EMA
from .losses import compute_loss, finalize_errors
from .outputs import TrainerOutputs, _metrics_for_card, _sums_for, _tensorboard
from .references import apply_references
from .schedule import WarmupCosine, WarmupPlateau, param_groups
from .state import STATE_FILE, TrainerState, load_trainer_state, seed_everything


class TrainingInterrupted(RuntimeError):
    """Raise from a callback to stop a run abruptly (as if the process were killed)."""


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the validation metric became non-finite: the run stops; the
    checkpoints and trainer state of the last good epoch are kept (nothing non-finite is written)."""


class Trainer(TrainerState, TrainerOutputs):
    """Train a ``Potential`` on ``dataset`` with the given splits.

    Args:
        model: a ``phizoo`` ``Potential`` (fresh from ``build_model`` or loaded).
        dataset: a map-style dataset of PyG ``Data`` (``z``, ``pos``, ``energy`` [, ``forces``, ...]).
        splits: ``{"train": [...], "val": [...], "test": [...]}`` (``test`` optional, never used for selection).
        config: training config (``phizoo.train.config``; missing keys take defaults).
        output_dir: where checkpoints, state and metrics go (``None``: keep nothing on disk).
        callbacks: ``f(trainer)`` called after every optimiser step (raise ``TrainingInterrupted``
            to simulate a crash).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        dataset_info: recorded in the checkpoint card (name, path, ...).
        verbose: print one line per epoch (rank 0); ``config["progress"]`` controls the progress bars.
    """

    def __init__(self, model, dataset, splits: dict[str, Sequence[int]], config: dict | None = None,
                 output_dir: str | Path | None = None, callbacks: Sequence[Callable] = (),
                 device: str | torch.device | None = None, dataset_info: dict | None = None,
                 verbose: bool = True):
        self.cfg = make_config(config)
        self.verbose = verbose
        self.dist, self.device = D.setup(device)
        self.dataset = dataset
        if "train" not in splits or "val" not in splits:
            raise ValueError("splits must contain 'train' and 'val' index lists")
        self.splits = {k: [int(i) for i in v] for k, v in splits.items() if v is not None}
        overlap = set(self.splits["train"]) & (set(self.splits["val"]) | set(self.splits.get("test", [])))
        if overlap:
            raise ValueError(f"{len(overlap)} structures are in the train split and in val/test")
        self.model = model.to(self.device)
        self.output_dir = Path(output_dir) if output_dir else None
        self.callbacks = list(callbacks)
        self.dataset_info = dataset_info or describe_dataset(dataset)
        bs = int(self.cfg["batch_size"])
        if bs % self.dist.world_size:
            raise ValueError(f"batch_size {bs} (global) must be divisible by the world size {self.dist.world_size}")
        self.local_batch = bs // self.dist.world_size
        self.epoch = 0            # completed epochs
        self.batch_in_epoch = 0   # completed batches of the current epoch
        self.step = 0             # completed optimiser steps
        self.history: list[dict] = []
        self.best = {"value": math.inf, "epoch": -1}
        self.elapsed = 0.0
        self._accum: dict[str, float] = {}
        self.references_info: dict = {}
        self.optimizer = None
        self.schedule = None
        self.ema: EMA | None = None
        self._tb = None
        self._forces: bool | None = None
        self._best_state: dict | None = None
        self.best_model = None

    # ---------------------------------------------------------- set-up
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def _log(self, msg: str) -> None:
        if self.is_main and self.verbose:
            print(msg, flush=True)

    def _weights(self) -> dict:
        return self.cfg["loss"]

    def _needs_forces(self) -> bool:
        if self._forces is None:
            self._forces = bool(self._weights().get("forces")) and \
                getattr(self.dataset[self.splits["train"][0]], "forces", None) is not None
        return self._forces

    def steps_per_epoch(self) -> int:
        n = len(self.splits["train"])
        per_rank = math.ceil(n / self.dist.world_size)
        return math.ceil(per_rank / self.local_batch)

    def _total_steps(self) -> int:
        total = int(self.cfg["epochs"]) * self.steps_per_epoch()
        if self.cfg["max_steps"]:
            total = min(total, int(self.cfg["max_steps"]))
        return total

    def _build(self) -> None:
        o = self.cfg["optimizer"]
        self.optimizer = torch.optim.AdamW(param_groups(self.model, o["weight_decay"]), lr=o["lr"],
                                           betas=tuple(o["betas"]), eps=o["eps"])
        s = self.cfg["schedule"]
        warm = s["warmup_steps"] or 0
        if s.get("warmup_epochs"):
            warm = int(round(float(s["warmup_epochs"]) * self.steps_per_epoch()))
        if s["type"] == "plateau":
            self.schedule = WarmupPlateau(self.optimizer, warm, s["min_lr_ratio"], s["factor"], s["patience"],
                                          s["threshold"], self._total_steps(),
                                          int(round(float(s["anneal_epochs"]) * self.steps_per_epoch())))
        else:
            self.schedule = WarmupCosine(self.optimizer, self._total_steps(), warm, s["min_lr_ratio"])
        e = self.cfg["ema"]
        self.ema = EMA(self.model, e["decay"] if e["enabled"] else 0.0, warmup=e["warmup"] and e["enabled"])

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches (positions into the train split) for ``epoch``."""
        sampler = torch.utils.data.DistributedSampler(range(len(self.splits["train"])),
                                                      num_replicas=self.dist.world_size, rank=self.dist.rank,
                                                      shuffle=True, seed=int(self.cfg["seed"]), drop_last=False)
        sampler.set_epoch(epoch)
        return chunk(list(sampler), self.local_batch)

    def _probe_unused_parameters(self) -> bool:
        """One forward/backward on a training batch (no update): does any trainable parameter
        get no gradient on any rank? DDP must then be told (``find_unused_parameters``)."""
        idx = self._epoch_batches(self.epoch)[0]
        batch = next(iter(loader(self.dataset, self.splits["train"], [idx]))).to(self.device)
        self.model.train()
        out = self.model(batch, compute_forces=self._needs_forces())
        loss, _ = compute_loss(out, batch, self._weights(), self.model.dtype)
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flag = torch.tensor([float(any(g is None for g in grads))], device=self.device)
        unused = float(D.all_reduce_sum(flag, self.dist)[0]) > 0
        if unused:
            self._log("some parameters get no gradient: DDP runs with find_unused_parameters=True")
        return unused

    # ---------------------------------------------------------- steps
    def _train_step(self, ddp_model, batch) -> dict[str, float]:
        batch = batch.to(self.device)
        self.model.train()
        forces = self._needs_forces()
        out = ddp_model(batch, compute_forces=forces)
        n_mol, n_force = float(batch.num_graphs), float(batch.pos.numel()) if forces else 0.0
        if self.dist.enabled:
            counts = D.all_reduce_sum(torch.tensor([n_mol, n_force], dtype=torch.float64, device=self.device),
                                      self.dist)
            n_mol, n_force = float(counts[0]), float(counts[1])
        loss, parts = compute_loss(out, batch, self._weights(), self.model.dtype, n_mol, n_force or None)
        self._check_finite(loss.detach(), "training loss")
        if self.dist.enabled:
            loss = loss * self.dist.world_size  # DDP averages gradients over ranks
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["optimizer"]["grad_clip"]
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        else:
            norms = [torch.linalg.vector_norm(p.grad.detach()) for p in self.model.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros((), device=self.device)
        self._check_finite(norm.detach(), "gradient norm")
        grad_norm = float(norm) if clip else float("nan")
        self.optimizer.step()
        self.schedule.step()
        if self.cfg["ema"]["enabled"]:
            self.ema.update(self.model)
        else:
            self.ema.copy_from(self.model)
        self.step += 1
        stats = {"loss": float(loss.detach()) / (self.dist.world_size if self.dist.enabled else 1), **parts,
                 "grad_norm": grad_norm}
        return stats

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        """Raise ``TrainingDiverged`` (on every rank) if ``value`` is NaN/inf on any rank; called
        before the optimiser step, so the weights, checkpoints and state stay those of the last
        good step."""
        mine = bool(torch.isfinite(value).all())
        bad = torch.tensor([0.0 if mine else 1.0], device=self.device)
        if self.dist.enabled:
            bad = D.all_reduce_sum(bad, self.dist)
        if float(bad[0]) > 0:
            shown = f"is {float(value.reshape(-1)[0]):g}" if not mine else "is non-finite on another rank"
            self._diverged(f"the {what} {shown} at step {self.step + 1} (epoch {self.epoch + 1})")

    def _diverged(self, what: str) -> None:
        kept = "nothing was written (no output directory)"
        if self.output_dir is not None:
            best = self.output_dir / "best.json"
            kept = (f"{best.parent / 'best'} (epoch {self.best['epoch']}) and the trainer state of the last "
                    f"good step saved are kept" if best.exists() else "no checkpoint was written yet")
        raise TrainingDiverged(f"training diverged: {what}; {kept}. Lower optimizer.lr (--lr), keep "
                               "optimizer.grad_clip > 0, or check the data for outliers")

    # ---------------------------------------------------------- main loop
    def fit(self, resume: bool | str | Path = False) -> dict[str, Any]:
        """Train; returns a summary (best epoch, validation/test metrics, paths).

        ``resume``: ``True`` = continue from ``output_dir/trainer_state.pt`` if present,
        or a path to a trainer state.
        """
        cfg = self.cfg
        seed_everything(int(cfg["seed"]))
        self._build()
        state_path = None
        if resume:
            state_path = Path(resume) if not isinstance(resume, bool) else (
                self.output_dir / STATE_FILE if self.output_dir else None)
            if state_path is not None and not state_path.exists():
                if not isinstance(resume, bool):
                    raise FileNotFoundError(f"no trainer state at {state_path}")
                state_path = None
        if state_path is not None:
            self.load_state_dict(load_trainer_state(state_path))
            self._log(f"resumed from {state_path} at epoch {self.epoch}, step {self.step}")
        else:
            if cfg["references"]["fit"] or cfg["references"]["scale_shift"]:
                self.references_info = apply_references(self.model, self.dataset, self.splits["train"],
                                                        fit=cfg["references"]["fit"],
                                                        scale_shift=cfg["references"]["scale_shift"])
            self.ema.copy_from(self.model)
        if self.output_dir is not None and self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.output_dir / "config.yaml",
                    lambda tmp: Path(tmp).write_text(yaml.safe_dump(cfg, sort_keys=False)))
            self._tb = _tensorboard(self.output_dir / "tensorboard")

        ddp_model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # [1, F] output layers: DDP warns about the (irrelevant) stride of a size-1 dimension
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            unused = cfg["find_unused_parameters"]
            if unused == "auto":
                unused = self._probe_unused_parameters()
            ddp_model = DDP(self.model, device_ids=ids, find_unused_parameters=bool(unused))

        total = self._total_steps()
        epochs = int(cfg["epochs"])
        try:
            while self.epoch < epochs and self.step < total and not self.schedule.finished:
                self._run_epoch(ddp_model, total)
        finally:
            if self._tb is not None:
                self._tb.close()
        return self._finish()

    def _run_epoch(self, ddp_model, total: int) -> None:
        from tqdm.auto import tqdm

        cfg = self.cfg
        batches = self._epoch_batches(self.epoch)
        todo = batches[self.batch_in_epoch:]
        if self.batch_in_epoch == 0:
            self._accum = {}
        bar = tqdm(loader(self.dataset, self.splits["train"], todo, int(cfg["num_workers"])),
                   total=len(batches), initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{cfg['epochs']}",
                   disable=not (cfg["progress"] and self.is_main), leave=False, dynamic_ncols=True)
        t0 = time.perf_counter()
        for batch in bar:
            stats = self._train_step(ddp_model, batch)
            self.batch_in_epoch += 1
            for k, v in stats.items():
                self._accum[k] = self._accum.get(k, 0.0) + v
            self._accum["n"] = self._accum.get("n", 0.0) + 1
            bar.set_postfix(loss=f"{stats['loss']:.4g}", lr=f"{self.schedule.lr:.2e}")
            self.elapsed += time.perf_counter() - t0
            t0 = time.perf_counter()
            for cb in self.callbacks:
                cb(self)
            every = int(cfg["checkpoint_every"] or 0)
            if every and self.step % every == 0 and self.batch_in_epoch < len(batches):
                self.save_state()
            if self.step >= total:
                break
        bar.close()
        self.elapsed += time.perf_counter() - t0
        self._end_epoch()

    def _end_epoch(self) -> None:
        cfg = self.cfg
        self.epoch += 1
        self.batch_in_epoch = 0
        n = max(self._accum.get("n", 1.0), 1.0)
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "lr": self.schedule.lr}
        row.update({f"train_{k}": v / n for k, v in self._accum.items() if k != "n"})
        validate = (self.epoch % max(int(cfg["validate_every"]), 1) == 0) or self.epoch >= int(cfg["epochs"]) \
            or self.step >= self._total_steps()
        if validate:
            val = self.validate("val")
            row.update({f"val_{k}": v for k, v in val.items()})
        row["time_s"] = round(self.elapsed, 3)
        self.history.append(row)
        monitor = cfg["monitor"]
        if validate:
            if monitor not in row:
                raise KeyError(f"monitor {monitor!r} is not a validation metric; available: "
                               f"{', '.join(k for k in row if k.startswith('val_'))}")
            value = float(row[monitor])
            if not math.isfinite(value):
                self._diverged(f"the validation metric {monitor} is {value:g} after epoch {self.epoch}")
            self.schedule.observe(value)
            if value < self.best["value"]:
                self.best = {"value": value, "epoch": self.epoch}
                self._save_model("best", {"val": _metrics_for_card(row)})
                if self.output_dir is None:  # nothing on disk: keep the selected weights in memory
                    self._best_state = {k: v.detach().to("cpu", copy=True)
                                        for k, v in self.ema.module.state_dict().items()}
            self._save_model("last", {"val": _metrics_for_card(row)})
        if self._tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, self.epoch)
        self._write_metrics()
        self.save_state()
        if self.is_main and self.verbose:
            parts = [f"train loss {row['train_loss']:.4g}"] if "train_loss" in row else []
            if "val_energy_mae" in row:
                parts.append(f"val energy MAE {1000 * row['val_energy_mae']:.4g} meV")
            if "val_forces_mae" in row:
                parts.append(f"force MAE {1000 * row['val_forces_mae']:.4g} meV/Å")
            if validate and monitor not in ("val_energy_mae", "val_forces_mae"):
                parts.append(f"{monitor} {row[monitor]:.5g}")
            if validate and self.best["epoch"] == self.epoch:
                parts[-1] += " (best)"
            self._log(f"epoch {self.epoch}/{cfg['epochs']}: " + ", ".join(parts)
                      + ("; validation plateau: done" if self.schedule.finished else ""))

    def _finish(self) -> dict[str, Any]:
        from ..eval.metrics import to_mev
        from ..pretrained import load_checkpoint

        summary: dict[str, Any] = {"best_epoch": self.best["epoch"], "best_value": self.best["value"],
                                   "monitor": self.cfg["monitor"], "epochs": self.epoch, "steps": self.step,
                                   "time_s": self.elapsed, "history": self.history}
        best_row = next((r for r in self.history if r["epoch"] == self.best["epoch"]), None)
        summary["val"] = to_mev({k[4:]: v for k, v in (best_row or {}).items() if k.startswith("val_")})
        # the selected model: the best EMA weights (from disk when written there, else kept in memory)
        best_model = self.ema.module
        if self._best_state is not None:
            best_model = copy.deepcopy(self.ema.module)
            best_model.load_state_dict(self._best_state)
        if self.output_dir is not None:
            D.barrier(self.dist)
            best_path = self.output_dir / "best.json"
            if best_path.exists():
                best_model = load_checkpoint(best_path, device=self.device)
                summary["checkpoint"] = str(self.output_dir / "best")
            elif self.best["epoch"] < 0:
                self.best_model = best_model
                return summary  # never validated (epochs 0): no "best" to write
        self.best_model = best_model
        metrics = {"val": _metrics_for_card(best_row or {})}
        if self.cfg["evaluate_test"] and self.splits.get("test"):
            summary["test"] = metrics["test"] = to_mev(finalize_errors(_sums_for(self, best_model, "test")))
        if self.output_dir is not None and self.is_main and "checkpoint" in summary:
            # the final card: test errors and why training stopped
            save_checkpoint(best_model, self.output_dir / "best", **self.card(metrics))
        return summary
