"""`phizoo data xtb-md`: GFN2-xTB Langevin MD written as MD22-format (sGDML) .npz files.

Checked against an independent tblite single point with hand-written unit factors; seed
reproducibility and resume are checked byte for byte. Skipped when tblite or rdkit is missing
(the optional extra `phizoo[xtb]`), except the tests that need neither.
"""
import hashlib
import json
import sys

import numpy as np
import pytest

from phizoo.data import DataError, LmdbDataset, convert_md22

from tests.data import native
from tests.optional import needs_xtb


# CODATA 2018, independent of ase.units
HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
KCAL_MOL_EV = native.KCAL_MOL_IN_EV
KEYS = {"R", "z", "E", "F", "Q", "name", "theory", "type", "r_unit", "e_unit", "md5", "xtb_md",
        "E_min", "E_max", "E_mean", "E_var", "F_min", "F_max", "F_mean", "F_var"}


def run(tmp_path, name="a.npz", **kw):
    from phizoo.generate.xtb_md import xtb_md

    opts = dict(smiles="CCO", frames=5, stride=2, equilibration=4, seed=3, progress=False)
    opts.update(kw)
    return xtb_md(tmp_path / name, **opts)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_xtb
def test_file_format_units_and_independent_singlepoint(tmp_path):
    from tblite.interface import Calculator

    path = run(tmp_path)
    d = dict(np.load(path, allow_pickle=False))
    assert set(d) == KEYS
    n, N = 5, 9
    assert d["R"].shape == (n, N, 3) and d["E"].shape == (n, 1) and d["F"].shape == (n, N, 3)
    assert d["Q"].shape == (n, N) and d["z"].tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    for k in ("R", "E", "F", "Q"):
        assert d[k].dtype == np.float64 and np.isfinite(d[k]).all()
    from importlib.metadata import version

    assert str(d["theory"]) == f"GFN2-xTB (tblite {version('tblite')})"
    assert (str(d["type"]), str(d["r_unit"]), str(d["e_unit"]), str(d["name"])) == ("d", "Ang", "kcal/mol", "C2H6O")
    # sGDML's fingerprint, re-implemented: md5 over the md5 digests of z, R, E, F
    h = hashlib.md5()
    for k in ("z", "R", "E", "F"):
        h.update(hashlib.md5(d[k].ravel()).digest())
    assert d["md5"].item() == h.hexdigest().encode()
    assert float(d["E_min"]) == d["E"].min() and float(d["F_var"]) == pytest.approx(d["F"].var())
    meta = json.loads(str(d["xtb_md"]))
    assert meta["temperature_K"] == 500.0 and meta["timestep_fs"] == 0.5 and meta["stride"] == 2
    assert meta["initial_structure"]["smiles"] == "CCO"
    # frames differ, the molecule stays in one piece and does not drift (COM velocity removed)
    assert not np.allclose(d["R"][0], d["R"][-1])
    m = np.array([12.011, 12.011, 15.999] + [1.008] * 6)
    com = (m @ d["R"]) / m.sum()
    assert np.abs(com - com[0]).max() < 1e-6
    assert np.linalg.norm(d["R"][:, 0] - d["R"][:, 1], axis=-1).max() < 1.9  # C-C bond
    assert np.abs(d["Q"].sum(axis=1)).max() < 1e-8
    # independent single points (atomic starting guess) on saved frames, converted back by hand
    for i in (0, 4):
        calc = Calculator("GFN2-xTB", d["z"], d["R"][i] / BOHR_A)
        calc.set("verbosity", 0)
        res = calc.singlepoint()
        e_h = d["E"][i, 0] * KCAL_MOL_EV / HARTREE_EV
        grad = -d["F"][i] * KCAL_MOL_EV / (HARTREE_EV / BOHR_A)
        assert e_h == pytest.approx(res.get("energy"), abs=1e-6)           # Hartree
        np.testing.assert_allclose(grad, res.get("gradient"), atol=2e-5)   # Hartree/Bohr
        np.testing.assert_allclose(d["Q"][i], res.get("charges"), atol=1e-4)
        assert np.abs(grad).max() > 1e-3  # not a trivially zero force


@needs_xtb
def test_seed_reproducible_byte_identical(tmp_path):
    a, b = run(tmp_path, "a.npz"), run(tmp_path, "b.npz")
    c = run(tmp_path, "c.npz", seed=4)
    assert sha(a) == sha(b)
    da, db, dc = (np.load(p) for p in (a, b, c))
    for k in ("R", "E", "F", "Q"):
        np.testing.assert_array_equal(da[k], db[k])
    assert not np.array_equal(da["R"], dc["R"])


