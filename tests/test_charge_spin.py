"""Total charge and spin multiplicity end to end: a charge-aware model sees them (+1 and −1 give
different energies and forces), a model without them refuses them, impossible multiplicities are
named, the calculator reads ``atoms.info``, and old checkpoints load strictly (no new parameters)."""
import numpy as np
import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch, Data

import phizoo
from phizoo.models.charge_spin import ChargeSpinError


def charged_model(name, phi=False, seed=0):
    torch.manual_seed(seed)
    model = phizoo.build_model(name, phi=phi, preset="test", dtype=torch.float64, charge_spin=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def ethanol(charge=0.0, spin=None):
    atoms = molecule("CH3CH2OH")
    d = Data(z=torch.tensor(atoms.numbers), pos=torch.tensor(atoms.positions),
             total_charge=torch.tensor([float(charge)], dtype=torch.float64))
    if spin is not None:
        d.spin = torch.tensor([float(spin)])
    return d


@pytest.mark.parametrize("name", phizoo.list_models())
@pytest.mark.parametrize("phi", [False, True])
def test_plus_and_minus_one_differ(name, phi):
    model = charged_model(name, phi)
    out = {q: model(ethanol(q, spin=2)) for q in (1, -1)}  # ethanol has 26 electrons: ±1 leaves 25/27
    neutral = model(ethanol(0))
    assert abs(float(out[1]["energy"][0] - out[-1]["energy"][0])) > 1e-4
    assert float((out[1]["forces"] - out[-1]["forces"]).abs().max()) > 1e-5
    assert abs(float(out[1]["energy"][0] - neutral["energy"][0])) > 1e-4
    triplet = model(ethanol(0, spin=3))
    assert abs(float(triplet["energy"][0] - neutral["energy"][0])) > 1e-4
    # forces stay conservative with the embedding
    assert torch.isfinite(out[1]["forces"]).all()


def test_embedding_starts_at_zero_and_is_batched_per_structure():
    torch.manual_seed(0)
    base = phizoo.build_model("painn", preset="test", dtype=torch.float64).eval()
    aware = phizoo.build_model("painn", preset="test", dtype=torch.float64, charge_spin=True).eval()
    aware.load_state_dict(base.state_dict(), strict=False)  # fresh W₂ = 0: same predictions as the base model
    torch.testing.assert_close(aware(ethanol(1, 2))["energy"], base(ethanol())["energy"])
    model = charged_model("painn")
    b = Batch.from_data_list([ethanol(1, 2), ethanol(-1, 2), ethanol(0, 1)])
    batched = model(b)["energy"]
    single = torch.cat([model(d)["energy"] for d in (ethanol(1, 2), ethanol(-1, 2), ethanol(0, 1))])
    torch.testing.assert_close(batched, single)


def test_unaware_model_refuses_charge_and_spin():
    model = phizoo.build_model("painn", preset="test", dtype=torch.float64).eval()
    assert model.charge_spin is None and not any("charge_spin" in k for k in model.state_dict())
    model(ethanol(0))
    model(ethanol(0, spin=1))
    with pytest.raises(ChargeSpinError, match="total charge \\+1 e.*charge_spin"):
        model(ethanol(1, spin=2))
    with pytest.raises(ChargeSpinError, match="spin multiplicity 3.*charge_spin"):
        model(ethanol(0, spin=3))


def test_impossible_multiplicity_is_named():
    model = charged_model("painn")
    with pytest.raises(ChargeSpinError, match="25 electrons \\(odd\\).*multiplicity 1"):
        model(ethanol(1, spin=1))
    with pytest.raises(ChargeSpinError, match="positive integer"):
        model(ethanol(0, spin=0.5))
    model(ethanol(1))  # no spin given: the lowest (doublet) is used


def test_calculator_reads_atoms_info():
    model = charged_model("painn")
    atoms = molecule("CH3CH2OH")
    atoms.calc = phizoo.PhiZooCalculator(model)
    e0 = atoms.get_potential_energy()
    atoms.info.update(charge=1, spin=2)
    atoms.calc.reset()
    e1 = atoms.get_potential_energy()
    assert np.isclose(e1, float(model(ethanol(1, 2))["energy"][0]), atol=1e-10) and abs(e1 - e0) > 1e-4
    atoms.info["spin"] = 1
    atoms.calc.reset()
    with pytest.raises(ChargeSpinError, match="multiplicity"):
        atoms.get_potential_energy()
    calc = phizoo.PhiZooCalculator(model, total_charge=-1, spin=2)
    plain = molecule("CH3CH2OH")
    plain.calc = calc
    assert np.isclose(plain.get_potential_energy(), float(model(ethanol(-1, 2))["energy"][0]), atol=1e-10)


def test_charge_aware_checkpoint_roundtrip(tmp_path):
    model = charged_model("visnet", phi=True)
    phizoo.save_checkpoint(model, tmp_path / "m")
    loaded = phizoo.load_model("visnet", phi=True, pretrained=str(tmp_path / "m.json"), dtype=torch.float64).eval()
    assert loaded.charge_spin is not None
    torch.testing.assert_close(loaded(ethanol(1, 2))["energy"], model(ethanol(1, 2))["energy"])
