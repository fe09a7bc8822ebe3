"""Opening a database reads a few keys, never the records: open time does not grow with size."""
import time

import numpy as np
import pytest

from phizoo.data import LmdbDataset, codec
from phizoo.data.store_writer import StoreWriter


def _build(path, n):
    z, pos = np.array([1, 8, 1]), np.array([[0.76, 0.59, 0.0], [0.0, 0.0, 0.0], [-0.76, 0.59, 0.0]])  # water
    with StoreWriter(path, "fp", commit_every=5000) as w:
        for i in range(n):
            w.add({"z": z, "pos": pos + i * 1e-3, "energy": -2000.0 - i, "total_charge": 0.0}, id=str(i))
        order = np.random.default_rng(0).permutation(n)
        return w.finalize({"name": f"synthetic-{n}"},
                          {"train": order[: n // 2], "val": order[n // 2: 3 * n // 4], "test": order[3 * n // 4:]},
                          {"natoms": np.full(n, 3, np.int32), "energy": -2000.0 - np.arange(n, dtype=np.float64)})


def _open_and_read(path, n, reads=300):
    idx = np.random.default_rng(1).integers(0, n, reads)
    t0 = time.perf_counter()
    ds = LmdbDataset(path)
    t1 = time.perf_counter()
    for i in idx:
        rec = ds.get_record(int(i))
        assert rec["energy"][0] == -2000.0 - i
    t2 = time.perf_counter()
    ds.close()
    return t1 - t0, (t2 - t1) / reads


@pytest.mark.slow
def test_open_and_random_access_do_not_scale(tmp_path, monkeypatch):
    small = _build(tmp_path / "small.lmdb", 200)
    large = _build(tmp_path / "large.lmdb", 20_000)
    calls = []
    real = codec.decode
    monkeypatch.setattr(codec, "decode", lambda b, key=None: (calls.append(1), real(b, key))[1])
    ds = LmdbDataset(large)
    assert len(ds) == 20_000 and calls == []  # opening decoded no record
    assert len(ds.split("train")) == 10_000 and len(calls) == 1  # one split key, still no record
    ds.close()
    monkeypatch.setattr(codec, "decode", real)
    _open_and_read(small, 200), _open_and_read(large, 20_000)  # warm up
    open_s = min(_open_and_read(small, 200)[0] for _ in range(3))
    open_l, access_l = min(_open_and_read(large, 20_000) for _ in range(3))
    access_s = min(_open_and_read(small, 200)[1] for _ in range(3))
    print(f"open: 200 records {open_s * 1e3:.2f} ms, 20k records {open_l * 1e3:.2f} ms; "
          f"random get_record: {access_s * 1e6:.0f} us vs {access_l * 1e6:.0f} us")
    assert open_l < 0.1 and open_l < 5 * open_s + 0.01
    assert access_l < 3 * access_s + 100e-6