@needs_xtb
@pytest.mark.parametrize("where", ["between steps", "inside a force call", "at a checkpoint"])
def test_interrupt_and_resume_gives_the_same_file(tmp_path, monkeypatch, where):
    from phizoo.generate import xtb_md as X

    opts = dict(frames=6, stride=2, equilibration=3, checkpoint_every=2)
    ref = run(tmp_path, "ref.npz", **opts)
    out = tmp_path / "b.npz"
    ckpt = X.checkpoint_path(out)
    if where == "between steps":
        def stop(step):
            if step == 8:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, "b.npz", on_step=stop, **opts)
    elif where == "inside a force call":  # after this step's thermostat noise was drawn
        calls = {"n": 0}
        original = X.XTB.__call__

        def flaky(self, pos, where=""):
            calls["n"] += 1
            if calls["n"] == 10:
                raise KeyboardInterrupt
            return original(self, pos, where)
        monkeypatch.setattr(X.XTB, "__call__", flaky)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, "b.npz", **opts)
        monkeypatch.setattr(X.XTB, "__call__", original)
    else:  # killed hard right after the frame-4 checkpoint: no interrupt handler runs
        def kill(step):
            if step == 3 + 4 * 2 + 1:
                raise SystemExit  # not KeyboardInterrupt: the periodic checkpoint is all there is
        with pytest.raises(SystemExit):
            run(tmp_path, "b.npz", on_step=kill, **opts)
    assert not out.exists() and ckpt.exists()
    with np.load(ckpt) as c:
        step, frames = int(c["step"]), len(c["R"])
    assert step > 0 and frames == max(0, step - 3) // 2
    assert run(tmp_path, "b.npz", **opts) == out
    assert sha(out) == sha(ref) and not ckpt.exists()


@needs_xtb
def test_checkpoint_of_other_settings_is_refused_and_restart_discards_it(tmp_path):
    from phizoo.generate import xtb_md as X

    def stop(step):
        if step == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, on_step=stop)
    with pytest.raises(DataError, match="different run.*temperature_K.*--restart"):
        run(tmp_path, temperature=300.0)
    ref = run(tmp_path, "ref.npz", temperature=300.0)
    assert sha(run(tmp_path, temperature=300.0, resume=False)) == sha(ref)
    assert not X.checkpoint_path(tmp_path / "a.npz").exists()
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        run(tmp_path)


@needs_xtb
def test_more_frames_on_rerun_extends_an_interrupted_run(tmp_path):
    def stop(step):
        if step == 9:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "b.npz", frames=4, on_step=stop)
    short, long_ = run(tmp_path, "s.npz", frames=4), run(tmp_path, "b.npz", frames=8)
    a, b = np.load(short), np.load(long_)
    np.testing.assert_array_equal(a["R"], b["R"][:4])
    assert len(b["R"]) == 8


@needs_xtb
def test_convert_md22_keeps_charges_and_theory(tmp_path):
    from phizoo.cli.data import describe

    path = run(tmp_path, frames=10)
    src = np.load(path)
    db = convert_md22(path, tmp_path / "x.lmdb", train_size=6)
    ds = LmdbDataset(db, dtype=__import__("torch").float64)
    meta = ds.metadata
    assert meta["level_of_theory"] == str(src["theory"]) and meta["level_of_theory"].startswith("GFN2-xTB (tblite")
    assert "MD22 format" in meta["name"] and "PBE" not in meta["name"]
    assert meta["source_units"]["charges"] == "e" and "Q" in meta["source_format"]
    for i in (0, 9):
        r = ds[i]
        np.testing.assert_array_equal(r.charges.numpy(), src["Q"][i])
        assert r.energy.item() == pytest.approx(src["E"][i, 0] * KCAL_MOL_EV, rel=1e-7)  # CODATA 2018 vs ase
        np.testing.assert_allclose(r.forces.numpy(), src["F"][i] * KCAL_MOL_EV, rtol=1e-7)
        np.testing.assert_array_equal(r.pos.numpy(), src["R"][i])
    text = describe(db)
    assert "theory      GFN2-xTB (tblite" in text and "charges" in text


