"""``phizoo eval`` on the Coulomb head's charges and dipoles: metrics recomputed by hand from the
model's own predictions, parity plots written (and skipped where the model or the data has none).

Two tiny LMDB stores written by phizoo's own converters: QM9-like molecules (ASE geometries, H/C/N/O)
with made-up neutral charges and the vector dipole Σ q_i r_i of those charges (generic
``phizoo.data.convert``), and a QM9-format CSV (Mulliken charges, |μ| only) through ``convert_qm9``.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase.build import molecule

import phizoo
from phizoo.cli.main import main
from phizoo.eval import evaluate, leaderboard, markdown_table
from phizoo.eval import plots as eval_plots
from phizoo.eval.metrics import charge_training, pearson_r
from phizoo.pretrained import save_checkpoint
from phizoo.train.data import open_dataset, split_indices
from tests.data import native

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOLECULES = ["H2O", "NH3", "CH4", "CH3OH", "HCN", "H2CO", "C2H4", "CH3CN", "C2H6", "CH3CH2OH", "HCOOH", "C2H2"]
CHI = {1: 2.20, 6: 2.55, 7: 3.04, 8: 3.44}  # Pauling electronegativities: charges with a chemical pattern
N_TRAIN = 4


def qm9_like(name: str, rng) -> dict:
    """z, pos (Å), neutral charges (e) and their dipole Σ q_i r_i (e·Å) of an ASE molecule."""
    atoms = molecule(name)
    z = atoms.numbers
    q = -0.4 * np.array([CHI[int(a)] for a in z]) + 0.05 * rng.normal(size=len(z))
    q -= q.mean()
    energy = sum(native.TRUE_REFS[int(a)] for a in z) + 0.01 * float(rng.normal())
    return {"z": z, "pos": atoms.positions.astype(np.float64), "charges": q,
            "dipole": (q[:, None] * atoms.positions).sum(0), "energy": energy}


@pytest.fixture(scope="module")
def vector_db(tmp_path_factory):
    """QM9-like molecules with vector dipoles; splits: train = the first four, test = the rest."""
    from phizoo.data.convert import Source, Structure, convert

    rng = np.random.default_rng(0)
    mols = [qm9_like(n, rng) for n in MOLECULES]
    d = tmp_path_factory.mktemp("vector")
    marker = d / "molecules.src"
    marker.write_text("\n".join(MOLECULES) + "\n")

    class Molecules(Source):
        dataset = "qm9like"

        def files(self):
            return [marker]

        def __len__(self):
            return len(mols)

        def structure(self, i):
            return Structure(id=f"{MOLECULES[i]}", **mols[i])

        def splits(self, n, seed):
            return {"train": np.arange(N_TRAIN), "test": np.arange(N_TRAIN, n)}, {"policy": "fixed (test fixture)"}

        def metadata(self):
            return {"name": "qm9like", "level_of_theory": "made-up charges", "target": "E, charges, dipole"}

    return convert(Molecules(), d / "qm9like.lmdb", progress=False)


@pytest.fixture(scope="module")
def qm9_db(tmp_path_factory):
    """A QM9-format store: Mulliken charges, dipole magnitudes |μ| ([1] per molecule)."""
    from phizoo.data import convert_qm9

    d = tmp_path_factory.mktemp("qm9")
    csv = native.qm9_csv(d / "qm9_part1.csv", native.qm9_rows(20, seed=1))
    return convert_qm9(csv, d / "qm9.lmdb", train_size=8, val_size=2, test_size=10)


def coulomb_model(seed: int = 0):
    torch.manual_seed(seed)
    model = phizoo.build_model("painn", preset="test", dtype=torch.float64, coulomb=True)
    with torch.no_grad():  # away from the initial near-zero charges
        for p in model.coulomb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Saved checkpoints: Coulomb head with a supervised / latent / no training section, and
    base and Φ models without the head."""
    d = tmp_path_factory.mktemp("ckpt")
    model = coulomb_model()
    save_checkpoint(model, d / "supervised", hyperparameters={"loss": {"energy": 1.0, "charges": 10.0, "dipole": 1.0}})
    save_checkpoint(model, d / "latent", hyperparameters={"loss": {"energy": 1.0, "charges": 0.0, "dipole": 0.0}})
    save_checkpoint(model, d / "nocard")
    torch.manual_seed(0)
    save_checkpoint(phizoo.build_model("painn", preset="test", dtype=torch.float64), d / "base")
    torch.manual_seed(0)
    save_checkpoint(phizoo.build_model("painn", phi=True, preset="test", dtype=torch.float64), d / "phi")
    return d


