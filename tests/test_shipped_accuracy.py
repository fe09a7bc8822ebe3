"""Accuracy of the shipped checkpoints: issue 14's targets (``studies.zoo_checks.TARGETS``: the best
QM9 model's test energy MAE ≤ 30 meV, the best MD22-xTB model's test force MAE ≤ 30 meV/Å; the
cards themselves are re-measured by tests/test_shipped_weights.py), and the MD22-xTB checkpoints on
a trajectory none of them has seen, where the best one must meet its target too.

The MD22-xTB test split comes from the same Langevin run as their training frames; here a fresh GFN2-xTB
run of Ac-Ala3-NHMe at 500 K with another seed (another RDKit conformer, velocities and thermostat
noise) is made in the test, and each checkpoint's force error on it must stay close to the one its
card reports: the card's number is not an artefact of correlated frames.
"""

import pytest
import torch

from phizoo.pretrained import available_pretrained, load_checkpoint, manifest_path, read_card
from studies.plan import DATASET_IDS
from studies.zoo_checks import TARGETS
from tests.optional import needs_xtb

MD22 = [e for e in available_pretrained() if e["dataset"] == DATASET_IDS["md22"] and not e.get("stale")]


def best_checkpoint(dataset: str) -> tuple[str, float]:
    """(id, test metric) of the shipped checkpoint with the lowest error on the target's metric."""
    metric = TARGETS[dataset][0]
    cards = {e["id"]: read_card(manifest_path().parent / e["card"])["metrics"]["test"][metric]
             for e in available_pretrained() if e["dataset"] == DATASET_IDS[dataset] and not e.get("stale")}
    best = min(cards, key=cards.get)
    return best, cards[best]


@pytest.mark.parametrize("dataset", sorted(TARGETS))
def test_best_checkpoint_meets_the_accuracy_target(dataset):
    best, error = best_checkpoint(dataset)
    _, target, unit = TARGETS[dataset]
    assert error <= target, f"best {dataset} checkpoint {best}: {error:.1f} {unit} > {target} {unit}"


@pytest.fixture(scope="module")
def independent_trajectory(tmp_path_factory):
    from phizoo.data import convert_md22
    from phizoo.generate.xtb_md import xtb_md

    tmp = tmp_path_factory.mktemp("independent")
    # 1000 steps (0.5 ps) to leave the MMFF start, then 20 frames 10 fs apart (~90 s on one core)
    npz = xtb_md(tmp / "ac_ala3_seed7.npz", molecule_name="Ac-Ala3-NHMe", seed=7, frames=20, stride=20,
                 equilibration=1000, progress=False)
    return convert_md22(npz, tmp / "ac_ala3_seed7.lmdb", molecule="Ac-Ala3-NHMe", test_only=True)


@pytest.mark.slow
@needs_xtb
@pytest.mark.parametrize("entry", MD22, ids=[e["id"] for e in MD22])
def test_md22_checkpoint_force_error_holds_on_an_independent_trajectory(entry, independent_trajectory):
    from phizoo.eval.metrics import evaluate
    from phizoo.train.data import open_dataset, split_indices

    torch.set_num_threads(1)
    model = load_checkpoint(manifest_path().parent / entry["card"], expected_sha256=entry["sha256"])
    ds = open_dataset(independent_trajectory)
    got = evaluate(model, ds, split_indices(ds, "test"))["forces_mae_meV_per_A"]
    card = model.card["metrics"]["test"]["forces_mae_meV_per_A"]
    assert got < 1.5 * card, f"{entry['id']}: {got:.1f} meV/Å on a new trajectory against {card:.1f} on its test split"
    if entry["id"] == best_checkpoint("md22")[0]:
        _, target, unit = TARGETS["md22"]
        assert got <= target, f"{entry['id']}, the best MD22-xTB checkpoint: {got:.1f} {unit} > {target} on a new trajectory"
