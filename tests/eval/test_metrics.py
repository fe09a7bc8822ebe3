"""Metric definitions, the memory meter and the dataset adapter."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import phizoo
import phizoo.eval
from phizoo.train.data import split_indices
from tests.train import synthetic

lb = sys.modules["phizoo.eval.leaderboard"]  # the module (phizoo.eval.leaderboard is the function)


def test_cpu_peak_allocated_is_exact():
    def work():
        a = torch.ones(262144)          # 1 MiB, kept
        b = torch.ones(2 * 262144)      # 2 MiB, freed before c
        del b
        c = torch.ones(262144)          # 1 MiB
        return a, c

    peak = lb.cpu_peak_allocated(work)
    assert peak == 3 * 2**20
    assert lb.cpu_peak_allocated(work) == peak


def test_leaderboard_rows_and_repeatable_memory():
    items = synthetic.dataset(20, seed=9)
    torch.manual_seed(0)
    base = phizoo.build_model("painn", preset="test")
    torch.manual_seed(0)
    phi = phizoo.build_model("painn", phi=True, preset="test")
    rows = phizoo.eval.leaderboard([base, phi, base], items, indices=list(range(20)), batch_size=10,
                                   names=["a", "b", "a-again"])
    assert [r["model"] for r in rows] == ["a", "b", "a-again"] and [r["phi"] for r in rows] == [False, True, False]
    assert rows[0]["peak_memory_MB"] == rows[2]["peak_memory_MB"] > 0
    assert rows[1]["peak_memory_MB"] > rows[0]["peak_memory_MB"]  # Φ with forces allocates more
    assert rows[0]["energy_mae_meV"] == rows[2]["energy_mae_meV"]
    md = phizoo.eval.markdown_table(rows)
    assert md.count("\n") == 2 + 3 and "| b | yes |" in md


def test_evaluate_plain_mae_per_molecule_and_atom():
    items = synthetic.dataset(12, seed=4)
    torch.manual_seed(1)
    model = phizoo.build_model("painn", preset="test", dtype=torch.float64).eval()
    m, p = phizoo.eval.evaluate(model, items, list(range(12)), batch_size=5, return_predictions=True)
    out = [model(d) for d in items]
    err = np.array([float(o["energy"][0] - d.energy[0]) for o, d in zip(out, items)])
    nat = np.array([d.z.numel() for d in items])
    assert m["energy_mae_meV"] == pytest.approx(1000 * np.abs(err).mean(), rel=1e-10)
    assert m["energy_rmse_meV"] == pytest.approx(1000 * np.sqrt((err ** 2).mean()), rel=1e-10)
    assert m["energy_mae_meV_per_atom"] == pytest.approx(1000 * np.abs(err / nat).mean(), rel=1e-10)
    ferr = torch.cat([o["forces"].detach() - d.forces for o, d in zip(out, items)])
    assert m["forces_mae_meV_per_A"] == pytest.approx(1000 * float(ferr.abs().mean()), rel=1e-8)
    assert m["n_structures"] == 12 and m["n_force_components"] == 3 * int(nat.sum())
    assert list(p["index"]) == list(range(12))


def test_split_indices_accepts_the_store_forms():
    class WithSubset:
        def split(self, name):
            return torch.utils.data.Subset([0] * 9, [4, 2, 7])

    class WithArray:
        def split_indices(self, name):
            return np.array([3, 1])

    class WithMapping:
        splits = {"train": [0, 5]}

    assert split_indices(WithSubset(), "train") == [4, 2, 7]
    assert split_indices(WithArray(), "val") == [3, 1]
    assert split_indices(WithMapping(), "train") == [0, 5]
    with pytest.raises(KeyError, match="no split 'test'"):
        split_indices(WithMapping(), "test")
    with pytest.raises(KeyError, match="stores no splits"):
        split_indices([1, 2], "train")
