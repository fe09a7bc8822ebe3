"""Leaderboard: every checkpoint evaluated on the same split of the same data.

Columns: model, Φ or not, parameters, energy MAE/RMSE (meV, per molecule and per atom),
force MAE (meV/Å), inference time per structure (ms, energy + forces, batches pre-collated
on the device, after one warm-up batch) and peak memory of that timed pass:

* CUDA: ``torch.cuda.max_memory_allocated`` above the memory held before the pass;
* CPU: peak resident set size above the RSS before the pass (psutil, sampled every ms). On
  glibc the allocator is switched, for that pass, to mmap every block of 64 KiB or more and
  the free heap is trimmed first, so RSS follows the live tensors; otherwise memory cached
  from earlier models is reused invisibly (measured: the same model read 39 then 59 MB).
  Repeated measurements of one model agree within a few MB; small models stay approximate.
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


class _RssPeak:
    """Peak RSS (bytes) of this process while the context is open, sampled in a thread."""

    def __init__(self, interval: float = 0.0005):
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


def _run_batches(model, batches, forces: bool) -> None:
    for b in batches:
        with torch.set_grad_enabled(forces):
            model(b, compute_forces=forces, create_graph=False)


_M_MMAP_THRESHOLD = -3


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both exist: glibc)
        return libc
    except (OSError, AttributeError):
        return None


class _ExactRss:
    """Make the RSS follow live allocations while measuring (glibc): blocks ≥ 64 KiB are
    mmap-ed and unmapped on free, and free heap pages are returned first (``malloc_trim``).
    Without this, memory the allocator kept from earlier models or passes is reused
    invisibly and the peak depends on what ran before. Afterwards the mmap threshold is set
    to 32 MiB (glibc's dynamic maximum)."""

    def __init__(self):
        self.libc = _glibc()

    def __enter__(self):
        if self.libc is not None:
            self.libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
            gc.collect()
            self.libc.malloc_trim(0)
        return self

    def __exit__(self, *exc):
        if self.libc is not None:
            self.libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)


def time_and_memory(model, dataset, indices: Sequence[int], batch_size: int = 32,
                    device: str | torch.device = "cpu", forces: bool = True, repeats: int = 1,
                    memory: bool = True) -> dict[str, Any]:
    """Inference ms per structure and peak memory (MB) of a pass over ``indices``.

    Timing: batches pre-collated on the device, one warm-up batch, then ``repeats`` timed passes.
    Memory (a separate, untimed pass): CUDA ``max_memory_allocated`` above the memory held
    before the pass; CPU peak RSS above the RSS before the pass, sampled every ms, with the
    allocator set up so that RSS tracks live allocations (``_ExactRss``).
    """
    device = torch.device(device)
    model.eval()
    batches = [collate([dataset[int(indices[i])] for i in b]).to(device) for b in chunk(range(len(indices)), batch_size)]
    if not batches:
        return {"inference_ms_per_structure": None, "peak_memory_MB": None, "memory_method": None}
    cuda = device.type == "cuda"
    _run_batches(model, batches[:1], forces)  # warm-up (allocator, lazy init)
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(max(int(repeats), 1)):
        _run_batches(model, batches, forces)
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"inference_ms_per_structure": 1000.0 * elapsed / (len(indices) * max(int(repeats), 1)),
                           "peak_memory_MB": None, "memory_method": None}
    if not memory:
        return out
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _run_batches(model, batches, forces)
        torch.cuda.synchronize(device)
        peak, method = torch.cuda.max_memory_allocated(device) - base, "cuda max_memory_allocated"
    else:
        with _ExactRss() as exact, _RssPeak() as meter:
            _run_batches(model, batches, forces)
        peak = meter.peak - meter.base
        method = "cpu peak RSS increase" + ("" if exact.libc is not None else " (approximate: not glibc)")
    out["peak_memory_MB"] = peak / 2**20
    out["memory_method"] = method
    return out


def leaderboard(checkpoints: Sequence[Any], dataset, indices: Sequence[int] | None = None, split: str = "test",
                batch_size: int = 32, device: str | torch.device = "cpu", output_dir: str | Path | None = None,
                names: Sequence[str] | None = None, repeats: int = 1, title: str | None = None,
                progress: bool = False, memory: bool = True) -> list[dict[str, Any]]:
    """Evaluate every checkpoint on the same structures; returns one dict per model (``COLUMNS``).

    Args:
        checkpoints: checkpoint paths, pretrained ids, or ``Potential`` objects.
        dataset: map-style dataset of PyG ``Data``.
        indices: the structures (default: ``split`` of the dataset's stored splits).
        output_dir: if given, writes ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``,
            ``leaderboard.png``.
        memory: measure peak memory (an extra, untimed pass per model; see ``time_and_memory``).
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
        perf = time_and_memory(model, dataset, indices, batch_size, device, forces=forces, repeats=repeats,
                               memory=memory)
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
            "included), forces per component. Timing: energy (+ forces where the data has them), "
            "after one warm-up batch. "
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
