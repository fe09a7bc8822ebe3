r"""Charged and polar dimers along dissociation curves, GFN2-xTB (tblite).

Each pair A···B (:data:`PAIRS`) is built from two rigid monomers: RDKit from SMILES (ETKDGv3
seed 42, MMFF94), then optimised with GFN2-xTB at the monomer's own charge (ASE BFGS, max |F|
< 0.005 eV/Å). A curve is one random orientation: a uniformly random rotation of each monomer
and a random direction **u** (``numpy.random.default_rng([seed, crc32(pair), curve])``, so a
curve does not depend on the other pairs or curves); B's centre of mass moves along **u** from
A's. The curve coordinate is the **closest inter-monomer distance**
:math:`d = \min_{i∈A, j∈B} |\mathbf r_i - \mathbf r_j|`:

* contact, where the curve starts: the closest approach at which every atom pair is at least
  ``contact`` × (the sum of their van der Waals radii, ``ase.data.vdw_radii``), with
  ``contact`` = 0.7 (H···O 1.90 Å, Cl···H 2.07 Å, O···O 2.13 Å, Cl···O 2.29 Å): at or
  slightly inside the minimum of a hydrogen bond or an ion–water contact;
* ``points`` values of d from contact to ``max_distance`` (15 Å), spaced geometrically (denser
  at short range; with the defaults about half of the points have d > 5 Å, where no atom pair
  of the dimer is inside a 5 Å cutoff at all);
* B's position for a given d: the smallest centre distance t along **u** at which no pair is
  closer than d (:math:`t = \max_{ij}` of the larger root of :math:`|\mathbf w_{ij} - t\mathbf u| = d`).

Every frame is an independent GFN2-xTB single point with the total charge :math:`Q_A + Q_B`
and spin multiplicity 1 (all monomers are closed shell): energy (eV), forces (eV/Å), Mulliken
charges (e), dipole about the geometric centre (e·Å), total charge, spin. The record's
``meta`` holds the pair, curve and point, d, the centre distance, the interaction energy
:math:`E - E_A - E_B` (monomer energies in the metadata) and the xTB charge on monomer A.

Which pairs: GFN2-xTB, like other self-consistent tight-binding and semi-local DFT methods,
transfers a fraction of an electron between separated fragments when the acceptor level of one
lies below the donor level of the other. Measured with tblite 0.8: Na⁺···Cl⁻ (total charge 0)
has charges ±0.57 e at 5 Å and no SCC convergence beyond ~7 Å; Na⁺, Li⁺ and K⁺ with a water
molecule keep only ~0.85 e on the cation at 15 Å and fail to converge at 5–8 Å; oppositely
charged molecular ions (NH4⁺···Cl⁻, NH4⁺···acetate⁻) likewise. Such pairs have no well-defined
long-range limit at this level of theory and are left out. Molecular ions next to neutral
molecules keep integer charge (NH4⁺, Cl⁻, acetate⁻: ±1.000 e from 5 Å on), and like-charged
ions repel with the bare Coulomb law (NH4⁺···NH4⁺: +0.797 eV at 18 Å, k_e/r = 0.800 eV).

Frames are ordered curve by curve: for curve c, for each pair, its ``points`` distances, so a
run with more curves extends a run with fewer (same seed). Splits: by curve (default; all
points of an orientation in one split, 80/10/10 % of the curves) or by frame.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...data.convert import Structure
from ...data.errors import DataError
from .common import (GeneratedSource, frame_rng, frame_split, from_smiles, group_split, package_version,
                     phizoo_version, rotation, tblite_version, write, xtb_optimise, xtb_singlepoint, xtb_structure,
                     xtb_theory)


@dataclass(frozen=True)
class Pair:
    label: str
    a: str     # SMILES of monomer A
    b: str     # SMILES of monomer B
    kind: str  # ion-polar, polar-polar, ion-ion


PAIRS: dict[str, Pair] = {
    "nh4-water": Pair("NH4+···H2O", "[NH4+]", "O", "cation–polar"),
    "cl-water": Pair("Cl−···H2O", "[Cl-]", "O", "anion–polar"),
    "acetate-methanol": Pair("CH3COO−···CH3OH", "CC(=O)[O-]", "CO", "anion–polar, hydrogen bond"),
    "water-water": Pair("H2O···H2O", "O", "O", "polar–polar (neutral)"),
    "nh4-nh4": Pair("NH4+···NH4+", "[NH4+]", "[NH4+]", "cation–cation"),
    "cl-acetate": Pair("Cl−···CH3COO−", "[Cl-]", "CC(=O)[O-]", "anion–anion"),
}
"""The default pairs (key -> monomers). More that keep integer fragment charges in GFN2-xTB:
:data:`EXTRA_PAIRS`."""

EXTRA_PAIRS: dict[str, Pair] = {
    "methylammonium-water": Pair("CH3NH3+···H2O", "C[NH3+]", "O", "cation–polar"),
    "guanidinium-water": Pair("C(NH2)3+···H2O", "NC(N)=[NH2+]", "O", "cation–polar"),
    "f-water": Pair("F−···H2O", "[F-]", "O", "anion–polar"),
    "nitrate-water": Pair("NO3−···H2O", "[O-][N+](=O)[O-]", "O", "anion–polar"),
    "acetate-acetate": Pair("CH3COO−···CH3COO−", "CC(=O)[O-]", "CC(=O)[O-]", "anion–anion"),
}
ALL_PAIRS = {**PAIRS, **EXTRA_PAIRS}
MONOMER_SEED = 42


def _com(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    from ase.data import atomic_masses

    m = atomic_masses[z]
    return (m @ x) / m.sum()


def _far_roots(w: np.ndarray, u: np.ndarray, d: np.ndarray | float) -> np.ndarray:
    """Per pair, the larger t with |w - t u| = d (−inf where the pair is never closer than d)."""
    wu = w @ u
    disc = wu ** 2 - np.einsum("ij,ij->i", w, w) + np.asarray(d) ** 2
    return np.where(disc >= 0, wu + np.sqrt(np.clip(disc, 0, None)), -np.inf)


class Monomer:
    def __init__(self, smiles: str):
        z, x, charge = from_smiles(smiles, seed=MONOMER_SEED)
        if (int(z.sum()) - charge) % 2:
            raise DataError(f"monomer {smiles}: odd number of electrons; the dimers are closed shell")
        x, info = xtb_optimise(z, x, charge)
        self.smiles, self.z, self.charge = smiles, z, charge
        self.x = x - _com(z, x)
        self.energy = xtb_singlepoint(z, self.x, charge, where=f"monomer {smiles}")["energy"]
        self.info = info


class DimerSource(GeneratedSource):
    """Frames of the dimer curves (module docstring)."""

    dataset = "dimers"
    fit_references = True

    def __init__(self, *, pairs: Sequence[str] | None = None, curves: int = 8, points: int = 12, seed: int = 0,
                 contact: float = 0.7, max_distance: float = 15.0, accuracy: float = 1.0, split_by: str = "curve"):
        names = list(PAIRS) if pairs is None else [p.strip() for p in pairs if p.strip()]
        unknown = [p for p in names if p not in ALL_PAIRS]
        if not names or unknown:
            raise DataError(f"unknown dimer pair(s) {', '.join(unknown) or '(none given)'}; known: "
                            f"{', '.join(ALL_PAIRS)}")
        if len(set(names)) != len(names):
            raise DataError(f"dimer pairs given twice: {', '.join(names)}")
        for label, value in (("curves", curves), ("points", points)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise DataError(f"{label} = {value!r} must be a positive integer")
        if points < 2:
            raise DataError(f"points = {points} must be at least 2 (contact and {max_distance} Å)")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise DataError(f"seed = {seed!r} must be a non-negative integer")
        if not (np.isfinite(contact) and 0.3 <= contact <= 1.5):
            raise DataError(f"contact = {contact} is out of range (0.3-1.5 times the van der Waals contact)")
        if not (np.isfinite(max_distance) and 3.0 <= max_distance <= 100.0):
            raise DataError(f"max_distance = {max_distance} Å is out of range (3-100 Å)")
        if not (np.isfinite(accuracy) and accuracy > 0):
            raise DataError(f"accuracy = {accuracy} must be positive")
        if split_by not in ("curve", "frame"):
            raise DataError(f"split_by = {split_by!r}: choose 'curve' or 'frame'")
        super().__init__("dimers", int(curves) * len(names) * int(points))
        self.pairs, self.curves, self.points = names, int(curves), int(points)
        self.seed, self.contact, self.max_distance = int(seed), float(contact), float(max_distance)
        self.accuracy, self.split_by = float(accuracy), split_by
        self._monomers: dict[str, Monomer] = {}
        self._curve_cache: dict[tuple[int, str], dict[str, Any]] = {}
        tblite_version()  # a clear error before anything is written when tblite is missing

    def monomer(self, smiles: str) -> Monomer:
        if smiles not in self._monomers:
            self._monomers[smiles] = Monomer(smiles)
        return self._monomers[smiles]

    def locate(self, i: int) -> tuple[int, str, int]:
        """(curve, pair, point) of frame ``i``."""
        c, rest = divmod(i, len(self.pairs) * self.points)
        p, k = divmod(rest, self.points)
        return c, self.pairs[p], k

    def curve(self, c: int, pair: str) -> dict[str, Any]:
        """The orientation and distance grid of curve ``c`` of ``pair``."""
        key = (c, pair)
        if key not in self._curve_cache:
            from ase.data import vdw_radii

            spec = ALL_PAIRS[pair]
            A, B = self.monomer(spec.a), self.monomer(spec.b)
            rng = frame_rng(self.seed, zlib.crc32(pair.encode()), c)
            xa = A.x @ rotation(rng).T
            xb = B.x @ rotation(rng).T
            u = rng.standard_normal(3)
            u /= np.linalg.norm(u)
            w = (xa[:, None, :] - xb[None, :, :]).reshape(-1, 3)
            ra, rb = np.nan_to_num(vdw_radii[A.z], nan=2.0), np.nan_to_num(vdw_radii[B.z], nan=2.0)
            c_ij = self.contact * (ra[:, None] + rb[None, :]).reshape(-1)
            t_contact = float(np.max(_far_roots(w, u, c_ij)))
            d0 = float(np.min(np.linalg.norm(w - t_contact * u, axis=1)))
            if d0 >= self.max_distance:
                raise DataError(f"{pair}: contact at {d0:.2f} Å is beyond max_distance {self.max_distance} Å")
            grid = d0 * (self.max_distance / d0) ** (np.arange(self.points) / (self.points - 1))
            t = np.array([float(np.max(_far_roots(w, u, d))) for d in grid])
            t[0] = t_contact
            self._curve_cache[key] = {"A": A, "B": B, "xa": xa, "xb": xb, "u": u, "d": grid, "t": t}
        return self._curve_cache[key]

    def structure(self, i: int) -> Structure:
        c, pair, k = self.locate(i)
        cv = self.curve(c, pair)
        A, B = cv["A"], cv["B"]
        z = np.concatenate([A.z, B.z])
        xb = cv["xb"] + cv["t"][k] * cv["u"]
        pos = np.concatenate([cv["xa"], xb])
        dmin = float(np.min(np.linalg.norm(cv["xa"][:, None] - xb[None], axis=-1)))
        charge = A.charge + B.charge
        where = self.where(i) + f" ({pair}, curve {c}, d = {dmin:.3f} Å)"
        s = xtb_structure(z, pos, charge, 0, self.accuracy, id=f"{pair}/{c}/{k}", where=where, meta={
            "pair": pair, "curve": c, "point": k, "monomer_charges": [A.charge, B.charge], "atoms_in_A": len(A.z),
            "min_distance_A": dmin, "centre_distance_A": float(cv["t"][k])})
        s.meta["interaction_energy_eV"] = s.energy - A.energy - B.energy
        s.meta["xtb_charge_on_A"] = float(s.charges[:len(A.z)].sum())
        return s

    def splits(self, n: int, seed: int):
        if self.split_by == "frame":
            return frame_split(n, seed)
        groups = [self.locate(i)[:2] for i in range(n)]
        return group_split(groups, seed, "curve")

    def options(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "points": self.points, "generator_seed": self.seed, "contact": self.contact,
                "max_distance_A": self.max_distance, "accuracy": self.accuracy, "split_by": self.split_by,
                "tblite": package_version("tblite"), "rdkit": package_version("rdkit"),
                "monomer_embed_seed": MONOMER_SEED}

    def metadata(self) -> dict[str, Any]:
        monomers = {}
        for p in self.pairs:
            for smi in (ALL_PAIRS[p].a, ALL_PAIRS[p].b):
                m = self.monomer(smi)
                monomers[smi] = {"charge": m.charge, "energy_eV": m.energy, "z": m.z.tolist(),
                                 "positions_A": m.x.tolist(), "optimisation": m.info}
        return {"name": "charged and polar dimers", "level_of_theory": xtb_theory(), "target": "energy",
                "periodic": False,
                "generator": {"command": "phizoo data generate dimers", "phizoo": phizoo_version(), **self.options(),
                              "curves": self.curves, "pairs_described": {p: {"label": ALL_PAIRS[p].label,
                                                                            "kind": ALL_PAIRS[p].kind,
                                                                            "smiles": [ALL_PAIRS[p].a, ALL_PAIRS[p].b]}
                                                                        for p in self.pairs},
                              "frame_order": "curve-major: for curve c, for pair p, for point k",
                              "monomers": monomers}}


def generate_dimers(output: str | Path, *, curves: int = 8, points: int = 12, seed: int = 0,
                    pairs: Sequence[str] | None = None, overwrite: bool = False, resume: bool = True,
                    progress: bool = True, on_record: Callable[[int], None] | None = None, **options) -> Path:
    """Write the dimer curves (module docstring) to the LMDB database ``output``: ``curves``
    random orientations of each of ``pairs`` (default :data:`PAIRS`), ``points`` distances each.
    ``options``: ``contact``, ``max_distance`` (Å), ``accuracy`` (tblite), ``split_by``."""
    source = DimerSource(pairs=pairs, curves=curves, points=points, seed=seed, **options)
    return write(source, output, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                 on_record=on_record)
