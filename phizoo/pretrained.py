"""Checkpoints and shipped pretrained weights.

A checkpoint is two files with a common stem:

* ``<stem>.safetensors`` – the state dict (plain tensors; nothing is unpickled on load),
* ``<stem>.json``        – the card: ``format``, ``spec`` (registry name, Φ flag and every
  hyperparameter needed to rebuild the model, cutoff included), ``units``,
  ``element_energies``, ``dataset``, ``metrics``, ``training`` and free-form notes.

Integrity, checked before a byte of weights is read (``strict=True`` loading then makes any
architecture mismatch an error as well):

* shipped checkpoints resolve ONLY through ``pretrained/manifest.json`` (never through a file
  of the same name in the working directory); every entry must carry the full sha256 of both
  files, or loading fails (closed, not open);
* every checkpoint written by :func:`save_checkpoint` records in its card ``integrity``: the
  sha256 of its weights file and of its model definition (``format``, ``spec``, ``dtype``),
  verified on load, so edited weights or an edited cutoff/k in the card are refused;
* ``load_model(name, phi, <path>)`` also checks that the file holds the model asked for.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
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


_HEX64 = re.compile(r"[0-9a-f]{64}")


def spec_sha256(card: dict[str, Any]) -> str:
    """sha256 of the part of a card that defines the model: ``format``, ``spec`` and ``dtype``
    (canonical JSON: sorted keys, no whitespace)."""
    core = {k: card.get(k) for k in ("format", "spec", "dtype")}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    body.pop("integrity", None)
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    body["integrity"] = {"weights_sha256": sha256(weights), "spec_sha256": spec_sha256(body),
                         "note": "verified on load: sha256 of the weights file and of format+spec+dtype"}
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n"))
    return {"weights": body["integrity"]["weights_sha256"], "card": sha256(meta)}


def read_card(path: str | Path) -> dict[str, Any]:
    meta = _stem(path).with_suffix(".json")
    if not meta.exists():
        raise CheckpointError(f"checkpoint card not found: {meta}")
    try:
        card = json.loads(meta.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta}: not valid JSON ({err})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{meta}: not a checkpoint card (a JSON object is expected)")
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{meta}: unknown checkpoint format {card.get('format')!r}, expected {FORMAT!r}")
    _check_spec(card, meta)
    return card


def _check_spec(card: dict, meta: Path) -> None:
    """Types of the card entries needed to rebuild the model (CheckpointError naming the key)."""
    spec = card.get("spec")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{meta}: key 'spec' is missing or not an object")
    expect = {"model": str, "phi": bool, "backbone": dict, "phi_options": dict}
    for key, typ in expect.items():
        if not isinstance(spec.get(key), typ):
            raise CheckpointError(f"{meta}: key 'spec.{key}' must be a {typ.__name__}, got {spec.get(key)!r:.60}")
    if not isinstance(spec.get("potential", {}), dict):
        raise CheckpointError(f"{meta}: key 'spec.potential' must be an object")
    if card.get("dtype", "float32") not in ("float32", "float64"):
        raise CheckpointError(f"{meta}: key 'dtype' must be 'float32' or 'float64', got {card.get('dtype')!r:.40}")


def load_checkpoint(path: str | Path, expected_sha256: dict[str, str] | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None, verify: bool = True):
    """Rebuild the model from the card and load the weights (``strict=True``).

    Integrity: with ``expected_sha256`` ({"weights": ..., "card": ...}, e.g. a manifest entry)
    both files must match it; otherwise a checkpoint of the shipped ``pretrained/`` folder is
    checked against the manifest and any other against the hashes its card records (see the
    module docstring). ``verify=False`` skips the latter, for cards written before phizoo
    recorded hashes: re-save such a model with :func:`save_checkpoint`.
    """
    stem = _stem(path)
    weights, meta = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for f in (weights, meta):
        if not f.exists():
            raise CheckpointError(f"checkpoint file not found: {f}")
    if expected_sha256 is None:
        entry = _manifest_entry_for(meta)
        expected_sha256 = entry["sha256"] if entry is not None else None
    if expected_sha256 is not None:
        _check_expected(expected_sha256, weights, meta)
    card = read_card(meta)
    if expected_sha256 is None and verify:
        _check_recorded(card, weights, meta)
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: cannot read weights ({err})") from None
    try:
        model = build_from_spec(card["spec"])
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{meta}: 'spec' does not describe a buildable model ({type(err).__name__}: "
                              f"{err})") from None
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


def _check_expected(expected: dict, weights: Path, meta: Path) -> None:
    """Both files against full sha256 digests; a missing, empty or partial digest is an error."""
    for key, f in (("weights", weights), ("card", meta)):
        want = expected.get(key) if isinstance(expected, dict) else None
        if not isinstance(want, str) or not _HEX64.fullmatch(want):
            raise CheckpointError(f"{f}: the manifest records no valid sha256 for its {key} ({want!r:.70}); "
                                  "refusing to load unverified weights - restore pretrained/manifest.json")
        got = sha256(f)
        if got != want:
            raise CheckpointError(f"{f}: sha256 {got} does not match the manifest ({want}); "
                                  "the file was modified or corrupted - refusing to load it")


def _check_recorded(card: dict, weights: Path, meta: Path) -> None:
    """A user checkpoint against the hashes recorded in its own card at save time."""
    rec = card.get("integrity")
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) and _HEX64.fullmatch(rec[k])
                                            for k in ("weights_sha256", "spec_sha256")):
        raise CheckpointError(f"{meta}: the card records no sha256 of its weights and model spec ('integrity'), "
                              "so the checkpoint cannot be verified; re-save it with phizoo.save_checkpoint "
                              "(load it once with load_checkpoint(..., verify=False) if you trust it)")
    if spec_sha256(card) != rec["spec_sha256"]:
        raise CheckpointError(f"{meta}: the model definition ('spec'/'dtype', e.g. cutoff or k) was edited after "
                              "the checkpoint was saved (spec sha256 mismatch); restore the card or retrain")
    got = sha256(weights)
    if got != rec["weights_sha256"]:
        raise CheckpointError(f"{weights}: sha256 {got} does not match the one recorded in {meta.name} "
                              f"({rec['weights_sha256']}); the weights were modified or belong to another "
                              "checkpoint - refusing to load them")


# ---------------------------------------------------------------- shipped weights

def manifest_path() -> Path:
    return repo_root() / "pretrained" / "manifest.json"


def available_pretrained() -> list[dict[str, Any]]:
    """Entries of ``pretrained/manifest.json`` (id, model, phi, dataset, default, files, sha256).

    Raises ``CheckpointError`` for an unreadable manifest or a malformed entry (naming it)."""
    path = manifest_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); restore the shipped manifest") from None
    entries = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CheckpointError(f"{path}: key 'checkpoints' must be a list; restore the shipped manifest")
    for i, e in enumerate(entries):
        _check_entry(e, f"{path}: entry {i}")
    return entries


def _check_entry(e: Any, where: str) -> None:
    if not isinstance(e, dict):
        raise CheckpointError(f"{where}: not an object")
    where = f"{where} ({e.get('id')!r})"
    for key, typ in (("id", str), ("model", str), ("phi", bool), ("dataset", str), ("weights", str),
                     ("card", str), ("sha256", dict)):
        if not isinstance(e.get(key), typ):
            raise CheckpointError(f"{where}: key {key!r} is missing or not a {typ.__name__}; "
                                  "restore the shipped manifest")
    if not isinstance(e.get("coulomb", False), bool):
        raise CheckpointError(f"{where}: key 'coulomb' must be true or false; restore the shipped manifest")
    if not isinstance(e.get("stale", ""), str):
        raise CheckpointError(f"{where}: key 'stale' must be a string (why the checkpoint is out of date)")
    for key in ("weights", "card"):
        if Path(e[key]).is_absolute() or ".." in Path(e[key]).parts:
            raise CheckpointError(f"{where}: {key} path {e[key]!r} must lie inside {manifest_path().parent}")
    if _stem(e["weights"]) != _stem(e["card"]):
        raise CheckpointError(f"{where}: weights {e['weights']!r} and card {e['card']!r} are not one checkpoint")


def _manifest_entry_for(card_path: Path) -> dict[str, Any] | None:
    """The manifest entry whose card is ``card_path`` (a shipped file opened by its path), if any."""
    if not manifest_path().exists():
        return None
    target = card_path.resolve()
    for e in available_pretrained():
        if (manifest_path().parent / e["card"]).resolve() == target:
            return e
    return None


def is_path_like(ref: str | Path) -> bool:
    """Whether a checkpoint reference names a file (has a directory part or a checkpoint suffix)
    rather than a shipped id/dataset name, which resolves only through the manifest."""
    text = str(ref)
    return isinstance(ref, Path) or "/" in text or os.sep in text or Path(text).suffix in (".json", ".safetensors")


def find_pretrained(name: str | None = None, phi: bool | None = None, pretrained: str = "default",
                    coulomb: bool = False) -> dict[str, Any]:
    """The manifest entry for ``pretrained`` (an entry id, a dataset name, or "default", the
    latter two for model ``name`` with Φ flag ``phi`` and Coulomb-head flag ``coulomb``);
    ``CheckpointError`` listing what exists. Entries without a ``coulomb`` key have no head."""
    entries = available_pretrained()
    matches = [e for e in entries if e["id"] == pretrained]
    if name is not None:
        same = [e for e in entries if e["model"] == name and e["phi"] == bool(phi)
                and e.get("coulomb", False) == bool(coulomb)]
        matches = [e for e in matches if e in same] or \
            [e for e in same if e["dataset"] == pretrained or (pretrained == "default" and e.get("default"))]
    if not matches:
        listing = ", ".join(f"{e['model']}{'-phi' if e['phi'] else ''}{'-coulomb' if e.get('coulomb') else ''}"
                            f"[{e['dataset']}]" for e in entries) or "none"
        what = f"model={name!r} phi={phi} coulomb={coulomb} pretrained={pretrained!r}" if name else \
            f"id {pretrained!r}"
        raise CheckpointError(f"no pretrained weights for {what}; available: {listing}. Give a path (e.g. "
                              f"./{pretrained}.json) to load a checkpoint file, or use phizoo.build_model() "
                              f"for fresh weights.")
    return matches[0]


def load_pretrained(entry: dict[str, Any], device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load the shipped checkpoint of a manifest entry, verified against the manifest.

    An entry marked ``stale`` (trained before a change of the model code, not yet retrained) loads
    with a warning that says why; ``phizoo models --pretrained`` lists the mark too."""
    if entry.get("stale"):
        import warnings

        warnings.warn(f"pretrained {entry['id']!r} is stale: {entry['stale']}", stacklevel=3)
    return load_checkpoint(manifest_path().parent / entry["card"], expected_sha256=entry["sha256"],
                           device=device, dtype=dtype)


