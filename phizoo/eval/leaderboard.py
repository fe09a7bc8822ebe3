"""Leaderboard: every checkpoint evaluated on the same split of the same data.

Columns: model, Φ or not, parameters, energy MAE/RMSE (meV, per molecule and per atom),
force MAE (meV/Å), inference time per structure (ms, energy + forces, batches pre-collated
on the device, after one warm-up batch) and peak memory of that timed pass:

* CUDA: ``torch.cuda.max_memory_allocated`` above the memory held before the pass;
* CPU: peak resident set size above the RSS before the pass (psutil, sampled every ms,
  after ``malloc_trim``). RSS is a process-level measure: treat CPU numbers as approximate.
"""
from __future__ import annotations

import csv
import ctypes
import gc
import json
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..pretrained import CheckpointError, available_pretrained, load_checkpoint, manifest_path
from ..train.data import chunk, collate
from .metrics import evaluate

COLUMNS = ["model", "phi", "parameters", "energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom",
           "forces_mae_meV_per_A", "forces_rmse_meV_per_A", "inference_ms_per_structure", "peak_memory_MB",
           "memory_method", "n_structures", "split", "checkpoint"]


def resolve_checkpoint(ref: str | Path, device: str | torch.device = "cpu"):
    """A model from a checkpoint path (``.json``/``.safetensors``/stem) or a pretrained id."""
    p = Path(ref)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    if stem.with_suffix(".json").exists():
        model = load_checkpoint(stem, device=device)
        model.checkpoint_path = str(stem)
        return model
    for entry in available_pretrained():
        if entry["id"] == str(ref):
            model = load_checkpoint(manifest_path().parent / entry["card"], expected_sha256=entry["sha256"],
                                    device=device)
            model.checkpoint_path = f"pretrained:{entry['id']}"
            return model
    raise CheckpointError(f"{ref}: neither a checkpoint (no {stem.with_suffix('.json')}) nor a pretrained id "
                          f"({', '.join(e['id'] for e in available_pretrained()) or 'none shipped'})")


def model_label(model, ref: str | Path | None = None) -> str:
    spec = getattr(model, "spec", {}) or {}
    base = f"{spec.get('model', 'model')}{'-phi' if spec.get('phi') else ''}"
    if ref is not None:
        name = Path(str(ref)).with_suffix("").name if Path(str(ref)).suffix in (".json", ".safetensors") \
            else Path(str(ref)).name
        # runs are usually <dir>/best: name them by their directory
        if name in ("best", "last"):
            name = f"{Path(str(ref)).parent.name}/{name}"
        return name
    return base


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # not glibc
        pass


class _RssPeak:
    """Peak RSS (bytes) of this process while the context is open, sampled in a thread."""

    def __init__(self, interval: float = 0.001):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def time_and_memory(model, dataset, indices: Sequence[int], batch_size: int = 32,
                    device: str | torch.device = "cpu", forces: bool = True, repeats: int = 1) -> dict[str, Any]:
    """Inference ms per structure (energy + forces) and peak memory (MB) over ``indices``."""
    device = torch.device(device)
    model.eval()
    batches = [collate([dataset[int(indices[i])] for i in b]).to(device) for b in chunk(range(len(indices)), batch_size)]
    if not batches:
        return {"inference_ms_per_structure": None, "peak_memory_MB": None, "memory_method": None}

    def run(b):
        with torch.set_grad_enabled(forces):
            out = model(b, compute_forces=forces, create_graph=False)
        return out["energy"]

    run(batches[0])  # warm-up (allocator, lazy init)
    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        meter = None
    else:
        _malloc_trim()
        meter = _RssPeak().__enter__()
    t0 = time.perf_counter()
    for _ in range(max(int(repeats), 1)):
        for b in batches:
            run(b)
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
        method = "cuda max_memory_allocated"
    else:
        meter.__exit__(None, None, None)
        peak = meter.peak - meter.base
        method = "cpu peak RSS delta"
    n = len(indices) * max(int(repeats), 1)
    return {"inference_ms_per_structure": 1000.0 * elapsed / n, "peak_memory_MB": peak / 2**20,
            "memory_method": method}


