"""Hostile runs: divergence, bad configs and options, unknown elements, unphysical or empty input."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch_geometric.data import Batch, Data

import phizoo
from phizoo.models.potential import InputError
from phizoo.pretrained import save_checkpoint
from tests.hostile.conftest import assert_clean_error, cli, small_model, synthetic_db

CONFIG = """model: {name: painn, preset: test, phi: false}
epochs: 2
batch_size: 8
val_batch_size: 16
optimizer: {lr: 1.0e-3}
loss: {energy: 1.0, forces: 1.0}
monitor: val_energy_mae
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return synthetic_db(tmp_path_factory.mktemp("runs") / "syn.lmdb", n=40)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG)
    return path


# ------------------------------------------------------------------ divergence

@pytest.mark.parametrize("extra", [["--lr", "1e4", "--set", "optimizer.grad_clip=0"], ["--lr", "1e30"]],
                         ids=["lr-1e4-no-clip", "lr-1e30"])
def test_divergence_stops_with_an_error_and_writes_no_nan_checkpoint(tmp_path, capsys, db, config, extra):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", "--config", config, "--data", db, "-o", out, "--no-progress", *extra)
    line = assert_clean_error(code, err, "training diverged", "is nan" if "1e30" not in extra else "diverged")
    assert "Lower optimizer.lr" in line
    for name in ("best.json", "last.json"):
        if (out / name).exists():  # only checkpoints of finite epochs may exist
            card = json.loads((out / name).read_text())
            assert card["training"]["best_epoch"] >= 1
            model = phizoo.load_model("painn", phi=False, pretrained=str(out / name))
            assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_divergence_after_a_good_epoch_keeps_that_epoch(tmp_path, db):
    from phizoo.train import Trainer
    from phizoo.train.data import named_splits, open_dataset
    from phizoo.train.state import STATE_FILE
    from phizoo.train.trainer import TrainingDiverged

    ds = open_dataset(db)
    cfg = {"model": {"name": "painn", "preset": "test"}, "epochs": 3, "batch_size": 8, "progress": False,
           "monitor": "val_energy_mae"}

    def poison(trainer):  # after the first epoch, the weights blow up
        if trainer.epoch == 1 and trainer.batch_in_epoch == 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    tr = Trainer(small_model(), ds, named_splits(ds, {"train": "train", "val": "val", "test": "test"}), cfg, output_dir=tmp_path, callbacks=[poison], verbose=False)
    with pytest.raises(TrainingDiverged, match=r"best \(epoch 1\) and the trainer state .* are kept"):
        tr.fit()
    card = json.loads((tmp_path / "best.json").read_text())
    assert card["training"]["best_epoch"] == 1
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["epoch"] == 1 and all(bool(torch.isfinite(v).all()) for v in state["model"].values()
                                       if v.is_floating_point())


# ------------------------------------------------------------------ configs

@pytest.mark.parametrize("text, needles", [
    ("model: {name: painn, preset: test, phi: 'no'}", ["cfg.yaml", "'model.phi' must be true or false", "'no'"]),
    ("model: {name: painn, preset: test}\nbatch_size: 2.7", ["'batch_size' must be an integer", "2.7"]),
    ("model: {name: painn, preset: test, phi: true, phi_options: {mu_typo: 1}}",
     ["unknown training config key 'model.phi_options.mu_typo'", "known:"]),
    ("model: {name: painn, preset: test, overrides: {hidden_channel: 8}}",
     ["unknown training config key 'model.overrides.hidden_channel'"]),
    ("model: {name: painn, preset: test, overrides: {num_layers: 2.5}}", ["'model.overrides.num_layers' must be an integer"]),
    ("model: {name: painn, preset: test}\noptimizer: {lr: fast}", ["'optimizer.lr' must be a finite number"]),
    ("model: {name: painn, preset: test}\nmonitor: val_energy_mea", ["'monitor' is 'val_energy_mea'"]),
    ("model: {name: painn, preset: test}\nepocs: 3", ["unknown training config key 'epocs'"]),
    ("model: {name: painn, preset: test\nepochs: 3", ["cfg.yaml: not valid YAML at line"]),
    ("model: [painn]", ["'model' must be a mapping"]),
    ("- just\n- a list", ["must be a YAML mapping"]),
    ("model: {name: schnet}", ["unknown model 'schnet'"]),
    ("model: {name: painn, preset: huge}", ["'model.preset' is 'huge'"]),
], ids=["phi-no", "batch-2.7", "phi-option-typo", "override-typo", "override-type", "lr-text", "monitor-typo",
        "key-typo", "yaml-syntax", "model-list", "not-mapping", "unknown-model", "unknown-preset"])