def load_model(name: str, phi: bool = True, pretrained: str = "default",
               device: str | torch.device = "cpu", dtype: torch.dtype | None = None, coulomb: bool = False):
    """A ready model with shipped weights.

    Args:
        name: registered backbone (``phizoo.list_models()``).
        phi: the Φ-variant (True) or the plain backbone.
        pretrained: ``"default"``, a dataset name or id of a shipped checkpoint (``phizoo models
            --pretrained``; resolved only through the manifest), or the path of a checkpoint of
            your own (with a directory or a ``.json``/``.safetensors`` suffix, e.g.
            ``runs/x/best`` or ``./mine.json``), which must hold model ``name`` with Φ ``phi``.
        device, dtype: where and in which precision to run (weights keep their values).
        coulomb: the variant with the Coulomb head (``phizoo models --pretrained`` lists which
            exist, e.g. ``load_model("painn", phi=False, coulomb=True)``: QM9 with Mulliken charges).
    """
    from .registry import backbone_class

    backbone_class(name)  # clear error for unknown names
    if is_path_like(pretrained):
        card, model = f"{_stem(pretrained)}.json", load_checkpoint(pretrained, device=device, dtype=dtype)
    else:
        entry = find_pretrained(name, phi, pretrained, coulomb)
        card, model = entry["card"], load_pretrained(entry, device=device, dtype=dtype)
    spec = model.card["spec"]
    has = (spec["model"], bool(spec["phi"]), bool(spec.get("coulomb")))
    if has != (name, bool(phi), bool(coulomb)):
        raise CheckpointError(f"{card} holds model {has[0]!r} with phi={has[1]} coulomb={has[2]}, "
                              f"not the {name!r} with phi={phi} coulomb={coulomb} asked for")
    return model


def register_in_manifest(stem: str | Path, entry_id: str, dataset: str, default: bool = False,
                         manifest: str | Path | None = None) -> dict[str, Any]:
    """Add or replace a manifest entry for the checkpoint at ``stem`` (files relative to the manifest);
    a replaced entry loses its ``stale`` mark (the checkpoint was retrained)."""
    mpath = Path(manifest) if manifest else manifest_path()
    stem = _stem(stem)
    card = read_card(stem)
    data = json.loads(mpath.read_text()) if mpath.exists() else {"format": "phizoo-manifest/1", "checkpoints": []}
    rel = os.path.relpath(stem, mpath.parent)
    entry = {
        "id": entry_id,
        "model": card["spec"]["model"],
        "phi": bool(card["spec"]["phi"]),
        "coulomb": bool(card["spec"].get("coulomb")),
        "dataset": dataset,
        "default": bool(default),
        "weights": rel + ".safetensors",
        "card": rel + ".json",
        "sha256": {"weights": sha256(stem.with_suffix(".safetensors")), "card": sha256(stem.with_suffix(".json"))},
    }
    data["checkpoints"] = [e for e in data["checkpoints"] if e["id"] != entry_id] + [entry]
    atomic_write(mpath, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    return entry
