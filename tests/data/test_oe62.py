"""OE62 converter: XYZ parsing, target and charges, the 50,000/6,000/rest split scaled, references
fitted on the training split only, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from phizoo.data import DataError, LmdbDataset, convert_oe62
from phizoo.data.oe62 import parse_xyz

from . import native


def test_values_ids_charges(tmp_path, oe62_file):
    df = pd.read_json(oe62_file, orient="split")
    ds = LmdbDataset(convert_oe62(oe62_file, tmp_path / "o.lmdb"), dtype=torch.float64, return_ids=True)
    assert len(ds) == 100 and ds.metadata["target"] == "total_energy_pbe0_vac_tier2"
    for i in (0, 42, 99):
        row, d = df.iloc[i], ds[i]
        assert d.id == row["refcode_csd"]
        assert d.energy.dtype == torch.float64 and d.energy.item() == row["total_energy_pbe0_vac_tier2"]  # eV as is
        z, pos = parse_xyz(row["xyz_pbe_relaxed"], "x")
        assert d.z.tolist() == z.tolist() and len(z) == row["number_of_atoms"]
        np.testing.assert_array_equal(d.pos.numpy(), pos)
        np.testing.assert_array_equal(d.charges.numpy(), np.asarray(row["hirshfeld_pbe"]))
        rec = ds.get_record(i)
        assert rec["meta"]["refcode_csd"] == row["refcode_csd"] and rec["meta"]["row"] == i
        assert rec["meta"]["index_label"] == int(df.index[i]) and rec["meta"]["smiles"] == row["canonical_smiles"].strip()
    # a hand-written block: symbols, tabs, Å unchanged
    z, pos = parse_xyz("3\ncomment\nO\t0.0\t0.0\t0.1173\nH 0.0 0.7572 -0.4692\nh 0.0 -0.7572 -0.4692\n", "w")
    assert z.tolist() == [8, 1, 1] and pos[1, 1] == 0.7572


def test_split_sizes_scaled_disjoint_reproducible(tmp_path, oe62_file):
    a = LmdbDataset(convert_oe62(oe62_file, tmp_path / "a.lmdb"))
    b = LmdbDataset(convert_oe62(oe62_file, tmp_path / "b.lmdb"))
    sizes = a.metadata["splits"]["sizes"]
    # 50,000 / 6,000 of 61,489 scaled to 100 molecules: 81.3 -> 81, 9.76 -> 10, rest 9
    assert sizes == {"train": 81, "val": 10, "test": 9} and a.metadata["splits"]["seed"] == 42
    parts = [set(a.split_indices(k).tolist()) for k in ("train", "val", "test")]
    assert set().union(*parts) == set(range(100)) and sum(map(len, parts)) == 100
    for k in ("train", "val", "test"):
        assert np.array_equal(a.split_indices(k), b.split_indices(k))
    c = LmdbDataset(convert_oe62(oe62_file, tmp_path / "c.lmdb", seed=1))
    assert not np.array_equal(a.split_indices("test"), c.split_indices("test"))
    # the paper's exact sizes for the full set follow from the same rule
    from phizoo.data.convert import scaled_sizes
    assert scaled_sizes((50000, 6000), 61489, 61489) == [50000, 6000]
    # explicit sizes and nested training subsets
    d = LmdbDataset(convert_oe62(oe62_file, tmp_path / "d.lmdb", train_size=50, val_size=20, train_subsets=[10, 25]))
    s = d.metadata["splits"]["sizes"]
    assert s == {"train": 50, "val": 20, "test": 30, "train_10": 10, "train_25": 25}
    assert set(d.split_indices("train_10")) <= set(d.split_indices("train_25")) <= set(d.split_indices("train"))
    # a fixed-size test split: the same permutation continued, the rest in no split
    e = LmdbDataset(convert_oe62(oe62_file, tmp_path / "e.lmdb", train_size=50, val_size=20, test_size=12))
    assert e.metadata["splits"]["sizes"] == {"train": 50, "val": 20, "test": 12}
    for k in ("train", "val"):
        assert np.array_equal(e.split_indices(k), d.split_indices(k))
    assert set(e.split_indices("test")) < set(d.split_indices("test"))
    with pytest.raises(DataError, match="need 101 structures"):
        convert_oe62(oe62_file, tmp_path / "f.lmdb", train_size=50, val_size=20, test_size=31)


def test_references_fitted_on_train_only(tmp_path):
    df = native.oe62_frame(n=100, seed=3)
    src = native.oe62_json(tmp_path / "df_62k.json", df)
    ds = LmdbDataset(convert_oe62(src, tmp_path / "a.lmdb"))
    refs = ds.element_references
    assert ds.metadata["element_references"]["fitted_on"] == "train"
    assert ds.metadata["element_references"]["num_structures"] == 81
    for z, e in native.TRUE_REFS.items():
        assert refs[z] == pytest.approx(e, abs=0.05)
    test_rows = ds.split_indices("test")
    train_rows = ds.split_indices("train")
    # changing a TEST energy leaves the references bit-identical
    df2 = df.copy()
    df2.iloc[test_rows[0], df2.columns.get_loc("total_energy_pbe0_vac_tier2")] += 1000.0
    b = LmdbDataset(convert_oe62(native.oe62_json(tmp_path / "df2.json", df2), tmp_path / "b.lmdb"))
    assert b.element_references == refs
    assert b[int(test_rows[0])].energy.item() == pytest.approx(ds[int(test_rows[0])].energy.item() + 1000.0)
    # changing a TRAIN energy changes them
    df3 = df.copy()
    df3.iloc[train_rows[0], df3.columns.get_loc("total_energy_pbe0_vac_tier2")] += 1000.0
    c = LmdbDataset(convert_oe62(native.oe62_json(tmp_path / "df3.json", df3), tmp_path / "c.lmdb"))
    assert c.element_references != refs
    # the references equal a least-squares fit over the training rows computed here
    counts = np.array([[int((ds.get_record(i)["z"] == z).sum()) for z in sorted(native.TRUE_REFS)] for i in train_rows])
    coef = np.linalg.lstsq(counts, ds.energies[train_rows], rcond=None)[0]
    np.testing.assert_allclose([refs[z] for z in sorted(native.TRUE_REFS)], coef, rtol=1e-12)


def test_subset_files_with_fewer_columns(tmp_path):
    """df_5k/df_31k-like files: only the used columns are required."""
    df = native.oe62_frame(n=30, seed=5)[["refcode_csd", "xyz_pbe_relaxed", "total_energy_pbe0_vac_tier2",
                                          "hirshfeld_pbe"]]
    ds = LmdbDataset(convert_oe62(native.oe62_json(tmp_path / "df_5k.json", df), tmp_path / "f.lmdb", limit=20))
    assert len(ds) == 20 and ds.metadata["rows_in_file"] == 30
    assert ds.metadata["splits"]["sizes"] == {"train": 16, "val": 2, "test": 2}
    # another target, charges dropped
    ds2 = LmdbDataset(convert_oe62(native.oe62_json(tmp_path / "df_31k.json", native.oe62_frame(n=30, seed=5)),
                                   tmp_path / "g.lmdb", target="total_energy_pbe", charges=None))
    assert "charges" not in ds2.fields and ds2[0].energy.item() == pytest.approx(ds[0].energy.item() + 5.0)


def _write(tmp_path, df):
    return native.oe62_json(tmp_path / "df_62k.json", df)


@pytest.mark.parametrize("edit, message", [
    (lambda df: df.drop(columns=["xyz_pbe_relaxed"]), "missing column\\(s\\) 'xyz_pbe_relaxed'"),
    (lambda df: df.drop(columns=["total_energy_pbe0_vac_tier2", "hirshfeld_pbe"]),
     "missing column\\(s\\) 'total_energy_pbe0_vac_tier2', 'hirshfeld_pbe'"),
    (lambda df: df.assign(total_energy_pbe0_vac_tier2=[np.nan] + [1.0] * 9), "row 0 \\(refcode_csd REF00000\\): column 'total_energy_pbe0_vac_tier2' is nan"),
    (lambda df: df.assign(xyz_pbe_relaxed=df.xyz_pbe_relaxed.str.replace("\nC\t", "\nXx\t", n=1)),
     "row 0 .*unknown element 'Xx'"),
    (lambda df: df.assign(xyz_pbe_relaxed=["3\n\nC 0 0 0\n"] + list(df.xyz_pbe_relaxed[1:])),
     "row 0 .*announces 3 atoms but has 1"),
    (lambda df: df.assign(xyz_pbe_relaxed=df.xyz_pbe_relaxed.str.replace("\nC\t", "\nC\tinf\t", n=1)),
     "row 0 .*column 'xyz_pbe_relaxed'.*non-finite coordinate"),
    (lambda df: df.assign(hirshfeld_pbe=[[0.1]] + list(df.hirshfeld_pbe[1:])), "row 0 .*'hirshfeld_pbe' has shape \\[1\\]"),
    (lambda df: df.assign(number_of_atoms=df.number_of_atoms + 1), "row 0 .*'number_of_atoms' says"),
    (lambda df: df.iloc[:0], "holds no structures"),
])
def test_bad_input(tmp_path, edit, message):
    src = _write(tmp_path, edit(native.oe62_frame(n=10, seed=2)))
    with pytest.raises(DataError, match=message) as err:
        convert_oe62(src, tmp_path / "x.lmdb")
    assert str(src) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["df_62k.json"]


def test_not_json_or_wrong_orient(tmp_path):
    p = tmp_path / "df_62k.json"
    p.write_text('{"not": "split orient"')
    with pytest.raises(DataError, match="not a pandas orient='split' JSON"):
        convert_oe62(p, tmp_path / "x.lmdb")
    p.write_text("")
    with pytest.raises(DataError, match="empty file"):
        convert_oe62(p, tmp_path / "x.lmdb")
    native.oe62_frame(n=3).to_json(p, orient="records")
    with pytest.raises(DataError, match=str(p)):
        convert_oe62(p, tmp_path / "x.lmdb")
