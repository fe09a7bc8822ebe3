"""The structures of the peer benchmark (``peer_bench.py``): MD22-sized molecules (42, 118 and
378 atoms), batches of rotated copies, and phizoo's neighbour list (given to the peers that take one)."""
from __future__ import annotations

import numpy as np

CUTOFF = 5.0

ALA3_SMILES = "CC(=O)NC(C)C(=O)NC(C)C(=O)NC(C)C(=O)NC"  # Ac-Ala3-NHMe (MD22), 42 atoms with H
RESIDUES = {"A": "N[C@@H](C)C(=O)", "G": "NCC(=O)", "S": "N[C@@H](CO)C(=O)"}
PEPTIDE_SEQ = "AASAGAASAGA"  # Ac-AASAGAASAGA-NHMe: 118 atoms, the size of MD22's AT-AT-CG-CG


def rdkit_molecule(smiles: str, seed: int = 0xF00D):
    """Atomic numbers and an MMFF94-relaxed conformer (ETKDG embedding, fixed seed)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"rdkit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def nanotube_dw():
    """Double-walled carbon nanotube (6,0)@(15,0), 4 unit cells (17 Å), ends capped with H: 378 atoms
    (MD22's double-walled nanotube has 370). Interlayer spacing 3.5 Å."""
    from ase.build import nanotube

    inner, outer = nanotube(6, 0, length=4), nanotube(15, 0, length=4)
    pos = np.concatenate([inner.positions, outer.positions])
    z = np.concatenate([inner.numbers, outer.numbers])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = ((d < 1.7) & (d > 0)).sum(1)
    zc = pos[:, 2].mean()
    caps = [pos[i] + 1.09 * np.sign(pos[i, 2] - zc) * np.array([0.0, 0.0, 1.0]) for i in np.flatnonzero(bonded < 3)]
    return np.concatenate([z, np.ones(len(caps), dtype=z.dtype)]), np.concatenate([pos, np.array(caps)])


def molecules() -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    pep = "CC(=O)" + "".join(RESIDUES[c] for c in PEPTIDE_SEQ) + "NC"
    out = {}
    for key, label, (z, pos) in (("ala3", "Ac-Ala3-NHMe", rdkit_molecule(ALA3_SMILES)),
                                 ("peptide", f"Ac-{PEPTIDE_SEQ}-NHMe", rdkit_molecule(pep)),
                                 ("dwnt", "DW nanotube (6,0)@(15,0)", nanotube_dw())):
        out[key] = (label, np.asarray(z, dtype=np.int64), pos - pos.mean(0))
    return out


def rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_batch(z: np.ndarray, pos: np.ndarray, copies: int, seed: int = 0):
    """``copies`` structures: the molecule itself, then randomly rotated copies with 0.02 Å noise."""
    rng = np.random.default_rng(seed)
    zs, ps = [z], [pos]
    for _ in range(copies - 1):
        ps.append(pos @ rotation(rng).T + rng.normal(scale=0.02, size=pos.shape))
        zs.append(z)
    batch = np.repeat(np.arange(copies), len(z))
    return np.concatenate(zs), np.concatenate(ps), batch


def neighbour_list(pos: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """phizoo's neighbour list ([2, E], source j, target i, sorted), given to peers that take one."""
    import torch

    from phizoo.nn.graph import radius_graph

    return radius_graph(torch.tensor(pos, dtype=torch.float32), CUTOFF, torch.tensor(batch)).numpy()