def leaderboard(checkpoints: Sequence[Any], dataset, indices: Sequence[int] | None = None, split: str = "test",
                batch_size: int = 32, device: str | torch.device = "cpu", output_dir: str | Path | None = None,
                names: Sequence[str] | None = None, repeats: int = 1, title: str | None = None,
                progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate every checkpoint on the same structures; returns one dict per model (``COLUMNS``).

    Args:
        checkpoints: checkpoint paths, pretrained ids, or ``Potential`` objects.
        dataset: map-style dataset of PyG ``Data``.
        indices: the structures (default: ``split`` of the dataset's stored splits).
        output_dir: if given, writes ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``,
            ``leaderboard.png``.
    """
    from ..train.data import split_indices

    if indices is None:
        indices = split_indices(dataset, split)
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError(f"split {split!r} is empty")
    rows: list[dict[str, Any]] = []
    for i, ref in enumerate(checkpoints):
        if isinstance(ref, torch.nn.Module):
            model, label, path = ref.to(device), None, getattr(ref, "checkpoint_path", "")
        else:
            model, path = resolve_checkpoint(ref, device=device), str(ref)
            label = model_label(model, ref)
        label = names[i] if names else (label or model_label(model))
        metrics = evaluate(model, dataset, indices, batch_size=batch_size, device=device, progress=progress)
        forces = metrics.get("n_force_components", 0) > 0
        perf = time_and_memory(model, dataset, indices, batch_size, device, forces=forces, repeats=repeats)
        spec = getattr(model, "spec", {}) or {}
        rows.append({
            "model": label, "phi": bool(spec.get("phi", getattr(model, "phi", None) is not None)),
            "parameters": model.num_parameters(),
            "energy_mae_meV": metrics.get("energy_mae_meV"), "energy_rmse_meV": metrics.get("energy_rmse_meV"),
            "energy_mae_meV_per_atom": metrics.get("energy_mae_meV_per_atom"),
            "forces_mae_meV_per_A": metrics.get("forces_mae_meV_per_A"),
            "forces_rmse_meV_per_A": metrics.get("forces_rmse_meV_per_A"),
            **perf, "n_structures": metrics["n_structures"], "split": split, "checkpoint": path,
        })
        del model
        gc.collect()
    if output_dir is not None:
        write_leaderboard(rows, output_dir, title=title or f"phizoo leaderboard ({split}, {len(indices)} structures)")
    return rows


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,d}"
    if isinstance(v, float):
        a = abs(v)
        return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.{digits}g}"
    return str(v)


def markdown_table(rows: Sequence[dict]) -> str:
    head = ["model", "Φ", "parameters", "energy MAE (meV)", "energy RMSE (meV)", "energy MAE (meV/atom)",
            "force MAE (meV/Å)", "inference (ms/structure)", "peak memory (MB)"]
    keys = ["model", "phi", "parameters", "energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom",
            "forces_mae_meV_per_A", "inference_ms_per_structure", "peak_memory_MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(rows: Sequence[dict], output_dir: str | Path, title: str = "phizoo leaderboard") -> dict[str, Path]:
    from .plots import leaderboard_chart

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "leaderboard.md", "csv": out / "leaderboard.csv", "json": out / "leaderboard.json",
             "png": out / "leaderboard.png"}
    methods = sorted({r["memory_method"] for r in rows if r.get("memory_method")})
    note = ("\nPlain MAE/RMSE against the stored total energies (element references of each model "
            "included), forces per component. Timing: energy + forces, after one warm-up batch. "
            f"Memory: {', '.join(methods) or 'n/a'}.\n")
    paths["markdown"].write_text(f"# {title}\n\n" + markdown_table(rows) + note)
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})
    paths["json"].write_text(json.dumps(list(rows), indent=2) + "\n")
    leaderboard_chart(rows, paths["png"], title=title)
    return paths
