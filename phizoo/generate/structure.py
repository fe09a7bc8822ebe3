"""Starting structures for ``phizoo data xtb-md``: a SMILES string (RDKit) or a structure file (ase)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.errors import DataError
from .optional import _import


@dataclass
class Molecule:
    """A starting structure: atomic numbers, positions (Å) and where they came from."""
    name: str
    z: np.ndarray
    pos: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)


def from_smiles(smiles: str, seed: int = 42, name: str | None = None, mmff_iterations: int = 5000) -> Molecule:
    """3D structure of a SMILES string: RDKit AddHs, ETKDGv3 embedding with ``randomSeed=seed``
    (one thread, so deterministic), MMFF94 optimisation (UFF when MMFF lacks parameters)."""
    Chem = _import("rdkit.Chem", "rdkit", "building a molecule from SMILES")
    from rdkit.Chem import AllChem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise DataError(f"SMILES {smiles!r}: RDKit cannot parse it")
    formula = CalcMolFormula(mol)
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # large or strained molecules
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise DataError(f"SMILES {smiles!r}: RDKit ETKDG could not embed a 3D structure (seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        ff, optimiser = "MMFF94", AllChem.MMFFOptimizeMolecule
    else:
        ff, optimiser = "UFF", AllChem.UFFOptimizeMolecule
    converged = optimiser(mol, maxIters=mmff_iterations) == 0
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    pos = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return Molecule(name or formula, z, pos, {"smiles": smiles, "formula": formula, "embedding": "RDKit ETKDGv3",
                                              "embed_seed": int(seed), "preoptimisation": ff,
                                              "preoptimisation_converged": bool(converged)})


def from_file(path: str | Path, name: str | None = None) -> Molecule:
    """First structure of a file ``ase.io.read`` understands (xyz, extxyz, pdb, mol, cif...)."""
    from ase.io import read

    from ..data.convert import sha256_file
    from ..data.errors import check_file

    p = check_file(path, "structure file")
    try:
        atoms = read(str(p), index=0)
    except Exception as err:  # ase raises many types for unreadable files
        raise DataError(f"{p}: ase.io.read cannot read it ({type(err).__name__}: {err})") from None
    if atoms.pbc.any():
        raise DataError(f"{p}: periodic structure; xtb-md runs isolated molecules only")
    return Molecule(name or p.stem, atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                    {"file": p.name, "file_sha256": sha256_file(p)})
