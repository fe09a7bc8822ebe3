"""Second derivatives through Φ: the autograd Hessian of every formulation-default Φ model equals
ASE ``Vibrations``' finite-difference Hessian, and the vibrational analysis runs."""
import numpy as np
import torch
from ase.build import molecule
from ase.vibrations import Vibrations

import phizoo
from tests.models.test_model_suite import make_model
from tests.molecules import ase_molecule, batch


def test_autograd_hessian_equals_ase_vibrations(tmp_path):
    model = make_model("painn", True)
    atoms = molecule("H2O")
    atoms.calc = phizoo.PhiZooCalculator(model)
    vib = Vibrations(atoms, name=str(tmp_path / "vib"), delta=1e-4, nfree=4)
    vib.run()
    fd = vib.get_vibrations().get_hessian_2d()  # eV/Å², from ASE's own finite differences
    data = batch(ase_molecule("H2O"))
    pos = data.pos.clone().requires_grad_(True)
    data.pos = pos
    forces = model(data, create_graph=True)["forces"].reshape(-1)
    hess = -torch.stack([torch.autograd.grad(f, pos, retain_graph=True)[0].reshape(-1) for f in forces])
    np.testing.assert_allclose(hess.detach().numpy(), fd, atol=1e-5 * max(1.0, np.abs(fd).max()))
    assert np.isfinite(vib.get_frequencies()).all()
