"""MD22 converter: units, float64, file names, the paper's split protocol, bad input."""
import numpy as np
import pytest
import torch

from phizoo.data import DataError, LmdbDataset, convert_md22
from phizoo.data.md22 import MOLECULES, molecule_from_name

from . import native


def test_units_float64_and_values(tmp_path, md22_file):
    db = convert_md22(md22_file, tmp_path / "a.lmdb", train_size=20)
    ds = LmdbDataset(db, dtype=torch.float64)
    src = np.load(md22_file)
    assert len(ds) == 40 and ds.metadata["molecule"] == "AT-AT"
    for i in (0, 17, 39):
        d = ds[i]
        assert d.energy.dtype == torch.float64 and d.energy.shape == (1,)
        # hand-computed: kcal/mol -> eV = 4184 J / (N_A e)
        assert d.energy.item() == pytest.approx(src["E"][i, 0] * native.KCAL_MOL_IN_EV, rel=1e-7)
        np.testing.assert_allclose(d.forces.numpy(), src["F"][i] * native.KCAL_MOL_IN_EV, rtol=1e-7)
        np.testing.assert_array_equal(d.pos.numpy(), src["R"][i])  # Å, exact
        assert d.z.tolist() == src["z"].tolist() and d.z.dtype == torch.long
        assert d.total_charge.item() == 0.0 and "charges" not in d
    assert native.KCAL_MOL_IN_EV == pytest.approx(0.0433641, rel=1e-6)
    assert ds.get_record(5)["id"] == "AT-AT/5" and ds.get_record(5)["meta"] == {"frame": 5}
    assert ds.metadata["source_units"]["energy"] == "kcal/mol" and ds.units["energy"] == "eV"
    assert ds.metadata["element_references"] is None  # one composition: not identifiable
    assert ds.metadata["source"]["files"][0]["sha256"] == __import__("hashlib").sha256(md22_file.read_bytes()).hexdigest()
    # energies of a float32 dataset stay float64
    assert LmdbDataset(db)[0].energy.dtype == torch.float64


def test_energy_shape_n_or_n1(tmp_path):
    a = convert_md22(native.md22_npz(tmp_path / "md22_DHA.npz", n=30, e_shape="n1"), tmp_path / "a.lmdb", train_size=10)
    b = convert_md22(native.md22_npz(tmp_path / "md22_DHA_flat.npz", n=30, e_shape="n"), tmp_path / "b.lmdb",
                     train_size=10)
    assert np.array_equal(LmdbDataset(a).energies, LmdbDataset(b).energies)


def test_file_names_recognised():
    assert molecule_from_name("md22_dw_nanotube.npz") == "double-walled_nanotube"
    assert molecule_from_name("md22_double-walled_nanotube.npz") == "double-walled_nanotube"
    assert molecule_from_name("md22_Ac-Ala3-NHMe.npz") == "Ac-Ala3-NHMe"
    assert molecule_from_name("md22_AT-AT.npz") == "AT-AT"
    assert molecule_from_name("md22_AT-AT-CG-CG.npz") == "AT-AT-CG-CG"
    assert molecule_from_name("md22_buckyball-catcher.npz") == "buckyball-catcher"
    assert molecule_from_name("md22_stachyose.npz") == "stachyose" and molecule_from_name("md22_DHA.npz") == "DHA"
    assert molecule_from_name("md22_benzene.npz") is None
    assert [MOLECULES[m][0] for m in MOLECULES] == [6000, 8000, 8000, 3000, 2000, 600, 800]


@pytest.mark.parametrize("name", ["md22_dw_nanotube.npz", "md22_double-walled_nanotube.npz"])
def test_nanotube_budget_and_split_protocol(tmp_path, name):
    src = native.md22_npz(tmp_path / name, n=1000, atoms=3)
    ds = LmdbDataset(convert_md22(src, tmp_path / "n.lmdb"))
    sp = ds.metadata["splits"]
    assert ds.metadata["molecule"] == "double-walled_nanotube" and sp["budget"] == 800
    train, val, test = (set(ds.split_indices(k).tolist()) for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (760, 40, 200)  # 95 % / 5 % of 800, the rest test
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1000))
    # --limit scales the budget by limit / frames in the file: 800 * 503 / 1000 = 402 -> 382 / 20 / 101
    ds2 = LmdbDataset(convert_md22(src, tmp_path / "l.lmdb", limit=503))
    assert len(ds2) == 503 and ds2.metadata["splits"]["budget"] == 402
    assert {k: v for k, v in ds2.metadata["splits"]["sizes"].items()} == {"train": 382, "val": 20, "test": 101}


def test_splits_reproducible_and_seeded(tmp_path, md22_file):
    a = LmdbDataset(convert_md22(md22_file, tmp_path / "a.lmdb", train_size=20, seed=7))
    b = LmdbDataset(convert_md22(md22_file, tmp_path / "b.lmdb", train_size=20, seed=7))
    c = LmdbDataset(convert_md22(md22_file, tmp_path / "c.lmdb", train_size=20, seed=8))
    for k in ("train", "val", "test"):
        assert np.array_equal(a.split_indices(k), b.split_indices(k))
    assert not np.array_equal(a.split_indices("train"), c.split_indices("train"))
    assert (len(a.split("train")), len(a.split("val")), len(a.split("test"))) == (19, 1, 20)
    assert a.metadata["splits"]["seed"] == 7


