"""GFN2-xTB Langevin molecular dynamics written as MD22-format (sGDML) ``.npz`` files.

``phizoo data xtb-md`` (:func:`xtb_md`) makes MD22-like training data on a laptop: it starts
from a SMILES string (RDKit: hydrogens added, ETKDG embedding with a fixed seed, MMFF
pre-optimisation), a structure file (anything ``ase.io.read`` reads) or one of the MD22
molecules in :data:`MOLECULES`, runs Langevin dynamics with GFN2-xTB energies and forces from
tblite, and saves every ``stride``-th step.

This module is the entry point and the public surface (every name below can be imported
from here); the work is done in the modules next to it:

* ``structure.py`` – :class:`Molecule`, :func:`from_smiles` (RDKit), :func:`from_file` (ase);
* ``md22_molecules.py`` – :data:`MOLECULES` and :func:`molecule` (checked against MD22), with
  ``complexes.py`` building the non-covalent ones (stacked base pairs, buckyball catcher);
* ``xtb.py`` – :class:`XTB`, tblite single points that keep the SCC wavefunction (units);
* ``md.py`` – :func:`run_md`: the BAOAB integrator, checkpoints and resume (design notes);
* ``sgdml.py`` – the output file: its format, :func:`write_npz`, :func:`dataset_arrays`;
* ``optional.py`` – tblite / rdkit imports and :class:`MissingDependencyError`.
"""
from __future__ import annotations

from pathlib import Path

from ..data.errors import DataError
from .complexes import base_pair_stack, buckyball_catcher  # noqa: F401
from .md import INTEGRATOR, checkpoint_path, kinetic_temperature, masses_of, run_md  # noqa: F401
from .md22_molecules import MOLECULES, Spec, molecule  # noqa: F401
from .optional import INSTALL_HINT, MissingDependencyError, tblite_version, theory_string  # noqa: F401
from .sgdml import dataset_arrays, sgdml_md5, write_npz  # noqa: F401
from .structure import Molecule, from_file, from_smiles  # noqa: F401
from .xtb import GRAD_TO_EV_A, HARTREE_KCAL, KCAL_MOL, XTB  # noqa: F401


def xtb_md(output: str | Path, *, molecule_name: str | None = None, smiles: str | None = None,
           structure: str | Path | None = None, name: str | None = None, seed: int = 0, **md) -> Path:
    """Build the starting structure (exactly one of ``molecule_name``, ``smiles``, ``structure``)
    and run :func:`run_md` (keyword arguments as there). The RDKit embedding uses ``seed`` too."""
    given = [k for k, v in (("molecule", molecule_name), ("smiles", smiles), ("structure", structure)) if v]
    if len(given) != 1:
        raise DataError(f"give exactly one of --molecule, --smiles, --structure (got {', '.join(given) or 'none'})")
    tblite_version()  # fail before building anything when tblite is missing
    if molecule_name:
        mol = molecule(molecule_name, seed=seed)
    elif smiles:
        mol = from_smiles(smiles, seed=seed)
    else:
        mol = from_file(structure)
    if name:
        mol.name = name
    return run_md(mol, output, seed=seed, **md)