def by_hand(model, path, split="test"):
    """The model's charges and dipoles, one molecule at a time, and the stored references (float64)."""
    ds = open_dataset(path)
    qp, qr, zs, mp, mr = [], [], [], [], []
    for i in split_indices(ds, split):
        with torch.no_grad():
            out = model(ds[i], compute_forces=False)
        rec = ds.get_record(i)
        qp.append(out["coulomb_charges"].double().numpy())
        qr.append(np.asarray(rec["charges"], dtype=np.float64))
        zs.append(np.asarray(rec["z"]))
        mp.append(out["dipole"].double().numpy().reshape(3))
        mr.append(np.asarray(rec["dipole"], dtype=np.float64))
    return np.concatenate(qp), np.concatenate(qr), np.concatenate(zs), np.stack(mp), np.stack(mr)


@pytest.fixture
def titles(monkeypatch):
    """PNG file name -> the title its figure was saved with (``phizoo.eval.plots._save`` recorded)."""
    seen: dict[str, str] = {}
    real_save = eval_plots._save

    def recording_save(fig, path, title):
        seen[Path(path).name] = title
        return real_save(fig, path, title)

    monkeypatch.setattr(eval_plots, "_save", recording_save)
    return seen


def png_shape(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    return matplotlib.image.imread(path).shape


def test_fixture_dipoles_are_those_of_the_charges(vector_db):
    ds = open_dataset(vector_db)
    for i in range(len(ds)):
        rec = ds.get_record(i)
        np.testing.assert_allclose(rec["dipole"], (rec["charges"][:, None] * rec["pos"]).sum(0), atol=1e-12)
        assert abs(rec["charges"].sum()) < 1e-12


def test_evaluate_charge_and_dipole_metrics_match_numpy(vector_db):
    model = coulomb_model()
    ds = open_dataset(vector_db)
    idx = split_indices(ds, "test")
    metrics, pred = evaluate(model, ds, idx, batch_size=3, return_predictions=True)
    qp, qr, z, mp, mr = by_hand(model, vector_db)
    np.testing.assert_allclose(pred["charges_pred"], qp, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pred["charges_true"], qr, rtol=1e-6, atol=1e-7)
    assert pred["charges_z"].tolist() == z.tolist() and pred["dipole_true"].shape == (len(idx), 3)
    assert metrics["n_charges"] == z.size and metrics["n_dipoles"] == len(idx) == len(MOLECULES) - N_TRAIN
    dq = qp - qr
    assert np.abs(dq).mean() > 0.01  # an untrained head: the errors are not trivially zero
    assert metrics["charges_mae_e"] == pytest.approx(np.abs(dq).mean(), rel=1e-6)
    assert metrics["charges_rmse_e"] == pytest.approx(np.sqrt((dq ** 2).mean()), rel=1e-6)
    assert metrics["charges_pearson_r"] == pytest.approx(np.corrcoef(qp, qr)[0, 1], rel=1e-6, abs=1e-7)
    per = metrics["charges_per_element"]
    assert list(per) == ["H", "C", "N", "O"]
    for sym, e in (("H", 1), ("C", 6), ("N", 7), ("O", 8)):
        m = z == e
        assert per[sym]["n"] == int(m.sum())
        assert per[sym]["mae_e"] == pytest.approx(np.abs(dq[m]).mean(), rel=1e-6)
        assert per[sym]["mean_ref_e"] == pytest.approx(qr[m].mean(), rel=1e-6)
        assert per[sym]["pearson_r"] == pytest.approx(np.corrcoef(qp[m], qr[m])[0, 1], rel=1e-5, abs=1e-6)
    dmu = mp - mr
    assert metrics["dipole_reference"] == "vector"
    assert metrics["dipole_mae_eA"] == pytest.approx(np.abs(dmu).mean(), rel=1e-6)
    assert metrics["dipole_rmse_eA"] == pytest.approx(np.sqrt((dmu ** 2).mean()), rel=1e-6)
    dnorm = np.linalg.norm(mp, axis=1) - np.linalg.norm(mr, axis=1)
    assert metrics["dipole_norm_mae_eA"] == pytest.approx(np.abs(dnorm).mean(), rel=1e-6)
    # the training-log names are not repeated under other definitions
    assert "charges_mae" not in metrics and "dipole_mae" not in metrics
    # the same numbers without keeping the predictions (as the leaderboard calls it)
    plain = evaluate(model, ds, idx, batch_size=5)
    assert plain["charges_mae_e"] == pytest.approx(metrics["charges_mae_e"], rel=1e-12)
    assert plain["charges_pearson_r"] == pytest.approx(metrics["charges_pearson_r"], rel=1e-12)


def test_pearson_r_is_undefined_for_constant_or_single_values():
    assert pearson_r(np.array([0.1]), np.array([0.2])) is None
    assert pearson_r(np.array([0.1, 0.3]), np.array([0.2, 0.2])) is None
    a, b = np.array([0.1, -0.4, 0.3]), np.array([0.2, -0.1, 0.5])
    assert pearson_r(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-14)


def test_eval_cli_writes_charge_and_dipole_parity_plots(vector_db, checkpoints, tmp_path, capsys, titles):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoints / "supervised"), "--data", str(vector_db), "--split", "test",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Coulomb head (supervised charges)" in printed and "charge MAE" in printed and "|μ| MAE" in printed
    assert "charge r per element   H " in printed and "charges parity plot:" in printed
    report = json.loads((out / "supervised-test.json").read_text())
    assert report["charges_training"] == "supervised"
    model = phizoo.load_checkpoint(checkpoints / "supervised")
    qp, qr, z, mp, mr = by_hand(model, vector_db)
    assert report["charges_mae_e"] == pytest.approx(np.abs(qp - qr).mean(), rel=1e-6)
    assert report["charges_pearson_r"] == pytest.approx(np.corrcoef(qp, qr)[0, 1], rel=1e-6, abs=1e-7)
    assert report["charges_per_element"]["C"]["pearson_r"] == pytest.approx(
        np.corrcoef(qp[z == 6], qr[z == 6])[0, 1], rel=1e-5, abs=1e-6)
    assert report["dipole_mae_eA"] == pytest.approx(np.abs(mp - mr).mean(), rel=1e-6)
    parity, charges, dipole = (out / f"supervised-test-{k}.png" for k in ("parity", "charges", "dipole"))
    h, w = png_shape(parity)[:2]
    hq, wq = png_shape(charges)[:2]
    hd, wd = png_shape(dipole)[:2]
    assert min(h, hq, hd) > 300 and wd > 1.5 * wq  # the dipole figure: components and |μ| side by side
    assert titles == {"supervised-test-parity.png": "supervised — test",
                      "supervised-test-charges.png": "supervised — test (supervised charges)",
                      "supervised-test-dipole.png": "supervised — test (supervised charges)"}


