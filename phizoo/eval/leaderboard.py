"""Leaderboard: every checkpoint evaluated on the same split of the same data.

Columns: model, Φ or not, Coulomb head or not (markdown: only when some model has one),
parameters, energy MAE/RMSE (meV, per molecule and per atom), force MAE (meV/Å), inference time per structure (ms: energy, plus forces where the data has
them; batches pre-collated on the device, median of timed passes after an untimed one) and peak memory of a
separate pass, as tensor memory allocated above what was held before the pass:

* CUDA: ``torch.cuda.max_memory_allocated``;
* CPU: the torch profiler's allocation and free events, ordered in time and summed
  (``cpu_peak_allocated``). Exact and repeatable for tensor memory. Process RSS was tried
  first and rejected: memory the allocator keeps from earlier models is reused without
  showing up, so the same model read 39 MB, then 59 MB, in one process.

Where some model has a Coulomb head and the data reference charges / dipoles, also charge MAE
(e), charge Pearson r, dipole MAE (e·Å, per component; vector references) and |μ| MAE (e·Å)
(``CHARGE_COLUMNS``; absent otherwise, so other tables are unchanged).
"""
from __future__ import annotations

import contextlib
import csv
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..pretrained import CheckpointError, find_pretrained, is_path_like, load_checkpoint, load_pretrained
from ..train.data import chunk, collate
from .metrics import evaluate

COLUMNS = ["model", "phi", "coulomb", "parameters", "energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom",
           "forces_mae_meV_per_A", "forces_rmse_meV_per_A", "inference_ms_per_structure", "peak_memory_MB",
           "memory_method", "n_structures", "split", "checkpoint"]
# Coulomb-head models on data with reference charges / dipoles (charges in e, dipoles in e·Å):
# in the rows, CSV and markdown only when some model has them
CHARGE_COLUMNS = ["charges_mae_e", "charges_pearson_r", "dipole_mae_eA", "dipole_norm_mae_eA"]


def resolve_checkpoint(ref: str | Path, device: str | torch.device = "cpu"):
    """A model from a shipped id (``phizoo models --pretrained``; only through the verified
    manifest, never a same-named file in the working directory) or a checkpoint path with a
    directory part or a ``.json``/``.safetensors`` suffix (``runs/x/best``, ``./mine.json``)."""
    if not is_path_like(ref):
        entry = find_pretrained(pretrained=str(ref))
        model = load_pretrained(entry, device=device)
        model.checkpoint_path = f"pretrained:{entry['id']}"
        return model
    p = Path(ref)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    if not stem.with_suffix(".json").exists():
        raise CheckpointError(f"{ref}: no checkpoint card {stem.with_suffix('.json')} (a run's checkpoint is "
                              f"<run>/best or <run>/last)")
    model = load_checkpoint(stem, device=device)
    model.checkpoint_path = str(stem)
    return model


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


def _run_batches(model, batches, forces: bool) -> None:
    for b in batches:
        with torch.set_grad_enabled(forces):
            model(b, compute_forces=forces, create_graph=False)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop lines)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator() -> bool:
    """Fix glibc's malloc thresholds for the rest of the process (mmap above 32 MiB, keep up
    to 512 MiB of free heap). With the default, adaptive thresholds a fresh process keeps
    mapping and unmapping tensor memory and pays a page fault per touched page; on the test
    VM that made the same model's inference 1.0 ms/structure early in a process and 0.45 ms
    later. Fixed thresholds make timings independent of what ran before. Returns whether it
    applied (glibc only)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20) == 1)
    except (OSError, AttributeError):
        return False


def cpu_peak_allocated(fn) -> int:
    """Peak bytes of CPU tensor memory allocated while ``fn()`` runs, above the amount at its
    start: the allocation/free events of the torch profiler, ordered in time and summed.
    The CPU counterpart of ``torch.cuda.max_memory_allocated`` (tensor memory only; not the
    interpreter, libraries or allocator caches)."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        if str(e.device_type()).upper().endswith("CPU"):
            level += e.nbytes()
            peak = max(peak, level)
    return peak


