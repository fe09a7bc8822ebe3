"""Registry, hyperparameter resolution, input validation, CLI."""
import subprocess
import sys

import pytest
import torch

import phizoo
from phizoo.models.potential import InputError
from phizoo.registry import resolve_hyperparameters
from tests.molecules import batch, random_molecule


def test_every_model_has_presets_and_builds():
    for name in phizoo.list_models():
        for preset in ("default", "cpu", "test"):
            backbone, phi, _ = resolve_hyperparameters(name, preset)
            assert "cutoff" in backbone and phi["formulation"] == "continuous" and phi["mu"] > 0
            _, paper, _ = resolve_hyperparameters(name, preset, {"formulation": "paper"})
            assert paper["k"] >= 1


def test_overrides_and_errors():
    m = phizoo.build_model("painn", phi=True, preset="test", hidden_channels=12,
                           phi_options={"formulation": "paper", "k": 3, "rho": "tied"})
    assert m.backbone.feature_dim == 12 and m.phi.k == 3 and m.phi.rho == "tied"
    with pytest.raises(KeyError, match="presets"):
        phizoo.build_model("painn", preset="huge")
    with pytest.raises(ValueError, match="rho"):
        phizoo.build_model("painn", phi=True, preset="test", phi_options={"formulation": "paper", "rho": "free"})
    with pytest.raises(KeyError, match="registered models"):
        phizoo.build_model("schnet")


def test_tied_rho_has_zero_pde_residual_and_is_neutral():
    torch.manual_seed(0)
    m = phizoo.build_model("painn", phi=True, preset="test", dtype=torch.float64,
                           phi_options={"formulation": "paper", "rho": "tied"})
    out = m(batch(random_molecule(9, 1)))
    assert float(out["pde_residual"].abs().max()) < 1e-20
    assert abs(float(out["charges"].sum())) < 1e-12


def test_bad_input_is_named():
    m = phizoo.build_model("painn", preset="test")
    good = batch(random_molecule(3, 1))
    bad = good.clone()
    bad.z = torch.tensor([6, 0, 1])
    with pytest.raises(InputError, match="atom 1 has atomic number 0"):
        m(bad)
    bad = good.clone()
    bad.pos = good.pos.clone()
    bad.pos[2, 1] = float("nan")
    with pytest.raises(InputError, match="atom 2 has a non-finite position"):
        m(bad)


def test_cli_models_lists_registry():
    out = subprocess.run([sys.executable, "-m", "phizoo.cli.main", "models", "--preset", "test"],
                         capture_output=True, text=True, check=True).stdout
    for name in phizoo.list_models():
        assert f"{name} " in out
    assert "true" in out and "false" in out
