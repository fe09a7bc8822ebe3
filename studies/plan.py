"""What the Φ-versus-baseline study runs and where its files live: shared by the driver
(``studies/phi_vs_baseline.py``) and the report (``studies/report.py``), which import this module
and not each other."""
from __future__ import annotations

import sys
from pathlib import Path

from studies.ledger import LEDGER, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("painn", "visnet", "e2gnn", "mace")
# every shipped family, in training order: zoo_configs/<name>-<dataset>.yaml with model.phi false/true; the
# Coulomb-head checkpoint (painn-coulomb, QM9 with Mulliken charges and |μ|) ships without Φ
ZOO = ("painn", "painn-coulomb", "e2gnn", "mace", "visnet")
PHI_VARIANTS = {"painn-coulomb": (False,)}
DATASETS = {"painn-coulomb": ("qm9",)}
MD22_MOLECULE = "Ac-Ala3-NHMe"
DATA = {
    "qm9": ROOT / "data" / "qm9.lmdb",
    "md22": ROOT / "data" / "xtb" / f"{MD22_MOLECULE}_gfn2xtb_500K.lmdb",
}
NPZ = DATA["md22"].with_suffix(".npz")
# an independent trajectory of the same molecule (seed 1), every frame in test: studies/zoo_checks.py
INDEPENDENT = {"md22": ROOT / "data" / "xtb" / f"{MD22_MOLECULE}_gfn2xtb_500K_seed1.lmdb"}
# seeds per (dataset, model): three seeds where the budget allows (the two cheapest backbones on QM9)
SEEDS = {("qm9", "painn"): (0, 1, 2), ("qm9", "e2gnn"): (0, 1, 2)}
RUNS = ROOT / "runs" / "zoo"  # the zoo trained to a validation plateau (issue 14); runs/study held the 12-epoch zoo
RESULTS = ROOT / "studies" / "results"
PRETRAINED = ROOT / "pretrained"
# published ids: <model>[-phi]-<dataset id>; the QM9 models are the defaults of load_model
DATASET_IDS = {"qm9": "qm9", "md22": "md22-xtb-ac-ala3"}
DEFAULT_DATASET = "qm9"


def phizoo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "phizoo.cli.main", *args]


def run_dir(dataset: str, model: str, phi: bool, seed: int) -> Path:
    return RUNS / dataset / f"{model}-{'phi' if phi else 'base'}-s{seed}"


def checkpoint_id(dataset: str, model: str, phi: bool) -> str:
    """The published id of a run: ``<model>[-phi]-<dataset id>``, e.g. ``painn-phi-md22-xtb-ac-ala3``."""
    return f"{model}{'-phi' if phi else ''}-{DATASET_IDS[dataset]}"


def plan() -> list[tuple[str, str, bool, int]]:
    """(dataset, model, phi, seed); seed-0 runs (the published weights) first, PaiNN (the most
    accurate per CPU hour, whose runs carry the accuracy targets) before the others."""
    return [(dataset, model, phi, seed) for seed in (0, 1, 2) for model in ZOO
            for phi in PHI_VARIANTS.get(model, (False, True)) for dataset in DATASETS.get(model, ("qm9", "md22"))
            if seed in SEEDS.get((dataset, model), (0,))]


def ledger_path(dataset: str, model: str, phi: bool, seed: int) -> Path:
    """Where a finished run's final card is committed (:mod:`studies.ledger`)."""
    return LEDGER / "zoo" / dataset / f"{run_dir(dataset, model, phi, seed).name}.json"


def _final(card: dict | None) -> dict | None:
    return card if card is not None and "test" in card.get("metrics", {}) else None


def card(dataset: str, model: str, phi: bool, seed: int) -> dict | None:
    """The final card (test metrics included) of a finished run, from its run directory or else the
    ledger; None while the run is unfinished."""
    return _final(read_json(run_dir(dataset, model, phi, seed) / "best.json")) \
        or _final(read_json(ledger_path(dataset, model, phi, seed)))


def finished(dataset: str, model: str, phi: bool, seed: int) -> bool:
    return card(dataset, model, phi, seed) is not None


def record(dataset: str, model: str, phi: bool, seed: int) -> None:
    """Commit a finished run's final card to the ledger."""
    write_json(ledger_path(dataset, model, phi, seed), card(dataset, model, phi, seed))


def weights(dataset: str, model: str, phi: bool, seed: int) -> Path | None:
    """The checkpoint stem holding a finished run's weights: its run directory's ``best`` or its
    published copy in ``pretrained/``, whichever carries the card's weights sha256; None if neither."""
    final = card(dataset, model, phi, seed)
    if final is None:
        return None
    for stem in (run_dir(dataset, model, phi, seed) / "best", PRETRAINED / checkpoint_id(dataset, model, phi)):
        other = read_json(stem.with_suffix(".json"))
        if other and other["integrity"]["weights_sha256"] == final["integrity"]["weights_sha256"]:
            return stem
    return None