def test_unknown_molecule_needs_train_size(tmp_path):
    src = native.md22_npz(tmp_path / "md22_benzene.npz", n=20)
    with pytest.raises(DataError, match="unknown MD22 molecule.*--train-size"):
        convert_md22(src, tmp_path / "x.lmdb")
    ds = LmdbDataset(convert_md22(src, tmp_path / "x.lmdb", train_size=10))
    assert ds.metadata["splits"]["sizes"] == {"train": 9, "val": 1, "test": 10}  # 0.05 * 10 rounds to 1
    with pytest.raises(DataError, match="budget 30 exceeds the 20"):
        convert_md22(src, tmp_path / "y.lmdb", train_size=30)
    assert not (tmp_path / "y.lmdb").exists()


def _bad(tmp_path, **override):
    return native.md22_npz(tmp_path / "md22_AT-AT.npz", n=12, **override)


@pytest.mark.parametrize("override, message", [
    ({"F": None}, "missing key\\(s\\) 'F'"),
    ({"E": None, "R": None}, "missing key\\(s\\) 'R', 'E'"),
    ({"R": np.zeros((12, 5, 3))}, "key 'R' has shape \\[12, 5, 3\\], expected \\[n, 6, 3\\]"),
    ({"E": np.zeros((11, 1))}, "key 'E' has shape \\[11, 1\\]"),
    ({"E": np.zeros((12, 2))}, "key 'E' has shape \\[12, 2\\]"),
    ({"F": np.zeros((12, 6, 2))}, "key 'F' has shape"),
    ({"z": np.array([6, 1, 8, 7, 0, 1])}, "key 'z': unknown element.*\\[0\\]"),
    ({"z": np.array([6, 1, 8, 7, 150, 1])}, "key 'z': unknown element.*\\[150\\]"),
    ({"z": np.zeros((0,), np.uint8), "R": np.zeros((12, 0, 3)), "F": np.zeros((12, 0, 3))}, "key 'z' must have"),
    ({"R": np.zeros((0, 6, 3)), "E": np.zeros((0, 1)), "F": np.zeros((0, 6, 3))}, "holds no frames"),
    ({"z": np.array(["C"] * 6)}, "key 'z' has dtype"),
])
def test_bad_npz(tmp_path, override, message):
    src = _bad(tmp_path, **override)
    with pytest.raises(DataError, match=message) as err:
        convert_md22(src, tmp_path / "x.lmdb")
    assert str(src) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md22_AT-AT.npz"]  # nothing half-written


@pytest.mark.parametrize("key", ["R", "E", "F"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_name_key_and_frame(tmp_path, key, bad):
    rng = np.random.default_rng(1)
    arr = {"R": rng.normal(size=(12, 6, 3)), "E": rng.normal(size=(12, 1)), "F": rng.normal(size=(12, 6, 3))}[key]
    arr[7] *= bad
    src = _bad(tmp_path, **{key: arr})
    with pytest.raises(DataError, match=f"key '{key}': frame 7 holds a non-finite value"):
        convert_md22(src, tmp_path / "x.lmdb")
    assert not (tmp_path / "x.lmdb").exists()


def test_empty_and_not_npz_files(tmp_path):
    empty = tmp_path / "md22_DHA.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        convert_md22(empty, tmp_path / "x.lmdb")
    junk = tmp_path / "md22_AT-AT.npz"
    junk.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(DataError, match="not a readable .npz"):
        convert_md22(junk, tmp_path / "x.lmdb")
    with pytest.raises(DataError, match="no such") as err:
        convert_md22(tmp_path / "missing.npz", tmp_path / "x.lmdb")
    assert isinstance(err.value, FileNotFoundError)
    # object arrays are never unpickled
    obj = tmp_path / "md22_stachyose.npz"
    np.savez(obj, R=np.zeros((2, 1, 3)), z=np.array([1]), E=np.array([[1.0], [2.0]]),
             F=np.array([None, None], dtype=object))
    with pytest.raises(DataError, match="key 'F' is unreadable"):
        convert_md22(obj, tmp_path / "x.lmdb", train_size=1)


def test_limit_must_be_positive(tmp_path, md22_file):
    with pytest.raises(DataError, match="limit must be at least 1"):
        convert_md22(md22_file, tmp_path / "x.lmdb", limit=0)


def test_converter_q_checks(tmp_path):
    q = np.zeros((30, 6))
    with pytest.raises(DataError, match=r"key 'Q' \(partial charges\) has shape \[30, 5\], expected \[30, 6\]"):
        convert_md22(native.md22_npz(tmp_path / "md22_DHA.npz", n=30, Q=q[:, :5]), tmp_path / "a.lmdb")
    bad = q.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="key 'Q': frame 7 holds a non-finite"):
        convert_md22(native.md22_npz(tmp_path / "md22_DHA.npz", n=30, Q=bad), tmp_path / "a.lmdb", train_size=10)
    bad = q.copy()
    bad[3, 0] = 1.0
    with pytest.raises(DataError, match="charges of frame 3 sum to 1 e.*neutral"):
        convert_md22(native.md22_npz(tmp_path / "md22_DHA.npz", n=30, Q=bad), tmp_path / "a.lmdb", train_size=10)
    good = np.tile([0.1, -0.1, 0.2, -0.2, 0.05, -0.05], (30, 1))
    ds = LmdbDataset(convert_md22(native.md22_npz(tmp_path / "md22_DHA.npz", n=30, Q=good), tmp_path / "g.lmdb",
                                  train_size=10))
    assert ds.metadata["level_of_theory"] == "PBE+MBD" and ds.metadata["name"] == "MD22 DHA"
    np.testing.assert_allclose(ds[4].charges.numpy(), good[4])
    # without Q: no charges, as before
    ds = LmdbDataset(convert_md22(native.md22_npz(tmp_path / "md22_AT-AT.npz", n=30), tmp_path / "n.lmdb",
                                  train_size=10))
    assert "charges" not in ds[0] and "charges" not in ds.metadata["source_units"]
