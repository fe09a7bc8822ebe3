"""A small labelled data set behind ``--data``: the real LMDB store when ``phizoo.data`` can
write one, else the in-memory stand-in patched into ``phizoo.train.data.open_dataset``."""
from __future__ import annotations

import pytest

from tests.train import synthetic


@pytest.fixture(scope="module")
def synthetic_store():
    items = synthetic.dataset(90, seed=5)
    splits = synthetic.splits(len(items), n_val=15, n_test=15, seed=1)
    return synthetic.SplitDataset(items, splits)


@pytest.fixture(scope="module")
def db(tmp_path_factory, synthetic_store):
    """Path to pass as ``--data`` (opened through ``phizoo.train.data.open_dataset``)."""
    from phizoo.train import data as train_data

    path = tmp_path_factory.mktemp("db") / "synthetic.lmdb"
    path.mkdir()
    stores = {str(path): synthetic_store}
    real_open = train_data.open_dataset

    def fake_open(p):
        return stores[str(p)] if str(p) in stores else real_open(p)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_data, "open_dataset", fake_open)
        yield path
