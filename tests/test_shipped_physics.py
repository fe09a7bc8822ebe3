"""Every shipped checkpoint passes the physics checks the model suite runs on fresh weights:
continuity when molecules meet, rotation equivariance on a symmetric molecule, size consistency,
finite-difference forces, float32 on a long chain and far from the origin (float64 unless said)."""
import pytest
import torch
from torch_geometric.data import Data

from phizoo.pretrained import available_pretrained, load_checkpoint, manifest_path
from tests.models.test_model_suite import close, finite_difference_forces, run
from tests.molecules import alkane, approaching_pair, ase_molecule, merged, random_orthogonal, transformed
from tests.test_shipped_weights import STALE

ENTRIES = [e for e in available_pretrained() if e["id"] not in STALE]


@pytest.fixture(scope="module", params=ENTRIES, ids=[e["id"] for e in ENTRIES])
def shipped(request):
    e = request.param
    model = load_checkpoint(manifest_path().parent / e["card"], expected_sha256=e["sha256"])
    return model.to(torch.float64).eval()


def test_continuous_when_molecules_meet(shipped):
    a, b = ase_molecule("CH3CH2OH"), ase_molecule("H2O")
    u = torch.tensor([1.0, 0.3, -0.2], dtype=torch.float64)
    u = u / u.norm()
    contact = approaching_pair(a, b, shipped.cutoff, u)
    n = a.z.numel()
    e = [float(run(shipped, Data(z=contact.z, pos=torch.cat([contact.pos[:n], contact.pos[n:] + d * u])))["energy"][0])
         for d in (-1e-7, 1e-7)]
    assert abs(e[0] - e[1]) < 1e-6, f"energy jumps by {e[0] - e[1]:.3g} eV when the molecules meet"


def test_rotation_on_a_symmetric_molecule_and_size_consistency(shipped):
    methane = ase_molecule("CH4")
    R = random_orthogonal(3)
    ref, rot = run(shipped, methane), run(shipped, transformed(methane, R=R))
    close(rot["energy"], ref["energy"], atol=1e-9, rtol=1e-12)
    scale = float(ref["forces"].abs().max())
    close(rot["forces"], ref["forces"] @ R.T, atol=1e-10 * max(scale, 1e-3), rtol=0)
    water = ase_molecule("H2O")
    both = run(shipped, merged(methane, water, [100.0, 0.0, 0.0]))
    close(both["energy"][0], ref["energy"][0] + run(shipped, water)["energy"][0], atol=1e-8, rtol=1e-12)


def test_forces_match_finite_differences(shipped):
    mol = ase_molecule("CH3CH2OH")
    mol.pos = mol.pos + 0.05 * torch.randn(mol.pos.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    close(run(shipped, mol)["forces"], finite_difference_forces(shipped, mol), atol=1e-5, rtol=1e-5)


def test_float32_long_chain_and_far_from_the_origin(shipped):
    chain = alkane(150)
    f64 = run(shipped, chain)["forces"]
    m32 = shipped.to(torch.float32)
    try:
        f32 = run(m32, chain)["forces"]
        assert torch.isfinite(f32).all()
        close(f32.double(), f64, atol=1e-3 * float(f64.abs().max()), rtol=0)
        ethanol = ase_molecule("CH3CH2OH")
        e0 = run(m32, ethanol)["energy"][0]
        e_far = run(m32, transformed(ethanol, shift=[1e6, -1e6, 1e6]))["energy"][0]
        assert abs(float(e0 - e_far)) < 1e-4
    finally:
        shipped.to(torch.float64)