def test_eval_cli_qm9_magnitudes_and_latent_charges(qm9_db, checkpoints, tmp_path, capsys, titles):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoints / "latent"), "--data", str(qm9_db), "-o", str(out)]) == 0
    assert "Coulomb head (latent charges)" in capsys.readouterr().out
    report = json.loads((out / "latent-test.json").read_text())
    model = phizoo.load_checkpoint(checkpoints / "latent")
    qp, qr, z, mp, mr = by_hand(model, qm9_db)
    assert mr.shape == (10, 1)  # QM9 stores |μ|
    assert report["charges_training"] == "latent" and report["dipole_reference"] == "magnitude"
    assert report["charges_mae_e"] == pytest.approx(np.abs(qp - qr).mean(), rel=1e-6)
    assert report["charges_pearson_r"] == pytest.approx(np.corrcoef(qp, qr)[0, 1], rel=1e-6, abs=1e-7)
    assert report["dipole_norm_mae_eA"] == pytest.approx(np.abs(np.linalg.norm(mp, axis=1) - mr[:, 0]).mean(),
                                                         rel=1e-6)
    assert "dipole_mae_eA" not in report  # no components to compare
    assert png_shape(out / "latent-test-charges.png")[0] > 300
    hd, wd = png_shape(out / "latent-test-dipole.png")[:2]
    assert wd < 1.5 * hd  # |μ| panel alone
    assert titles["latent-test-charges.png"] == titles["latent-test-dipole.png"] == "latent — test (latent charges)"


