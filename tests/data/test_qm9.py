"""QM9 converter: qm9pack CSV layout (fixtures and the real package data), units, splits, bad input."""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phizoo.data import DataError, LmdbDataset, convert_qm9
from phizoo.data.qm9 import QM9_TOTAL, qm9pack_data_dir

from . import native
from tests.optional import needs_qm9pack



def test_fixture_values_and_units(tmp_path, qm9_file):
    rows = native.qm9_rows(60)
    ds = LmdbDataset(convert_qm9(qm9_file, tmp_path / "q.lmdb"), dtype=torch.float64, return_ids=True)
    assert len(ds) == 60 and ds.metadata["dataset"] == "qm9"
    for i in (0, 31, 59):
        r, d = rows[i], ds[i]
        assert d.id == r["XYZ_file"][:-4]
        # Hartree -> eV and Debye -> e·Å, hand-computed factors
        assert d.energy.dtype == torch.float64
        assert d.energy.item() == pytest.approx(r["InternalEnergy_0K_au"] * native.HARTREE_IN_EV, rel=1e-7)
        assert d.dipole.item() == pytest.approx(r["Dipole_debye"] * native.DEBYE_IN_E_ANGSTROM, rel=1e-7)
        assert d.z.tolist() == [{"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}[s] for s in r["Elements"][2:-2].split("','")]
        assert d.pos[0].tolist() == [0.0, 1.0, 0.0]  # written as [0.,1.,0.]
        assert d.charges.tolist() == [float(x) for x in r["Mulliken_pop"][1:-1].split(",")]
        assert ds.get_record(i)["meta"]["qm9_index"] == r["Index"]
    assert ds.metadata["source_units"]["energy"] == "Hartree" and ds.metadata["units"]["dipole"] == "e*angstrom"
    refs = ds.metadata["element_references"]
    assert refs["fitted_on"] == "train" and set(refs["energies"]) <= {"1", "6", "7", "8", "9"}


def test_folder_of_parts_limit_and_subsets(tmp_path):
    folder = tmp_path / "qm9"
    folder.mkdir()
    # part 10 must come after part 2 (numeric order)
    native.qm9_csv(folder / "qm9_part1.csv", native.qm9_rows(30, seed=1, start=1))
    native.qm9_csv(folder / "qm9_part2.csv", native.qm9_rows(30, seed=2, start=100))
    native.qm9_csv(folder / "qm9_part10.csv", native.qm9_rows(30, seed=3, start=1000))
    ds = LmdbDataset(convert_qm9(folder, tmp_path / "q.lmdb", limit=75, train_subsets=[5, 20]))
    ids = [ds.get_record(i)["meta"]["qm9_index"] for i in range(len(ds))]
    assert len(ds) == 75 and ids[:2] == [1, 3] and ids[30] == 100 and ids[60] == 1000
    sizes = ds.metadata["splits"]["sizes"]
    # 110,000 / 10,000 of 130,831 scaled to 75: 63.06 -> 63, 5.73 -> 6, rest 6
    assert sizes == {"train": 63, "val": 6, "test": 6, "train_5": 5, "train_20": 20}
    assert set(ds.split_indices("train_5")) <= set(ds.split_indices("train_20")) <= set(ds.split_indices("train"))
    assert [f["name"] for f in ds.metadata["source"]["files"]] == ["qm9_part1.csv", "qm9_part2.csv", "qm9_part10.csv"]
    with pytest.raises(DataError, match="training subset of 100 structures"):
        convert_qm9(folder, tmp_path / "r.lmdb", limit=75, train_subsets=[100])
    assert not (tmp_path / "r.lmdb").exists()


def test_standard_split_sizes():
    from phizoo.data.convert import scaled_sizes
    assert scaled_sizes((110000, 10000), QM9_TOTAL, QM9_TOTAL) == [110000, 10000]  # test = 10,831


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("InternalEnergy_0K_au"), "missing column\\(s\\) 'InternalEnergy_0K_au'"),
    (lambda r: r.update(Elements="['C','Q']"), "row 0 \\(dsgdb9nsd_000001.xyz\\): column 'Elements': unknown element 'Q'"),
    (lambda r: r.update(N_atoms=r["N_atoms"] + 1), "row 0 .*shapes disagree"),
    (lambda r: r.update(XYZ_Ang="[[0.,1.,0.],[1.,2.]]"), "row 0 .*column 'XYZ_Ang' has 5 numbers in 2 rows"),
    (lambda r: r.update(XYZ_Ang=r["XYZ_Ang"].replace("[[0.,1.,0.]", "[[nan,1.,0.]")), "row 0 .*'XYZ_Ang' holds a non-finite"),
    (lambda r: r.update(Mulliken_pop="[0.1,abc]"), "row 0 .*column 'Mulliken_pop' is not a list of numbers"),
    (lambda r: r.update(InternalEnergy_0K_au=float("inf")), "row 0 .*column 'InternalEnergy_0K_au' is inf"),
    (lambda r: r.update(Dipole_debye="x"), "row 0 .*column 'Dipole_debye' is not a number"),
])
def test_bad_rows(tmp_path, edit, message):
    rows = native.qm9_rows(5)
    edit(rows[0])
    cols = native.QM9_HEADER.split(",")
    path = tmp_path / "qm9_part1.csv"
    with open(path, "w", newline="") as fh:
        present = [c for c in cols if c in rows[0]]
        fh.write(",".join(present) + "\n")
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for r in rows:
            w.writerow([r[c] for c in present])
    with pytest.raises(DataError, match=message) as err:
        convert_qm9(path, tmp_path / "x.lmdb")
    assert str(path) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qm9_part1.csv"]


