"""The record codec and the store: plain arrays, safetensors layout, no pickle, validation."""
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from phizoo.data import DataError, LmdbDataset, codec
from phizoo.data.store import FIELDS, validate_arrays
from phizoo.data.store_writer import StoreWriter

DATA_DIR = Path(__file__).resolve().parents[2] / "phizoo" / "data"


def test_codec_round_trip_and_safetensors_interop():
    arrays = {"z": np.array([8, 1, 1], np.uint8), "pos": np.arange(9.0).reshape(3, 3),
              "energy": np.array([-2079.123456789012345]), "charges": np.array([-0.8, 0.4, 0.4])}
    buf = codec.encode(arrays, {"id": "water", "meta": '{"row": 3}'}, key=b"0000000003")
    back, meta = codec.decode(buf, key=b"0000000003")
    assert meta["id"] == "water" and meta["meta"] == '{"row": 3}' and len(meta["sha256"]) == 64
    assert meta["key"] == "0000000003"
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    assert back["energy"][0] == arrays["energy"][0]  # float64 exactly
    # any safetensors reader can read a record
    other = safetensors.numpy.load(buf)
    assert set(other) == set(arrays) and np.array_equal(other["pos"], arrays["pos"])


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:5], "truncated"),
    (lambda b: b[:-3], "corrupted"),
    (lambda b: b[:8] + b"#" + b[9:], "no whole-record sha256"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), "sha256 check"),
    (lambda b: b.replace(b'"F64"', b'"F32"'), "sha256 check"),  # the header is covered too
    (lambda b: (10 ** 9).to_bytes(8, "little") + b[8:], "sha256 check"),
])
def test_codec_rejects_corrupted_bytes(mutate, message):
    buf = codec.encode({"z": np.array([6], np.uint8), "pos": np.zeros((1, 3))})
    with pytest.raises(DataError, match=message):
        codec.decode(mutate(buf))


def test_no_pickle_anywhere_in_phizoo_data():
    for path in DATA_DIR.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, path
        assert "torch.load" not in text, path


def test_validate_arrays_messages():
    ok = {"z": [1, 8], "pos": np.array([[0.0, 0, 0], [0.96, 0, 0]]), "energy": -1.0, "total_charge": 0.0}
    out = validate_arrays(ok, "src: record 0")
    assert out["z"].dtype == np.uint8 and out["energy"].dtype == np.float64 and out["energy"].shape == (1,)
    cases = [
        ({"z": [1, 0]}, "unknown element"), ({"z": [1, 200]}, "unknown element"),
        ({"z": [1.5, 1]}, "not integers"), ({"z": []}, "non-empty"),
        ({"pos": np.zeros((3, 3))}, "'pos' has shape"), ({"pos": np.full((2, 3), np.nan)}, "non-finite"),
        ({"energy": np.inf}, "non-finite"), ({"forces": np.zeros((2, 2))}, "'forces' has shape"),
        ({"charges": [0.1]}, "'charges' has shape"), ({"hessian": np.zeros(6)}, "unknown array"),
        ({"pos": np.zeros((2, 3))}, "atoms 0 and 1 are 0 Å apart"),
    ]
    for change, message in cases:
        with pytest.raises(DataError, match=message) as err:
            validate_arrays({**ok, **change}, "src.npz: record 7")
        assert "src.npz: record 7" in str(err.value)
    with pytest.raises(DataError, match="missing energy"):
        validate_arrays({k: v for k, v in ok.items() if k != "energy"}, "x")


def _tiny_db(path, n, **fields):
    with StoreWriter(path, "fp") as w:
        for i in range(n):
            w.add({"z": [1, 6], "pos": np.array([[i, i, i], [i + 1.1, i, i]], float), "energy": -1000.0 - i * 1e-9,
                   "total_charge": 0.0, **fields}, id=f"s{i}", meta={"i": i})
        return w.finalize({"name": "tiny"}, {"train": np.arange(n // 2), "test": np.arange(n // 2, n)},
                          {"natoms": np.full(n, 2, np.int32), "energy": -1000.0 - np.arange(n) * 1e-9})


def test_store_round_trip(tmp_path):
    path = _tiny_db(tmp_path / "t.lmdb", 10)
    ds = LmdbDataset(path, return_ids=True)
    assert len(ds) == 10 and ds.metadata["name"] == "tiny" and ds.metadata["schema_version"] == 2
    d = ds[3]
    assert d.z.dtype.is_floating_point is False and d.z.tolist() == [1, 6]
    assert d.energy.dtype.__str__() == "torch.float64" and d.energy.item() == -1000.0 - 3e-9
    assert d.pos.dtype.__str__() == "torch.float32" and d.id == "s3" and d.idx.item() == 3
    assert ds[-1].idx.item() == 9
    with pytest.raises(IndexError):
        ds[10]
    rec = ds.get_record(5)
    assert rec["id"] == "s5" and rec["meta"] == {"i": 5} and rec["pos"].dtype == np.float64
    assert ds.split_indices("train").tolist() == [0, 1, 2, 3, 4]
    sub = ds.split("test")
    assert len(sub) == 5 and sub[0].idx.item() == 5 and list(sub.indices) == [5, 6, 7, 8, 9]
    with pytest.raises(KeyError, match="no split 'val'"):
        ds.split("val")
    assert ds.natoms.tolist() == [2] * 10
    import torch
    ds64 = LmdbDataset(path, dtype=torch.float64)
    assert ds64[2].pos.dtype == torch.float64 and ds64[2].pos[0, 0].item() == 2.0


def test_records_must_share_fields(tmp_path):
    with pytest.raises(DataError, match="earlier records"):
        with StoreWriter(tmp_path / "m.lmdb", "fp") as w:
            w.add({"z": [1], "pos": np.zeros((1, 3)), "energy": 1.0, "total_charge": 0.0})
            w.add({"z": [1], "pos": np.zeros((1, 3)), "energy": 1.0, "total_charge": 0.0,
                   "forces": np.zeros((1, 3))})
    assert not list(tmp_path.iterdir())  # nothing half-written remains


def test_schema_fields_documented():
    from phizoo.data import store
    for name in FIELDS:
        assert f"``{name}``" in store.__doc__
