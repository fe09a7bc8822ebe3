"""``phizoo data convert ase``: files written by ASE (extxyz, traj, db) become the same
pickle-free LMDB as the other converters: values and units, cell/pbc/stress, charge/spin,
splits and train-only references, atomic + resumable, errors naming the file and frame."""
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from phizoo.data import DataError, LmdbDataset
from phizoo.data.ase_convert import ASESource, convert_ase
from phizoo.data.convert import convert


def frames(n=12, periodic=False, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if periodic:
            a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
        else:
            a = molecule(["H2O", "CH4", "CH3CH2OH"][k % 3])
        a.rattle(0.02, seed=k)
        e = -10.0 * len(a) + rng.normal()
        f = rng.normal(size=(len(a), 3))
        res = {"energy": e, "forces": f}
        if periodic:
            res["stress"] = rng.normal(size=6) * 0.01
        a.calc = SinglePointCalculator(a, **res)
        a.info["charge"] = [0, 1, -1][k % 3] if not periodic else 0
        a.info["spin"] = 1 + (int(a.numbers.sum()) - a.info["charge"]) % 2
        a.info["REF_energy"] = 2 * e
        out.append(a)
    return out


@pytest.mark.parametrize("fmt", ["extxyz", "traj", "db"])
def test_values_units_and_fields(tmp_path, fmt):
    src = frames(periodic=(fmt == "traj"))
    path = tmp_path / f"data.{fmt}"
    keys = {}
    if fmt == "db":  # ASE databases reserve "charge": store the labels as key-value pairs under other names
        from ase.db import connect
        with connect(path) as con:
            for a in src:
                con.write(a, total_q=a.info["charge"], mult=a.info["spin"])
        keys = {"total_charge": "total_q", "spin": "mult"}
    else:
        ase.io.write(path, src, format=fmt)
        src = ase.io.read(path, index=":", format=fmt)  # what the file holds (extxyz rounds)
    db = convert_ase([path], tmp_path / "out.lmdb", energy_unit="kcal/mol", length_unit="Bohr", keys=keys)
    ds = LmdbDataset(db, return_ids=True)
    kcal, bohr = units.kcal / units.mol, units.Bohr
    assert len(ds) == len(src) and set(ds.split_names) >= {"train", "val", "test"}
    for i, a in enumerate(src):
        d, rec = ds[i], ds.get_record(i)
        np.testing.assert_allclose(rec["pos"], a.positions * bohr)
        assert np.isclose(rec["energy"][0], a.get_potential_energy() * kcal, rtol=1e-12)
        np.testing.assert_allclose(rec["forces"], a.get_forces() * kcal / bohr, rtol=1e-12)
        assert rec["total_charge"][0] == a.info["charge"] and rec["spin"][0] == a.info["spin"]
        if fmt == "traj":
            from ase.stress import voigt_6_to_full_3x3_stress
            np.testing.assert_allclose(rec["stress"], voigt_6_to_full_3x3_stress(a.get_stress()) * kcal / bohr ** 3)
            assert d.cell.shape == (1, 3, 3) and d.pbc.tolist() == [[True, True, True]]
            np.testing.assert_allclose(d.cell[0].numpy(), np.asarray(a.cell) * bohr)
    meta = ds.metadata
    assert meta["source_units"] == {"energy": "kcal/mol", "length": "Bohr"}
    assert meta["element_references"]["fitted_on"] == "train"
    assert meta["units"]["stress"] == "eV/angstrom^3"


def test_keys_are_selectable_and_missing_keys_are_named(tmp_path):
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames(), format="extxyz")
    ds = LmdbDataset(convert_ase(path, tmp_path / "ref.lmdb", keys={"energy": "REF_energy"}))
    assert np.isclose(ds.get_record(0)["energy"][0], 2 * frames()[0].get_potential_energy())
    with pytest.raises(DataError, match=r"data.extxyz: frame 0: no energy under key 'DFT_E'.*--energy-key"):
        ASESource(path, keys={"energy": "DFT_E"}).structure(0)
    bad = frames()
    del bad[5].info["charge"]
    ase.io.write(path, bad, format="extxyz")
    with pytest.raises(DataError, match=r"data.extxyz: frame 5: no total_charge under key 'charge'"):
        convert_ase(path, tmp_path / "bad.lmdb")
    assert not (tmp_path / "bad.lmdb").exists()


def test_bad_frames_are_named(tmp_path):
    path = tmp_path / "x.extxyz"
    bad = frames()
    bad[4].info["spin"] = 1 + (bad[4].info["spin"] % 2)  # wrong parity
    ase.io.write(path, bad, format="extxyz")
    with pytest.raises(DataError, match=r"x.extxyz: frame 4: total charge .* electrons .* cannot have spin"):
        convert_ase(path, tmp_path / "o.lmdb")
    dup = frames(3)
    dup[2] = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]])
    dup[2].calc = SinglePointCalculator(dup[2], energy=-1.0, forces=np.zeros((2, 3)))
    dup[2].info.update(charge=0, spin=1)
    ase.io.write(path, dup, format="extxyz")
    with pytest.raises(DataError, match=r"x.extxyz: frame 2: atoms 0 and 1 are .* apart"):
        convert_ase(path, tmp_path / "o.lmdb")
    flat = frames(2, periodic=True)
    flat[1].set_cell([[5.0, 0, 0], [0, 5.0, 0], [5.0, 5.0, 0]], scale_atoms=False)
    ase.io.write(path, flat, format="extxyz")
    with pytest.raises(DataError, match=r"x.extxyz: frame 1: singular cell"):
        convert_ase(path, tmp_path / "o.lmdb")
    path.write_text("this is not a structure file\n")
    with pytest.raises(DataError, match="x.extxyz: ase.io.read cannot read it"):
        convert_ase(path, tmp_path / "o.lmdb")


def test_interrupted_conversion_resumes(tmp_path):
    path = tmp_path / "d.extxyz"
    ase.io.write(path, frames(30), format="extxyz")
    dest = tmp_path / "d.lmdb"

    def stop(i):
        if i == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(ASESource(path), dest, on_record=stop, progress=False)
    assert not dest.exists()
    seen = []
    convert(ASESource(path), dest, on_record=seen.append, progress=False)
    assert seen[0] == 17
    ref = LmdbDataset(convert_ase(path, tmp_path / "fresh.lmdb"))
    got = LmdbDataset(dest)
    for i in range(30):
        assert np.array_equal(ref.get_record(i)["pos"], got.get_record(i)["pos"])


def test_cli_multiple_files(tmp_path):
    a, b = tmp_path / "a.extxyz", tmp_path / "b.traj"
    ase.io.write(a, frames(6), format="extxyz")
    ase.io.write(b, frames(6, seed=1), format="traj")
    out = tmp_path / "ab.lmdb"
    r = subprocess.run([sys.executable, "-m", "phizoo.cli.main", "data", "convert", "ase", str(a), str(b), "-o",
                        str(out), "-q", "--theory", "synthetic", "--train-size", "8", "--val-size", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ds = LmdbDataset(out, return_ids=True)
    assert len(ds) == 12 and ds[7].id == "b.traj:1" and len(ds.split_indices("train")) == 8
    assert ds.metadata["level_of_theory"] == "synthetic"