def test_empty_sources(tmp_path):
    p = tmp_path / "qm9_part1.csv"
    p.write_text("")
    with pytest.raises(DataError, match="empty file"):
        convert_qm9(p, tmp_path / "x.lmdb")
    p.write_text(native.QM9_HEADER + "\n")
    with pytest.raises(DataError, match="holds no structures"):
        convert_qm9(p, tmp_path / "x.lmdb")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(DataError, match="holds no qm9_part"):
        convert_qm9(tmp_path / "empty_folder", tmp_path / "x.lmdb")
    with pytest.raises(FileNotFoundError, match="no such"):
        convert_qm9(tmp_path / "missing", tmp_path / "x.lmdb")


@needs_qm9pack
def test_real_qm9pack_slice(tmp_path):
    """--limit 200 of the installed package's data, checked against the CSV itself."""
    folder = qm9pack_data_dir()
    assert "qm9pack" not in sys.modules  # located, never imported
    ds = LmdbDataset(convert_qm9("qm9pack", tmp_path / "q.lmdb", limit=200), dtype=torch.float64, return_ids=True)
    assert "qm9pack" not in sys.modules
    assert len(ds) == 200 and ds.metadata["qm9pack_version"]
    # methane, the first molecule: read straight from the CSV
    with open(folder / "qm9_part1.csv", newline="") as fh:
        rows = csv.DictReader(fh)
        first = next(rows)
        water = next(r for r in rows if r["SMILES"] == "O")
    d = ds[0]
    assert d.id == "dsgdb9nsd_000001" and first["XYZ_file"] == "dsgdb9nsd_000001.xyz"
    assert d.z.tolist() == [6, 1, 1, 1, 1]
    assert d.energy.item() == pytest.approx(float(first["InternalEnergy_0K_au"]) * native.HARTREE_IN_EV, rel=1e-7)
    assert d.energy.item() == pytest.approx(-40.47893 * 27.211386, rel=1e-7)  # U0(CH4) = -40.47893 Ha
    assert d.pos[0].tolist() == pytest.approx([-0.0126981359, 1.0858041578, 0.0080009958], abs=1e-12)
    assert d.charges.tolist() == pytest.approx([-0.535689, 0.133921, 0.133922, 0.133923, 0.133923], abs=1e-12)
    assert d.dipole.item() == 0.0
    w = ds[2]
    assert w.id == water["XYZ_file"][:-4] and w.z.tolist() == [8, 1, 1]
    assert w.dipole.item() == pytest.approx(float(water["Dipole_debye"]) * native.DEBYE_IN_E_ANGSTROM, rel=1e-7)
    assert ds.metadata["splits"]["sizes"] == {"train": 168, "val": 15, "test": 17}
    assert [f["name"] for f in ds.metadata["source"]["files"]] == ["qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"]


@needs_qm9pack
def test_locating_qm9pack_does_not_import_it():
    code = ("import sys; from phizoo.data.qm9 import qm9_files; fs = qm9_files(None); "
            "assert 'qm9pack' not in sys.modules, 'imported'; print(len(fs))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
