"""``phizoo data generate dimers``: GFN2-xTB dimer curves. Skipped without tblite and rdkit."""

import numpy as np
import pytest

from phizoo.data import DataError, LmdbDataset
from tests.optional import needs_xtb

pytestmark = needs_xtb

K_E = 14.399645
HARTREE_EV = 27.211386245988  # CODATA 2018, independent of ase.units
BOHR_A = 0.529177210903
TWO = dict(pairs=["nh4-nh4", "cl-water"], points=6, progress=False)


def generate(path, **kw):
    from phizoo.generate.lr.dimers import generate_dimers

    return generate_dimers(path, **{"curves": 1, **TWO, **kw})


def records(path):
    ds = LmdbDataset(path)
    return [ds.get_record(i) for i in range(len(ds))]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("dimers") / "d.lmdb", curves=2, seed=1)


def test_records_fields_units_charge_spin_splits(db):
    ds = LmdbDataset(db)
    assert len(ds) == 2 * 2 * 6
    assert set(ds.fields) == {"z", "pos", "energy", "forces", "charges", "dipole", "total_charge", "spin"}
    meta = ds.metadata
    from importlib.metadata import version

    assert meta["level_of_theory"] == f"GFN2-xTB (tblite {version('tblite')})"
    assert meta["units"]["energy"] == "eV" and meta["units"]["dipole"] == "e*angstrom"
    assert meta["generator"]["pairs"] == ["nh4-nh4", "cl-water"] and meta["generator"]["curves"] == 2
    # curve-major order; both curves of a pair... each curve entirely in one split
    where = {}
    for s in ("train", "val", "test"):
        for i in ds.split_indices(s):
            r = ds.get_record(int(i))["meta"]
            where.setdefault((r["pair"], r["curve"]), set()).add(s)
    assert len(where) == 4 and all(len(v) == 1 for v in where.values())
    for i in range(len(ds)):
        r = ds.get_record(i)
        m = r["meta"]
        assert (m["curve"], m["pair"], m["point"]) == (i // 12, TWO["pairs"][(i // 6) % 2], i % 6)
        Q = 2.0 if m["pair"] == "nh4-nh4" else -1.0
        assert r["total_charge"][0] == Q and r["spin"][0] == 1.0
        assert r["charges"].sum() == pytest.approx(Q, abs=1e-6)
        assert r["dipole"].shape == (3,) and r["forces"].shape == (len(r["z"]), 3)
        nA = m["atoms_in_A"]
        d = np.linalg.norm(r["pos"][:nA, None] - r["pos"][None, nA:], axis=-1).min()
        assert d == pytest.approx(m["min_distance_A"], abs=1e-9)
    last = [ds.get_record(i)["meta"]["min_distance_A"] for i in range(5, len(ds), 6)]
    assert np.allclose(last, 15.0)
    first = [ds.get_record(i)["meta"]["min_distance_A"] for i in range(0, len(ds), 6)]
    assert all(1.3 < d < 3.0 for d in first)


def test_independent_singlepoint_with_hand_converted_units(db):
    from tblite.interface import Calculator

    r = LmdbDataset(db).get_record(7)  # cl-water, curve 0, point 1
    calc = Calculator("GFN2-xTB", r["z"].astype(int), r["pos"] / BOHR_A, charge=float(r["total_charge"][0]))
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    # rel 2e-8: ase.units (CODATA 2014) and CODATA 2018 differ by 8e-9 in the Hartree
    assert r["energy"][0] == pytest.approx(res.get("energy") * HARTREE_EV, rel=2e-8)
    assert np.allclose(r["forces"], -res.get("gradient") * HARTREE_EV / BOHR_A, rtol=1e-7, atol=1e-7)
    assert np.allclose(r["charges"], res.get("charges"), atol=1e-6)
    centre = r["pos"].mean(0)
    mu = res.get("dipole") * BOHR_A - r["total_charge"][0] * centre
    assert np.allclose(r["dipole"], mu, atol=1e-5)


def test_ion_ion_curve_tends_to_bare_coulomb(db):
    ds = LmdbDataset(db)
    far = [ds.get_record(i)["meta"] for i in range(len(ds))
           if ds.get_record(i)["meta"]["pair"] == "nh4-nh4" and ds.get_record(i)["meta"]["min_distance_A"] > 9]
    assert far
    for m in far:  # NH4+ ... NH4+: +k_e/r between the nitrogen-centred charges (centre distance)
        coulomb = K_E / m["centre_distance_A"]
        assert m["interaction_energy_eV"] == pytest.approx(coulomb, rel=0.03)
        assert m["xtb_charge_on_A"] == pytest.approx(1.0, abs=1e-3)
    # ion-molecule: the interaction decays to zero (no net charge on water)
    cl = [ds.get_record(i)["meta"] for i in range(len(ds)) if ds.get_record(i)["meta"]["pair"] == "cl-water"]
    at15 = [m for m in cl if m["point"] == 5]
    assert all(abs(m["interaction_energy_eV"]) < 0.03 for m in at15)
    assert all(m["xtb_charge_on_A"] == pytest.approx(-1.0, abs=1e-3) for m in at15)


def test_more_curves_extend_and_resume_is_identical(tmp_path, db):
    one = records(generate(tmp_path / "one.lmdb", curves=1, seed=1))
    two = records(db)
    for a, b in zip(one, two[:len(one)]):
        assert a["id"] == b["id"] and a["meta"] == b["meta"]
        for k in ("pos", "energy", "forces", "charges", "dipole"):
            assert np.array_equal(a[k], b[k]), k

    def stop(i):
        if i == 5:
            raise KeyboardInterrupt

    dest = tmp_path / "r.lmdb"
    with pytest.raises(KeyboardInterrupt):
        generate(dest, curves=2, seed=1, on_record=stop)
    assert not dest.exists()
    for a, b in zip(records(generate(dest, curves=2, seed=1)), two):
        assert a["meta"] == b["meta"] and np.array_equal(a["energy"], b["energy"]) and np.array_equal(a["pos"], b["pos"])
    other = records(generate(tmp_path / "s.lmdb", curves=1, seed=2))
    assert not np.array_equal(other[0]["pos"], one[0]["pos"])


@pytest.mark.parametrize("kw, message", [
    (dict(pairs=["na-water"]), "unknown dimer pair"), (dict(points=1), "points"), (dict(curves=0), "curves"),
    (dict(contact=5.0), "contact"), (dict(max_distance=1.0), "max_distance"), (dict(split_by="x"), "split_by"),
    (dict(seed=-3), "seed"), (dict(pairs=["cl-water", "cl-water"]), "twice")])
def test_bad_options_are_one_line_errors(tmp_path, kw, message):
    with pytest.raises(DataError, match=message) as err:
        generate(tmp_path / "x.lmdb", **kw)
    assert "\n" not in str(err.value) and not (tmp_path / "x.lmdb").exists()


def test_frame_split_option(tmp_path):
    ds = LmdbDataset(generate(tmp_path / "f.lmdb", split_by="frame", pairs=["water-water"], points=10))
    assert ds.metadata["splits"]["sizes"] == {"train": 8, "val": 1, "test": 1}
    assert "all frames" in ds.metadata["splits"]["policy"]
