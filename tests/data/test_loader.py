"""LmdbDataset with torch_geometric's DataLoader, worker processes, splits."""
import pickle

import numpy as np
import torch
from torch_geometric.loader import DataLoader

from phizoo.data import LmdbDataset


def test_multiworker_loader_iterates_everything(md22_db):
    ds = LmdbDataset(md22_db)
    ds[0]  # the parent opens its environment before the workers fork: they must not use it
    loader = DataLoader(ds, batch_size=7, shuffle=False, num_workers=2)
    seen, energies = [], []
    for batch in loader:
        assert batch.energy.dtype == torch.float64 and batch.forces.shape == (batch.num_nodes, 3)
        assert batch.z.dtype == torch.long and batch.pos.dtype == torch.float32
        seen += batch.idx.tolist()
        energies += batch.energy.tolist()
    assert seen == list(range(len(ds)))
    assert np.array_equal(np.array(energies), ds.energies)
    # a stored split through the loader, in two epochs with persistent workers
    train = ds.split("train")
    loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=2, persistent_workers=True)
    for _ in range(2):
        got = sorted(i for b in loader for i in b.idx.tolist())
        assert got == sorted(train.indices)


def test_dataset_pickles_without_its_environment(md22_db):
    ds = LmdbDataset(md22_db)
    a = ds[3]
    clone = pickle.loads(pickle.dumps(ds))  # what spawn-started workers receive
    assert clone._env is None
    b = clone[3]
    assert torch.equal(a.pos, b.pos) and torch.equal(a.energy, b.energy)


def test_two_datasets_on_one_file_and_close(md22_db):
    a, b = LmdbDataset(md22_db), LmdbDataset(md22_db, dtype=torch.float64)
    assert a[1].energy.item() == b[1].energy.item()
    a.close()
    assert b[2].pos.dtype == torch.float64
    assert a[2].idx.item() == 2  # reopens lazily
    b.close()
    a.close()


def test_index_and_trainer_facing_api(md22_db):
    ds = LmdbDataset(md22_db)
    assert ds.natoms.tolist() == [6] * len(ds)
    assert isinstance(ds.metadata, dict) and ds.metadata["units"]["energy"] == "eV"
    assert ds.split_names == ["test", "train", "val"] or set(ds.split_names) == {"train", "val", "test"}
    sub = ds.split("val")
    assert list(sub.indices) == ds.split_indices("val").tolist()
