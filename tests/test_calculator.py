"""ASE calculator: agrees with the model, and NVE dynamics conserves energy."""
import numpy as np
import torch
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

import phizoo
from tests.molecules import ase_molecule, batch


def _model(phi=True):
    torch.manual_seed(0)
    return phizoo.build_model("painn", phi=phi, preset="test", dtype=torch.float64).eval()


def test_calculator_matches_model_and_ase_finite_differences():
    model = _model()
    atoms = molecule("CH3CH2OH")
    atoms.calc = phizoo.PhiZooCalculator(model)
    out = model(batch(ase_molecule("CH3CH2OH")))
    assert np.isclose(atoms.get_potential_energy(), float(out["energy"][0]), atol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_charges(), out["charges"].detach().numpy(), atol=1e-10)
    # ASE's own numerical forces
    num = atoms.calc.calculate_numerical_forces(atoms, d=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), num, atol=1e-5)


def test_calculator_periodic_atoms_and_stress_policy():
    """Periodic Atoms are evaluated (tests/models/test_periodic.py checks the physics); stress is
    refused with a clear error where the cell is not periodic in all three directions."""
    atoms = molecule("H2O", cell=[5, 5, 5], pbc=True)
    atoms.calc = phizoo.PhiZooCalculator(_model())
    assert np.isfinite(atoms.get_potential_energy()) and atoms.get_stress().shape == (6,)
    atoms.pbc = [True, True, False]
    atoms.calc.reset()
    assert np.isfinite(atoms.get_potential_energy())
    try:
        atoms.get_stress()
    except Exception as err:
        assert "periodic in all three directions" in str(err)
    else:
        raise AssertionError("stress of a slab was returned")


def test_nve_conserves_energy():
    """Velocity Verlet, 0.25 fs, 400 steps (100 fs): total-energy drift and fluctuation stay small."""
    model = _model()
    atoms = molecule("CH3CH2OH")
    atoms.calc = phizoo.PhiZooCalculator(model)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    dyn.run(400)
    energies = np.array(energies)
    kinetic_scale = 1.5 * len(atoms) * units.kB * 300
    drift = abs(energies[-1] - energies[0])
    print(f"NVE 100 fs: drift {drift * 1000:.3f} meV, max deviation {np.ptp(energies) * 1000:.3f} meV, "
          f"kT-scale {kinetic_scale * 1000:.1f} meV")
    assert np.ptp(energies) < 0.01 * kinetic_scale
