"""``phizoo data generate ag3`` / ``carbon-chains`` / ``nacl`` (GFN2-xTB). Skipped without tblite and rdkit."""
import importlib.util

import numpy as np
import pytest

from phizoo.data import DataError, LmdbDataset

HAVE_XTB = all(importlib.util.find_spec(m) is not None for m in ("tblite", "rdkit"))
pytestmark = pytest.mark.skipif(not HAVE_XTB, reason="tblite and rdkit (pip install phizoo[xtb]) not installed")


def test_ag3_identical_geometries_opposite_charges(tmp_path):
    from phizoo.generate.lr.clusters import generate_ag3

    ds = LmdbDataset(generate_ag3(tmp_path / "ag3.lmdb", 5, seed=4, progress=False))
    assert len(ds) == 10
    assert "electronic temperature 2000 K" in ds.metadata["level_of_theory"]
    split_of = {int(i): s for s in ("train", "val", "test") for i in ds.split_indices(s)}
    for g in range(5):
        plus, minus = ds.get_record(2 * g), ds.get_record(2 * g + 1)
        assert np.array_equal(plus["pos"], minus["pos"]) and plus["z"].tolist() == [47, 47, 47]
        assert (plus["total_charge"][0], minus["total_charge"][0]) == (1.0, -1.0)
        assert plus["spin"][0] == minus["spin"][0] == 1.0
        assert plus["energy"][0] - minus["energy"][0] > 5.0  # the anion is far lower
        assert plus["charges"].sum() == pytest.approx(1.0, abs=1e-6)
        assert split_of[2 * g] == split_of[2 * g + 1]
        d = np.linalg.norm(plus["pos"][:, None] - plus["pos"][None], axis=-1)[np.triu_indices(3, 1)]
        assert d.min() >= 2.4 - 1e-9
    again = LmdbDataset(generate_ag3(tmp_path / "ag3b.lmdb", 3, seed=4, progress=False))
    assert np.array_equal(again.get_record(5)["energy"], ds.get_record(5)["energy"])


def test_carbon_chains_alternate_species(tmp_path):
    from phizoo.generate.lr.clusters import generate_carbon_chains

    ds = LmdbDataset(generate_carbon_chains(tmp_path / "c.lmdb", 6, seed=0, progress=False))
    assert len(ds) == 6
    for i in range(6):
        r = ds.get_record(i)
        cation = i % 2 == 1
        assert r["meta"]["species"] == ("C10H3+" if cation else "C10H2")
        assert len(r["z"]) == (13 if cation else 12) and (r["z"] == 6).sum() == 10
        assert r["total_charge"][0] == (1.0 if cation else 0.0) and r["spin"][0] == 1.0
        assert r["charges"].sum() == pytest.approx(r["total_charge"][0], abs=1e-6)
        cc = np.linalg.norm(np.diff(r["pos"][r["z"] == 6], axis=0), axis=1)
        assert cc.max() < 1.6  # still a chain
    gen = ds.metadata["generator"]
    assert gen["references"]["C10H3+"]["charge"] == 1 and gen["noise_A"] == 0.02
    with pytest.raises(DataError, match="noise"):
        generate_carbon_chains(tmp_path / "x.lmdb", 2, noise=-1.0, progress=False)


def test_nacl_same_positions_without_one_corner_na(tmp_path):
    from phizoo.generate.lr.nacl import generate_nacl

    ds = LmdbDataset(generate_nacl(tmp_path / "nacl.lmdb", 4, seed=1, progress=False))
    assert len(ds) == 8
    ref = ds.metadata["generator"]["reference"]
    removed = ref["removed_na_index"]
    split_of = {int(i): s for s in ("train", "val", "test") for i in ds.split_indices(s)}
    for g in range(4):
        big, small = ds.get_record(2 * g), ds.get_record(2 * g + 1)
        assert (np.bincount(big["z"], minlength=18)[[11, 17]].tolist(), big["total_charge"][0]) == ([9, 8], 1.0)
        assert (np.bincount(small["z"], minlength=18)[[11, 17]].tolist(), small["total_charge"][0]) == ([8, 8], 0.0)
        assert big["z"][removed] == 11
        assert np.array_equal(np.delete(big["pos"], removed, axis=0), small["pos"])
        assert big["spin"][0] == small["spin"][0] == 1.0
        for r in (big, small):
            assert r["charges"].sum() == pytest.approx(r["total_charge"][0], abs=1e-6)
            assert np.all(r["charges"][r["z"] == 11] > 0.4) and np.all(r["charges"][r["z"] == 17] < -0.4)
        assert split_of[2 * g] == split_of[2 * g + 1]
        # atoms more than 5 Å from the removed Na: the same surroundings within 5 Å in both frames,
        # yet their GFN2-xTB forces differ (the effect a 5 Å short-range model cannot see)
        far = np.linalg.norm(np.delete(big["pos"], removed, axis=0) - big["pos"][removed], axis=1) > 5.0
        assert far.sum() >= 3
        df = np.abs(np.delete(big["forces"], removed, axis=0) - small["forces"])[far]
        assert df.max() > 0.01
    # a rock-salt fragment: every Na's nearest neighbour is a Cl (2.40 Å in the optimised cluster; 2.36 Å in NaCl gas)
    z, x = np.array(ref["z"]), np.array(ref["positions_A"])
    d = np.linalg.norm(x[:, None] - x[None], axis=-1) + np.eye(len(z)) * 99
    nearest = d.argmin(1)
    assert np.all(z[nearest[z == 11]] == 17) and 2.2 < d.min() < 3.0
    again = LmdbDataset(generate_nacl(tmp_path / "b.lmdb", 2, seed=1, progress=False))
    assert np.array_equal(again.get_record(3)["forces"], ds.get_record(3)["forces"])
    with pytest.raises(DataError, match="noise"):
        generate_nacl(tmp_path / "x.lmdb", 2, noise=2.0, progress=False)
