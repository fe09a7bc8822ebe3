"""Checkpoints and shipped pretrained weights.

A checkpoint is two files with a common stem:

* ``<stem>.safetensors`` – the state dict (plain tensors; nothing is unpickled on load),
* ``<stem>.json``        – the card: ``format``, ``spec`` (registry name, Φ flag and every
  hyperparameter needed to rebuild the model, cutoff included), ``units``,
  ``element_energies``, ``dataset``, ``metrics``, ``training`` and free-form notes.

``pretrained/manifest.json`` lists the shipped checkpoints with the sha256 of both files;
``load_model`` verifies them before reading a byte of weights, and loads with
``strict=True`` so any architecture mismatch is an error.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .io import atomic_write
from .registry import build_from_spec, repo_root

FORMAT = "phizoo-checkpoint/1"
UNITS = {"energy": "eV", "length": "angstrom", "forces": "eV/angstrom", "charge": "e"}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, malformed, or fails its integrity check."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def save_checkpoint(model, path: str | Path, **card: Any) -> dict[str, str]:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` atomically; returns their sha256.

    ``card`` entries (dataset, metrics, training, notes, ...) are stored in the JSON.
    """
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    body = {
        "format": FORMAT,
        "spec": model.spec,
        "dtype": str(model.dtype).replace("torch.", ""),
        "units": UNITS,
        "element_energies": {str(z): float(e) for z, e in enumerate(model.element_energies.tolist()) if e != 0.0},
        "num_parameters": model.num_parameters(),
        **card,
    }
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n"))
    return {"weights": sha256(weights), "card": sha256(meta)}


def read_card(path: str | Path) -> dict[str, Any]:
    meta = _stem(path).with_suffix(".json")
    if not meta.exists():
        raise CheckpointError(f"checkpoint card not found: {meta}")
    try:
        card = json.loads(meta.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta}: not valid JSON ({err})") from None
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{meta}: unknown checkpoint format {card.get('format')!r}, expected {FORMAT!r}")
    for key in ("spec",):
        if key not in card:
            raise CheckpointError(f"{meta}: missing key {key!r}")
    return card


def load_checkpoint(path: str | Path, expected_sha256: dict[str, str] | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Rebuild the model from the card and load the weights (``strict=True``).

    ``expected_sha256`` ({"weights": ..., "card": ...}) is checked first when given.
    """
    stem = _stem(path)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for f in (weights, meta):
        if not f.exists():
            raise CheckpointError(f"checkpoint file not found: {f}")
    if expected_sha256:
        for key, f in (("weights", weights), ("card", meta)):
            got = sha256(f)
            if key in expected_sha256 and got != expected_sha256[key]:
                raise CheckpointError(f"{f}: sha256 {got} does not match the manifest ({expected_sha256[key]}); "
                                      "the file was modified or corrupted - refusing to load it")
    card = read_card(meta)
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: cannot read weights ({err})") from None
    model = build_from_spec(card["spec"])
    saved_dtype = getattr(torch, card.get("dtype", "float32"))
    model = model.to(saved_dtype)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: weights do not fit the architecture in {meta}: {err}") from None
    model.card = card
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


# ---------------------------------------------------------------- shipped weights

def manifest_path() -> Path:
    return repo_root() / "pretrained" / "manifest.json"


def available_pretrained() -> list[dict[str, Any]]:
    """Entries of ``pretrained/manifest.json`` (id, model, phi, dataset, default, files, sha256)."""
    path = manifest_path()
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("checkpoints", [])


def load_model(name: str, phi: bool = True, pretrained: str = "default",
               device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A ready model with shipped weights.

    Args:
        name: registered backbone (``phizoo.list_models()``).
        phi: the Φ-variant (True) or the plain backbone.
        pretrained: ``"default"``, a dataset name of a shipped checkpoint (``phizoo models --pretrained``),
            or a path to a checkpoint (``.json``/``.safetensors`` stem) of your own.
        device, dtype: where and in which precision to run (weights keep their values).
    """
    from .registry import backbone_class

    backbone_class(name)  # clear error for unknown names
    candidate = Path(pretrained)
    if candidate.suffix in (".json", ".safetensors") or candidate.with_suffix(".json").exists():
        return load_checkpoint(candidate, device=device, dtype=dtype)
    entries = available_pretrained()
    matches = [e for e in entries if e["model"] == name and bool(e["phi"]) == bool(phi)
               and (e["dataset"] == pretrained or (pretrained == "default" and e.get("default")))]
    if not matches:
        listing = ", ".join(f"{e['model']}{'-phi' if e['phi'] else ''}[{e['dataset']}]" for e in entries) or "none"
        raise CheckpointError(f"no pretrained weights for model={name!r} phi={phi} pretrained={pretrained!r}; "
                              f"available: {listing}. Use phizoo.build_model() for fresh weights.")
    entry = matches[0]
    path = manifest_path().parent / entry["card"]
    return load_checkpoint(path, expected_sha256=entry["sha256"], device=device, dtype=dtype)


def register_in_manifest(stem: str | Path, entry_id: str, dataset: str, default: bool = False,
                         manifest: str | Path | None = None) -> dict[str, Any]:
    """Add or replace a manifest entry for the checkpoint at ``stem`` (files relative to the manifest)."""
    mpath = Path(manifest) if manifest else manifest_path()
    stem = _stem(stem)
    card = read_card(stem)
    data = json.loads(mpath.read_text()) if mpath.exists() else {"format": "phizoo-manifest/1", "checkpoints": []}
    rel = os.path.relpath(stem, mpath.parent)
    entry = {
        "id": entry_id,
        "model": card["spec"]["model"],
        "phi": bool(card["spec"]["phi"]),
        "dataset": dataset,
        "default": bool(default),
        "weights": rel + ".safetensors",
        "card": rel + ".json",
        "sha256": {"weights": sha256(stem.with_suffix(".safetensors")), "card": sha256(stem.with_suffix(".json"))},
    }
    data["checkpoints"] = [e for e in data["checkpoints"] if e["id"] != entry_id] + [entry]
    atomic_write(mpath, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    return entry
