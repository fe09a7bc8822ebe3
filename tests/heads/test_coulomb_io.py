"""The Coulomb head outside the model: ASE calculator outputs, the charge/dipole loss terms and
their metrics, and the training config keys."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from torch_geometric.data import Batch

import phizoo
from phizoo.train import build_from_config
from phizoo.train.config import make_config
from phizoo.train.losses import batch_errors, compute_loss, finalize_errors
from phizoo.train.schema import ConfigError
from tests.heads.test_coulomb import coulomb_model
from tests.molecules import random_molecule


def test_calculator_charges_dipole_and_energy_split():
    model = coulomb_model(phi=True)
    atoms = molecule("CH3CH2OH")
    atoms.info["charge"] = 1.0
    atoms.calc = phizoo.PhiZooCalculator(model)
    q = atoms.get_charges()
    assert abs(q.sum() - 1.0) < 1e-10
    mu = atoms.get_dipole_moment()
    np.testing.assert_allclose(mu, (q[:, None] * (atoms.positions - atoms.positions.mean(0))).sum(0), atol=1e-10)
    r = atoms.calc.results
    np.testing.assert_allclose(r["coulomb_charges"], q)
    assert r["phi_charges"].shape == q.shape and not np.allclose(r["phi_charges"], q)
    refs = float(model.element_energies[torch.tensor(atoms.numbers)].sum())
    total = r["energy_short_range"] + r["electrostatic_energy"] + r["coulomb_energy"] + refs
    assert abs(total - atoms.get_potential_energy()) < 1e-9


def test_calculator_without_coulomb_has_no_dipole():
    atoms = molecule("H2O")
    atoms.calc = phizoo.PhiZooCalculator(phizoo.build_model("painn", preset="test", dtype=torch.float64))
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_dipole_moment()


def labelled_batch(vector_dipole: bool):
    mols = [random_molecule(n, seed=n) for n in (5, 8)]
    g = torch.Generator().manual_seed(0)
    for m in mols:
        m.energy = torch.zeros(1, dtype=torch.float64)
        m.charges = 0.3 * torch.randn(m.z.numel(), generator=g, dtype=torch.float64)
        m.dipole = torch.randn(3 if vector_dipole else 1, generator=g, dtype=torch.float64).abs()
    return Batch.from_data_list(mols)


@pytest.mark.parametrize("vector_dipole", [False, True], ids=["magnitude", "vector"])
def test_charge_and_dipole_loss_terms(vector_dipole):
    model = coulomb_model()
    b = labelled_batch(vector_dipole)
    out = model(b)
    _, parts = compute_loss(out, b, {"energy": 1.0, "charges": 1.0, "dipole": 1.0}, torch.float64)
    dq = out["coulomb_charges"].detach() - b.charges
    assert abs(parts["charges"] - float(dq.pow(2).mean())) < 1e-12
    mu = out["dipole"].detach()
    if vector_dipole:
        dmu = mu - b.dipole.reshape(-1, 3)
        expected = float(dmu.pow(2).sum() / 2)
        mae = float(dmu.norm(dim=-1).mean())
    else:
        dmu = mu.norm(dim=-1) - b.dipole
        expected, mae = float(dmu.pow(2).sum() / 2), float(dmu.abs().mean())
    assert abs(parts["dipole"] - expected) < 1e-12
    metrics = finalize_errors({k: float(v) for k, v in batch_errors(out, b).items()})
    assert abs(metrics["charges_mae"] - float(dq.abs().mean())) < 1e-12
    assert abs(metrics["dipole_mae"] - mae) < 1e-12


def test_charge_loss_needs_a_coulomb_head():
    model = phizoo.build_model("painn", phi=True, preset="test", dtype=torch.float64)
    b = labelled_batch(False)
    with pytest.raises(ValueError, match="coulomb"):
        compute_loss(model(b), b, {"energy": 1.0, "charges": 1.0}, torch.float64)


def test_config_keys_build_the_head():
    cfg = make_config({"model": {"name": "painn", "preset": "test", "coulomb": True,
                                 "coulomb_options": {"sigma": 0.8, "correction": "weighted"}},
                       "loss": {"charges": 1.0, "dipole": "1e-1"}})
    assert cfg["loss"]["dipole"] == 0.1
    model = build_from_config(cfg)
    assert model.coulomb.sigma == 0.8 and model.spec["coulomb_options"]["correction"] == "weighted"
    with pytest.raises(ConfigError, match="coulomb_options.sigmaa"):
        make_config({"model": {"name": "painn", "coulomb": True, "coulomb_options": {"sigmaa": 1.0}}})
    with pytest.raises(ConfigError, match="coulomb_options.sigma"):
        make_config({"model": {"name": "painn", "coulomb": True, "coulomb_options": {"sigma": "wide"}}})
