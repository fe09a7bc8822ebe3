"""A small labelled data set behind ``--data``.

When ``phizoo.data`` can convert, it is a real LMDB store written by ``phizoo.data.convert``
from a tiny in-memory source (so the CLI reads it through ``LmdbDataset``); otherwise the
in-memory stand-in is patched into ``phizoo.train.data.open_dataset``.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.train import synthetic


@pytest.fixture(scope="module")
def synthetic_store():
    items = synthetic.dataset(90, seed=5)
    splits = synthetic.splits(len(items), n_val=15, n_test=15, seed=1)
    return synthetic.SplitDataset(items, splits)


def write_lmdb(store, path):
    """Convert the in-memory ``store`` to an LMDB file with ``phizoo.data`` (None if unavailable)."""
    try:
        from phizoo.data.convert import Source, Structure, convert
    except ImportError:
        return None
    marker = path.with_suffix(".src")
    marker.write_text("synthetic Morse data set (tests/train/synthetic.py)\n")

    class SyntheticSource(Source):
        dataset = "synthetic"

        def files(self):
            return [marker]

        def __len__(self):
            return len(store)

        def structure(self, i):
            d = store[i]
            return Structure(z=d.z.numpy(), pos=d.pos.double().numpy(), energy=float(d.energy),
                             forces=d.forces.double().numpy(), id=f"synthetic-{i}")

        def splits(self, n, seed):
            return {k: np.asarray(v) for k, v in store.splits_.items()}, {"policy": "fixed (test fixture)"}

        def metadata(self):
            return {"name": "synthetic", "level_of_theory": "Morse pair potential", "target": "E, F"}

    return convert(SyntheticSource(), path, progress=False)


@pytest.fixture(scope="module")
def db(tmp_path_factory, synthetic_store):
    """Path to pass as ``--data`` (opened through ``phizoo.train.data.open_dataset``)."""
    from phizoo.train import data as train_data

    path = tmp_path_factory.mktemp("db") / "synthetic.lmdb"
    if write_lmdb(synthetic_store, path) is not None:
        yield path
        return
    path.mkdir()
    real_open = train_data.open_dataset

    def fake_open(p):
        return synthetic_store if str(p) == str(path) else real_open(p)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_data, "open_dataset", fake_open)
        yield path