@needs_xtb
def test_cli_run_and_info(tmp_path, capsys):
    from phizoo.cli.main import main

    out = tmp_path / "w.npz"
    assert main(["data", "xtb-md", "--smiles", "O", "-o", str(out), "--frames", "3", "--stride", "2",
                 "--equilibration", "2", "--seed", "1", "-q"]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "3 frames" in text and "GFN2-xTB" in text
    assert main(["data", "convert", "md22", str(out), "-o", str(tmp_path / "w.lmdb"), "--train-size", "2",
                 "-q"]) == 0
    assert main(["data", "info", str(tmp_path / "w.lmdb")]) == 0
    info = capsys.readouterr().out
    assert "GFN2-xTB" in info and "charges, energy, forces" in info
    assert main(["data", "xtb-md", "--smiles", "O", "-o", str(out), "-q"]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err


@needs_xtb
def test_bad_input(tmp_path):
    from phizoo.generate.xtb_md import from_file, molecule

    with pytest.raises(DataError, match="odd number of electrons"):
        run(tmp_path, smiles="[CH3]")
    with pytest.raises(DataError, match="cannot parse"):
        run(tmp_path, smiles="C1CC")
    with pytest.raises(DataError, match="exactly one of"):
        run(tmp_path, structure="x.xyz")
    with pytest.raises(DataError, match="unknown molecule 'benzene'"):
        molecule("benzene")
    with pytest.raises(DataError, match="out of range"):
        run(tmp_path, stride=0)
    with pytest.raises(DataError, match="no such structure file"):
        from_file(tmp_path / "missing.xyz")


@needs_xtb
def test_structure_file_input(tmp_path):
    from ase.build import molecule as ase_molecule
    from ase.io import write

    write(tmp_path / "water.xyz", ase_molecule("H2O"))
    path = run(tmp_path, smiles=None, structure=tmp_path / "water.xyz", frames=2)
    d = np.load(path)
    assert str(d["name"]) == "water" and d["z"].tolist() == [8, 1, 1]
    assert json.loads(str(d["xtb_md"]))["initial_structure"]["file"] == "water.xyz"


@needs_xtb
def test_md22_molecule_table_atom_counts():
    from phizoo.generate.xtb_md import MOLECULES, molecule

    md22 = {"Ac-Ala3-NHMe": 42, "DHA": 56, "stachyose": 87, "AT-AT": 60, "AT-AT-CG-CG": 118,
            "buckyball-catcher": 148}
    for name, count in md22.items():
        if name not in MOLECULES:
            continue
        assert MOLECULES[name].md22_atoms == count
        mol = molecule(name.lower())  # names are case-insensitive
        assert len(mol.z) == count and mol.pos.shape == (count, 3) and np.isfinite(mol.pos).all()
        d = np.linalg.norm(mol.pos[:, None] - mol.pos[None], axis=-1) + np.eye(count) * 9
        assert d.min() > 0.85, f"{name}: atoms {d.min():.2f} Å apart"
    # the assemblies: Watson-Crick hydrogen bonds as targeted, pairs 3.38 Å apart, C60 in the cleft
    from phizoo.generate.complexes import _BASES, _WATSON_CRICK, _embed, base_pair_stack

    stack = base_pair_stack(["AT", "CG"])
    off = 0
    for code in ("AT", "CG"):
        (_, z1, _, l1), (_, z2, _, l2) = _embed(_BASES[code[0]], 42), _embed(_BASES[code[1]], 42)
        for donor, dl, al, d0 in _WATSON_CRICK[code]:
            i, j = (off + l1[dl], off + len(z1) + l2[al]) if donor == code[0] else (off + len(z1) + l2[dl], off + l1[al])
            assert abs(np.linalg.norm(stack.pos[i] - stack.pos[j]) - d0) < 0.1
        off += len(z1) + len(z2)
    heavy = stack.z > 1
    first, second = stack.pos[:30][heavy[:30]], stack.pos[30:][heavy[30:]]
    normal = np.linalg.svd(first - first.mean(0))[2][2]
    assert abs((second.mean(0) - first.mean(0)) @ normal) == pytest.approx(3.38, abs=0.15)
    cage = molecule("buckyball-catcher").source
    assert all(6.3 < d < 7.5 for d in cage["c60_centre_to_corannulene_hub_A"])
    assert cage["closest_c60_catcher_contact_A"] > 3.0


def test_missing_dependency_names_the_package_and_the_extra(monkeypatch, tmp_path):
    from phizoo.generate import xtb_md as X

    monkeypatch.setitem(sys.modules, "tblite.interface", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "rdkit.Chem", None)
    with pytest.raises(X.MissingDependencyError, match=r"'tblite'.*pip install phizoo\[xtb\]"):
        X.xtb_md(tmp_path / "a.npz", smiles="CCO", frames=1)
    with pytest.raises(ImportError, match=r"'rdkit'.*pip install phizoo\[xtb\]"):
        X.from_smiles("CCO")

