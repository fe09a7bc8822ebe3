"""Total charge and spin multiplicity end to end: a charge-aware model sees them (+1 and −1 give
different energies and forces), a model without them refuses them, impossible multiplicities are
named, the calculator reads ``atoms.info``, and old checkpoints load strictly (no new parameters)."""
import copy

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


@pytest.mark.filterwarnings("ignore:elements .* have no reference energy")
@pytest.mark.parametrize("phi", [False, True])
def test_finetune_makes_a_neutral_model_charge_aware(tmp_path, phi):
    """``finetune(..., charge_spin=True)`` (CLI ``--charge-spin``): unchanged at Q = 0 before
    training, Σρ = Q afterwards, learns a charge-dependent energy, reloads strictly."""
    from phizoo.train.finetune import add_charge_spin

    torch.manual_seed(1)
    neutral = phizoo.build_model("painn", phi=phi, preset="test", dtype=torch.float64).eval()
    aware = add_charge_spin(copy.deepcopy(neutral)).eval()
    torch.testing.assert_close(aware(ethanol(0))["energy"], neutral(ethanol(0))["energy"], rtol=0, atol=1e-12)
    if phi:
        assert abs(float(aware(ethanol(1, 2))["charges"].sum()) - 1.0) < 1e-9
    # data: the neutral model's energy plus 0.5 eV per unit of charge, on jittered ethanols
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(24):
        d = ethanol((-1, 0, 1)[i % 3], spin=(2, 1, 2)[i % 3])
        d.pos = d.pos + 0.05 * torch.randn(d.pos.shape, generator=gen, dtype=torch.float64)
        d.energy = neutral(Data(z=d.z, pos=d.pos))["energy"].detach() + 0.5 * d.total_charge
        items.append(d)
    splits = {"train": list(range(18)), "val": list(range(18, 24))}
    tuned, summary = phizoo.finetune(neutral.float(), items, splits, epochs=15, lr=3e-3, batch_size=6,
                                     charge_spin=True, config={"progress": False}, output_dir=tmp_path / "ft")
    assert summary["finetune"]["charge_spin"] and neutral.charge_spin is None  # the input model is untouched
    tuned = tuned.double().eval()
    gap = float(tuned(ethanol(1, 2))["energy"][0] - tuned(ethanol(-1, 2))["energy"][0])
    assert 0.3 < gap < 1.7, f"+1/-1 energy gap {gap:.3f} eV, data: 1.0 eV"
    loaded = phizoo.load_model("painn", phi=phi, pretrained=str(tmp_path / "ft" / "best.json"),
                               dtype=torch.float64).eval()
    assert loaded.charge_spin is not None
    torch.testing.assert_close(loaded(ethanol(1, 2))["energy"], tuned(ethanol(1, 2))["energy"])
