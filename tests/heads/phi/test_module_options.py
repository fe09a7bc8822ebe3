"""Every Φ option, of both formulations, keeps the properties of the default (checked on PaiNN)."""
import pytest
import torch

import phizoo
from tests.models.test_model_suite import close, finite_difference_forces, make_model, run
from tests.molecules import ase_molecule, batch, merged, random_molecule, random_orthogonal, transformed

PAPER = [
    {"rho": "untied"},
    {"rho": "untied", "alpha_net": "gated"},
    {"alpha_net": "gated"},
    {"laplacian": "normalized"},
    {"weight": "polynomial"},
    {"k": 2},
    {"k": 1, "rho": "untied"},
    {"smearing": 0.2},
]
CONTINUOUS = [{"weight": "cosine"}, {"mu": 3.0}, {"mu": 0.02, "mu_min": 0.001}, {"learn_mu": False},
              {"net_charge": True}]
OPTIONS = [{"formulation": "paper", **o} for o in PAPER] + CONTINUOUS


@pytest.fixture(scope="module", params=OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def model(request):
    return make_model("painn", True, phi_options=request.param)


def test_forces_finite_differences_random_and_degenerate(model):
    for mol in (random_molecule(6, 1), ase_molecule("C6H6")):
        close(run(model, mol)["forces"], finite_difference_forces(model, mol), atol=1e-6, rtol=1e-5)


def test_invariance_batch_independence_and_size_consistency(model):
    a, b = random_molecule(9, 2), random_molecule(7, 3)
    ra, rb = run(model, a), run(model, b)
    R = random_orthogonal(4, reflect=True)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    out = run(model, b, transformed(a, R=R, shift=[1.0, 2.0, 3.0], perm=perm))
    close(out["energy"], torch.cat([rb["energy"], ra["energy"]]))
    close(out["charges"][7:], ra["charges"][perm])
    both = run(model, merged(a, b, [0.0, 100.0, 0.0]))
    close(both["energy"][0], ra["energy"][0] + rb["energy"][0])


def test_phi_contributes(model):
    out = run(model, random_molecule(9, 6))
    assert float(out["electrostatic_energy"].abs().max()) > 1e-6


def test_every_phi_parameter_matters(model):
    """No parameter of the Φ head sits on a null direction of the energy (Adam would amplify its
    rounding-noise gradient into full-size random steps)."""
    model.zero_grad()
    out = model(batch(random_molecule(9, 7), random_molecule(6, 8)), create_graph=True)
    (out["energy"].sum() + out["forces"].pow(2).sum()).backward()
    for name, p in model.phi.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None and float(p.grad.abs().max()) > 1e-10, name