def test_bad_configs_are_one_line_errors(tmp_path, capsys, db, text, needles):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    code, _, err = cli(capsys, "train", "--config", path, "--data", db, "-o", tmp_path / "run")
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, needles", [
    (["--set", "optimizer.lr=[1"], ["override 'optimizer.lr=[1'", "not valid YAML"]),
    (["--set", "batch_size"], ["must look like key.sub=value"]),
    (["--batch-size", "0"], ["'batch_size' must be an integer >= 1"]),
    (["--epochs", "-1"], ["'epochs' must be an integer >= 0"]),
    (["--set", "model.phi_options.nonsense=1", "--set", "model.phi=true"], ["'model.phi_options.nonsense'"]),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], ["--device cuda"]),
    (["--device", "tpu"], ["--device 'tpu'"]),
    (["--config", "missing.yaml"], ["missing.yaml: cannot read the training config"]),
], ids=["set-yaml", "set-no-value", "batch-0", "epochs-negative", "set-phi-typo", "cuda", "tpu", "no-config"])
def test_bad_options_are_one_line_errors(tmp_path, capsys, db, config, args, needles):
    argv = ["train", "--config", config, "--data", db, "-o", tmp_path / "run", *args]
    code, _, err = cli(capsys, *argv)
    assert_clean_error(code, err, *needles)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path, capsys, db, config):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = cli(capsys, "train", "--config", config, "--data", db, "-o", locked / "run")
    assert_clean_error(code, err, "locked/run")


def test_output_that_is_a_file(tmp_path, capsys, db, config):
    (tmp_path / "run").write_text("not a folder")
    code, _, err = cli(capsys, "train", "--config", config, "--data", db, "-o", tmp_path / "run")
    assert_clean_error(code, err, "run: is a file")
    code, _, err = cli(capsys, "train", "--config", config, "--data", db, "-o", tmp_path / "run" / "sub")
    assert_clean_error(code, err, "run/sub: cannot write there")  # below a file: unwritable for root too
    code, _, err = cli(capsys, "eval", tmp_path / "none" / "best", "--data", db, "--batch-size", "0")
    assert_clean_error(code, err, "--batch-size must be at least 1")
    save_checkpoint(small_model(), tmp_path / "best")
    code, _, err = cli(capsys, "eval", tmp_path / "best", "--data", db, "-o", tmp_path / "run" / "eval")
    assert_clean_error(code, err, "--output", "run/eval: cannot write there")  # refused before evaluating


# ------------------------------------------------------------------ evaluation and prediction

def test_eval_refuses_elements_without_reference(tmp_path, capsys):
    db = synthetic_db(tmp_path / "cl.lmdb", n=30, elements=(1, 6, 17))  # chlorine: no reference in the model
    save_checkpoint(small_model(), tmp_path / "best")
    code, _, err = cli(capsys, "eval", tmp_path / "best", "--data", db, "-o", tmp_path, "--no-plot")
    assert_clean_error(code, err, "Cl (Z=17)", "no reference energy", "H, C, N, O")
    code, _, err = cli(capsys, "leaderboard", "--data", db, "--models", tmp_path / "best", "-o", tmp_path / "lb",
                       "--no-memory")
    assert_clean_error(code, err, "Cl (Z=17)")


def _mol(pos):
    return Data(z=torch.tensor([8, 1, 1]), pos=torch.tensor(pos, dtype=torch.float64))


@pytest.mark.parametrize("phi", [False, True])
@pytest.mark.parametrize("case, pos, needle", [
    ("coincident", [[0.0, 0, 0], [0.0, 0, 0], [0.9, 0.3, 0]], "atoms 0 and 1 are 0 Å apart"),
    ("nearly", [[0.0, 0, 0], [0.96, 0, 0], [0.96, 0.05, 0]], "atoms 1 and 2 are 0.05 Å apart"),
])
def test_prediction_refuses_coincident_atoms(phi, case, pos, needle):
    model = small_model(phi=phi)
    good = _mol([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(InputError, match=needle):
        model(Batch.from_data_list([_mol(pos)]))
    with pytest.raises(InputError, match="structure 1 of the batch: " + needle):
        model(Batch.from_data_list([good, _mol(pos)]))
    out = model(Batch.from_data_list([good]))
    assert bool(torch.isfinite(out["energy"]).all()) and bool(torch.isfinite(out["forces"]).all())


def test_empty_structure_and_calculator(tmp_path):
    from ase import Atoms

    model = small_model()
    with pytest.raises(InputError, match="empty structure"):
        model(Data(z=torch.zeros(0, dtype=torch.long), pos=torch.zeros(0, 3)))
    atoms = Atoms()
    atoms.calc = phizoo.PhiZooCalculator(model)
    with pytest.raises(InputError, match="empty structure"):
        atoms.get_potential_energy()
    dimer = Atoms("HH", positions=[[0, 0, 0], [0, 0, 0.01]])
    dimer.calc = phizoo.PhiZooCalculator(model)
    with pytest.raises(InputError, match="atoms 0 and 1 are 0.01 Å apart"):
        dimer.get_potential_energy()