def time_and_memory(model, dataset, indices: Sequence[int], batch_size: int = 32,
                    device: str | torch.device = "cpu", forces: bool = True, repeats: int = 1,
                    memory: bool = True) -> dict[str, Any]:
    """Inference ms per structure and peak memory (MB) of a pass over ``indices``.

    Timing: batches pre-collated on the device, one untimed warm-up pass (the allocator of a
    fresh process is several times slower until it has seen the batch sizes), then the median
    of ``repeats`` timed passes.
    Memory (a separate, untimed pass): peak tensor memory above what was allocated before the
    pass: CUDA ``max_memory_allocated``, CPU the profiler's allocation events (``cpu_peak_allocated``).
    """
    device = torch.device(device)
    model.eval()
    batches = [collate([dataset[int(indices[i])] for i in b]).to(device) for b in chunk(range(len(indices)), batch_size)]
    if not batches:
        return {"inference_ms_per_structure": None, "peak_memory_MB": None, "memory_method": None}
    cuda = device.type == "cuda"
    times = []
    for _ in range(1 + max(int(repeats), 1)):  # the first pass warms up (lazy init, allocator) and is not timed
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        _run_batches(model, batches, forces)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    elapsed = float(np.median(times[1:]))
    out: dict[str, Any] = {"inference_ms_per_structure": 1000.0 * elapsed / len(indices),
                           "peak_memory_MB": None, "memory_method": None}
    if not memory:
        return out
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _run_batches(model, batches, forces)
        torch.cuda.synchronize(device)
        peak, method = torch.cuda.max_memory_allocated(device) - base, "cuda max_memory_allocated"
    else:
        peak = cpu_peak_allocated(lambda: _run_batches(model, batches, forces))
        method = "cpu tensor allocations (torch profiler)"
    out["peak_memory_MB"] = peak / 2**20
    out["memory_method"] = method
    return out


def leaderboard(checkpoints: Sequence[Any], dataset, indices: Sequence[int] | None = None, split: str = "test",
                batch_size: int = 32, device: str | torch.device = "cpu", output_dir: str | Path | None = None,
                names: Sequence[str] | None = None, repeats: int = 1, title: str | None = None,
                progress: bool = False, memory: bool = True, fix_allocator: bool = True) -> list[dict[str, Any]]:
    """Evaluate every checkpoint on the same structures; returns one dict per model (``COLUMNS``).

    Args:
        checkpoints: checkpoint paths, pretrained ids, or ``Potential`` objects.
        dataset: map-style dataset of PyG ``Data``.
        indices: the structures (default: ``split`` of the dataset's stored splits).
        output_dir: if given, writes ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json``,
            ``leaderboard.png``.
        memory: measure peak memory (an extra, untimed pass per model; see ``time_and_memory``).
        fix_allocator: on CPU, call ``steady_allocator()`` first (changes glibc malloc settings for
            the rest of the process) so that timings do not depend on what ran before.
    """
    from ..train.data import split_indices

    if indices is None:
        indices = split_indices(dataset, split)
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError(f"split {split!r} is empty")
    if fix_allocator and torch.device(device).type == "cpu":
        steady_allocator()
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
            "coulomb": getattr(model, "coulomb", None) is not None,
            "parameters": model.num_parameters(),
            "energy_mae_meV": metrics.get("energy_mae_meV"), "energy_rmse_meV": metrics.get("energy_rmse_meV"),
            "energy_mae_meV_per_atom": metrics.get("energy_mae_meV_per_atom"),
            "forces_mae_meV_per_A": metrics.get("forces_mae_meV_per_A"),
            "forces_rmse_meV_per_A": metrics.get("forces_rmse_meV_per_A"),
            **perf, "n_structures": metrics["n_structures"], "split": split, "checkpoint": path,
            **{k: metrics[k] for k in CHARGE_COLUMNS if k in metrics},
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


def _charge_columns(rows: Sequence[dict]) -> list[str]:
    """The ``CHARGE_COLUMNS`` that at least one row holds."""
    return [k for k in CHARGE_COLUMNS if any(k in r for r in rows)]


def markdown_table(rows: Sequence[dict]) -> str:
    head = ["model", "Φ", "parameters", "energy MAE (meV)", "energy RMSE (meV)", "energy MAE (meV/atom)",
            "force MAE (meV/Å)", "inference (ms/structure)", "peak memory (MB)"]
    keys = ["model", "phi", "parameters", "energy_mae_meV", "energy_rmse_meV", "energy_mae_meV_per_atom",
            "forces_mae_meV_per_A", "inference_ms_per_structure", "peak_memory_MB"]
    names = {"charges_mae_e": "charge MAE (e)", "charges_pearson_r": "charge r",
             "dipole_mae_eA": "dipole MAE (e·Å)", "dipole_norm_mae_eA": "\\|μ\\| MAE (e·Å)"}
    extra = _charge_columns(rows)
    head, keys = head + [names[k] for k in extra], keys + extra
    if any(r.get("coulomb") for r in rows):  # the column only where some model has the head
        head.insert(2, "Coulomb")
        keys.insert(2, "coulomb")
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
            "median of timed passes after an untimed warm-up pass. "
            f"Memory: {', '.join(methods) or 'n/a'}.\n")
    paths["markdown"].write_text(f"# {title}\n\n" + markdown_table(rows) + note)
    with open(paths["csv"], "w", newline="") as fh:
        fields = COLUMNS + _charge_columns(rows)
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in fields})
    paths["json"].write_text(json.dumps(list(rows), indent=2) + "\n")
    leaderboard_chart(rows, paths["png"], title=title)
    return paths