def test_eval_cli_without_a_training_section_omits_the_word(vector_db, checkpoints, tmp_path, capsys, titles):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoints / "nocard"), "--data", str(vector_db), "-o", str(out)]) == 0
    assert "Coulomb head:" in capsys.readouterr().out
    report = json.loads((out / "nocard-test.json").read_text())
    assert "charges_training" not in report and "charges_mae_e" in report
    assert titles == {f"nocard-test-{k}.png": "nocard — test" for k in ("parity", "charges", "dipole")}


@pytest.mark.parametrize("which", ["base", "phi"])
def test_models_without_a_coulomb_head_get_no_charge_plot(which, vector_db, checkpoints, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoints / which), "--data", str(vector_db), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "energy MAE" in printed and "charge MAE" not in printed and "Coulomb head" not in printed
    assert sorted(p.name for p in out.iterdir()) == [f"{which}-test-parity.png", f"{which}-test.json"]
    report = json.loads((out / f"{which}-test.json").read_text())
    assert not [k for k in report if k.startswith(("charges", "dipole", "n_charges", "n_dipoles"))]


def test_coulomb_model_on_data_without_charges_gets_no_charge_plot(db, checkpoints, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoints / "supervised"), "--data", str(db), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "force MAE" in printed and "charge MAE" not in printed and "Coulomb head" not in printed
    assert sorted(p.name for p in out.iterdir()) == ["supervised-test-parity.png", "supervised-test.json"]
    report = json.loads((out / "supervised-test.json").read_text())
    assert "charges_training" not in report and "charges_mae_e" not in report and "n_dipoles" not in report


def test_leaderboard_has_charge_columns_only_when_a_model_has_charges(vector_db, checkpoints):
    ds = open_dataset(vector_db)
    rows = leaderboard([str(checkpoints / "base"), str(checkpoints / "supervised")], ds, split="test",
                       names=["base", "coulomb"], memory=False)
    assert "charges_mae_e" not in rows[0]
    assert rows[1]["charges_mae_e"] == pytest.approx(evaluate(phizoo.load_checkpoint(checkpoints / "supervised"),
                                                              ds, split_indices(ds, "test"))["charges_mae_e"])
    md = markdown_table(rows)
    assert "charge MAE (e)" in md and "charge r" in md and "\\|μ\\| MAE (e·Å)" in md
    assert md.splitlines()[2].count("|") == md.splitlines()[3].count("|")  # one cell per column, "–" where absent
    assert "charge" not in markdown_table(rows[:1])


def test_charge_training_reads_the_card():
    def model(card):
        return SimpleNamespace(card=card)

    loss = {"energy": 1.0, "charges": 0.0, "dipole": 0.0}
    assert charge_training(model({"hyperparameters": {"loss": {**loss, "charges": 5.0}}})) == "supervised"
    assert charge_training(model({"hyperparameters": {"loss": {**loss, "dipole": 1.0}}})) == "dipole-supervised"
    assert charge_training(model({"hyperparameters": {"loss": loss}})) == "latent"
    # fine-tuned without a charge term: the run it started from may have fitted charges
    assert charge_training(model({"hyperparameters": {"loss": loss},
                                  "dataset": {"finetuned_from": {"checkpoint": "runs/x/best"}}})) is None
    assert charge_training(model({"hyperparameters": {"loss": {"energy": 1.0}}})) is None
    assert charge_training(model({})) is None and charge_training(SimpleNamespace()) is None
