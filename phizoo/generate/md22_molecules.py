"""The MD22 molecules ``phizoo data xtb-md --molecule`` builds (:data:`MOLECULES`), each checked
against MD22's atom count and formula."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..data.errors import DataError
from .complexes import base_pair_stack, buckyball_catcher
from .structure import Molecule, from_smiles


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def molecule(name: str, seed: int = 42) -> Molecule:
    """One of the MD22 molecules of :data:`MOLECULES` (atom count checked against MD22's)."""
    key = _ALIASES.get(_norm(name))
    if key is None:
        raise DataError(f"unknown molecule {name!r}; known: {', '.join(MOLECULES)} "
                        f"(or give --smiles / --structure)")
    spec = MOLECULES[key]
    if spec.smiles is not None:
        mol = from_smiles(spec.smiles, seed=seed, name=key)
    else:
        mol = spec.builder(seed)
        mol.name = key
    mol.source = {"molecule": key, **mol.source}
    from ase import Atoms

    formula = Atoms(numbers=mol.z).get_chemical_formula(mode="hill")
    if len(mol.z) != spec.md22_atoms or formula != spec.formula:
        raise DataError(f"{key}: built {len(mol.z)} atoms ({formula}) but MD22's {key} has {spec.md22_atoms} "
                        f"({spec.formula})")
    return mol


@dataclass
class Spec:
    md22_atoms: int
    formula: str
    smiles: str | None = None
    builder: Callable[[int], Molecule] | None = None
    note: str = ""


# L-alanine (S) throughout: the brief's SMILES CC(=O)NC(C)C(=O)NC(C)C(=O)NC(C)C(=O)NC without
# stereo tags would let ETKDG pick D or L at random for each residue.
AC_ALA3_NHME = "CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC"
# docosahexaenoic acid, all-cis-4,7,10,13,16,19 (22:6 n-3), C22H32O2
DHA = "CC/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\CCC(=O)O"
# stachyose, alpha-D-Gal-(1->6)-alpha-D-Gal-(1->6)-alpha-D-Glc-(1<->2)-beta-D-Fru, C24H42O21;
# CIP labels checked with RDKit: Gal C1 S, C2 R, C3 S, C4 R, C5 R (both); Glc C1 R, C2 R, C3 S,
# C4 S, C5 R; Fru C2 S, C3 S, C4 S, C5 R (as in sucrose's and raffinose's IUPAC names)
STACHYOSE = ("OC[C@H]1O[C@H](OC[C@H]2O[C@H](OC[C@H]3O[C@H](O[C@]4(CO)O[C@H](CO)[C@@H](O)[C@@H]4O)"
             "[C@H](O)[C@@H](O)[C@@H]3O)[C@H](O)[C@@H](O)[C@H]2O)[C@H](O)[C@@H](O)[C@H]1O")

# the MD22 molecules buildable here (the non-covalent complexes' builders: complexes.py)
MOLECULES: dict[str, Spec] = {
    "Ac-Ala3-NHMe": Spec(42, "C12H22N4O4", smiles=AC_ALA3_NHME, note="N-acetyl-L-alanyl-L-alanyl-L-alanine methylamide"),
    "DHA": Spec(56, "C22H32O2", smiles=DHA, note="docosahexaenoic acid, all-cis"),
    "stachyose": Spec(87, "C24H42O21", smiles=STACHYOSE, note="tetrasaccharide Gal-Gal-Glc-Fru"),
    "AT-AT": Spec(60, "C20H22N14O4", builder=lambda seed: base_pair_stack(["AT", "AT"], seed),
                  note="two stacked Watson-Crick A·T pairs (B-DNA step, no backbone)"),
    "AT-AT-CG-CG": Spec(118, "C38H42N30O8", builder=lambda seed: base_pair_stack(["AT", "AT", "CG", "CG"], seed),
                        note="four stacked Watson-Crick pairs A·T, A·T, C·G, C·G (B-DNA, no backbone)"),
    "buckyball-catcher": Spec(148, "C120H28", builder=buckyball_catcher,
                              note="C60 in Sygula's buckycatcher C60H28"),
}
_ALIASES: dict[str, str] = {_norm(k): k for k in MOLECULES}
