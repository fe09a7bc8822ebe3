r"""Ag3⁺/Ag3⁻ and C10H2/C10H3⁺: the charge-state benchmarks of Ko et al. (4G-HDNNP, Nat. Commun.
12, 398 (2021)), recomputed with GFN2-xTB (tblite).

**Ag3⁺/Ag3⁻** (:func:`generate_ag3`). Random silver trimers, each computed twice, with total
charge +1 and −1 (identical positions): a model that does not know the total charge cannot
tell the two apart, whose energies differ by ~16 eV. Geometry g: two bond lengths
:math:`r_{12}, r_{13}` uniform in [2.4, 3.4] Å and the angle between them uniform in [40°,
180°], redrawn while :math:`r_{23}` < 2.4 Å (equilateral, isosceles, bent and linear trimers:
Ag3⁺ prefers the triangle, Ag3⁻ the linear chain), randomly rotated, centre of mass at the
origin; ``numpy.random.default_rng([seed, crc32("ag3"), g])``. Frames 2g (+1) and 2g + 1 (−1);
both in the same split (splits by geometry). Electrons: 3 × 11 valence ∓ 1, even: singlets.
Electronic temperature 2000 K (Fermi smearing; the energy is the electronic free energy and the
forces its gradient, checked by finite differences): near-equilateral Ag3⁻ has a degenerate
frontier level and at tblite's default 300 K its SCC fails to converge for about 1 trimer in
200 (measured: 2 of 400 frames at 300 K, 1 at 1000 K, none at 2000 K or 5000 K).

**C10H2/C10H3⁺** (:func:`generate_carbon_chains`). The linear polyyne H–(C≡C)5–H and its
terminally protonated cation H2C=C⁺–(C≡C)4–H (SMILES ``C#CC#CC#CC#CC#C``,
``C=[C+]C#CC#CC#CC#C``; RDKit, then GFN2-xTB optimisation). Protonating one end changes the
charges at the other, ~13 Å away, where the local environment is unchanged: a purely
non-local effect. Frames alternate: even frames C10H2, odd frames C10H3⁺, the k-th of each
species drawn with ``default_rng([seed, crc32(species), k])`` as the optimised structure
(principal axis along the chain) plus thermal-like distortions: Gaussian noise of ``noise`` Å
(0.02, about the thermal bond-length spread at 1000 K) on every coordinate and, in each of the
two directions perpendicular to the chain axis, a bend :math:`\sum_{m=1}^{3} a_m \sin(mπs)`
with :math:`a_m ∼ N(0, (b/m)^2)`, ``bend`` b = 0.2 Å, s ∈ [0, 1] the position along the chain;
then a random rotation.

Every frame: GFN2-xTB single point (energy eV, forces eV/Å, Mulliken charges e, dipole about
the geometric centre e·Å), total charge and spin multiplicity (1) stored.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...data.convert import Structure
from ...data.errors import DataError
from .common import (GeneratedSource, check_seed_and_accuracy, frame_rng, frame_split, from_smiles, group_split,
                     package_version, phizoo_version, rotation, tblite_version, unpaired_electrons, write,
                     xtb_optimise, xtb_structure, xtb_theory)

AG_Z = 47
BOND_RANGE = (2.4, 3.4)   # Å
ANGLE_RANGE = (40.0, 180.0)  # degrees
MIN_BOND = 2.4
AG3_ELECTRONIC_TEMPERATURE = 2000.0  # K
CHAINS = {"C10H2": ("C#CC#CC#CC#CC#C", 0), "C10H3+": ("C=[C+]C#CC#CC#CC#C", 1)}


def ag3_geometry(seed: int, g: int) -> tuple[np.ndarray, dict[str, float]]:
    """Positions (Å, centre at the origin) of trimer ``g`` and its (r12, r13, r23, angle)."""
    rng = frame_rng(seed, zlib.crc32(b"ag3"), g)
    while True:
        r12, r13 = rng.uniform(*BOND_RANGE, size=2)
        theta = np.radians(rng.uniform(*ANGLE_RANGE))
        p3 = r13 * np.array([np.cos(theta), np.sin(theta), 0.0])
        r23 = float(np.linalg.norm(p3 - [r12, 0.0, 0.0]))
        if r23 >= MIN_BOND:
            break
    x = np.array([[0.0, 0.0, 0.0], [r12, 0.0, 0.0], p3])
    x = (x - x.mean(0)) @ rotation(rng).T
    return x, {"r12_A": float(r12), "r13_A": float(r13), "r23_A": r23, "angle_deg": float(np.degrees(theta))}


class Ag3Source(GeneratedSource):
    """Ag3⁺/Ag3⁻ pairs of frames (module docstring)."""

    dataset = "ag3"
    fit_references = False

    def __init__(self, geometries: int = 500, *, seed: int = 0, accuracy: float = 1.0,
                 electronic_temperature: float = AG3_ELECTRONIC_TEMPERATURE):
        check_seed_and_accuracy(seed, accuracy)
        if not (np.isfinite(electronic_temperature) and 0 < electronic_temperature <= 50000):
            raise DataError(f"electronic_temperature = {electronic_temperature} K is out of range (0-50000 K)")
        self.electronic_temperature = float(electronic_temperature)
        if isinstance(geometries, bool) or int(geometries) != geometries or geometries < 1:
            raise DataError(f"geometries = {geometries!r} must be a positive integer")
        super().__init__("Ag3+/Ag3-", 2 * int(geometries))
        self.seed, self.accuracy = int(seed), float(accuracy)
        tblite_version()

    def structure(self, i: int) -> Structure:
        g, k = divmod(i, 2)
        charge = 1 if k == 0 else -1
        x, shape = ag3_geometry(self.seed, g)
        z = np.full(3, AG_Z, dtype=np.int64)
        return xtb_structure(z, x, charge, unpaired_electrons(z, charge), self.accuracy, id=f"ag3/{g}/{'+' if charge > 0 else '-'}",
                             where=self.where(i) + f" (geometry {g}, charge {charge:+d})",
                             meta={"geometry": g, **shape}, electronic_temperature=self.electronic_temperature)

    def splits(self, n: int, seed: int):
        return group_split([i // 2 for i in range(n)], seed, "geometry")

    def options(self) -> dict[str, Any]:
        return {"generator_seed": self.seed, "accuracy": self.accuracy,
                "electronic_temperature_K": self.electronic_temperature, "bond_range_A": list(BOND_RANGE),
                "angle_range_deg": list(ANGLE_RANGE), "min_bond_A": MIN_BOND, "tblite": package_version("tblite")}

    def metadata(self) -> dict[str, Any]:
        return {"name": "Ag3+/Ag3- (same geometries, total charge +1 and -1)",
                "level_of_theory": xtb_theory(self.electronic_temperature),
                "target": "energy", "periodic": False,
                "generator": {"command": "phizoo data generate ag3", "phizoo": phizoo_version(), **self.options(),
                              "frame_order": "frame 2g: geometry g, charge +1; frame 2g+1: the same positions, "
                                             "charge -1"},
                "element_references_note": "not fitted: every frame has the same composition"}


class CarbonChainSource(GeneratedSource):
    """C10H2 / C10H3⁺ frames (module docstring)."""

    dataset = "carbon-chains"
    fit_references = True

    def __init__(self, frames: int = 1000, *, seed: int = 0, noise: float = 0.02, bend: float = 0.2,
                 accuracy: float = 1.0):
        check_seed_and_accuracy(seed, accuracy)
        for label, value in (("noise", noise), ("bend", bend)):
            if not (np.isfinite(value) and 0 <= value <= 1.0):
                raise DataError(f"{label} = {value} Å is out of range (0-1 Å)")
        super().__init__("C10H2/C10H3+", frames)
        self.seed, self.noise, self.bend, self.accuracy = int(seed), float(noise), float(bend), float(accuracy)
        self._refs: dict[str, tuple[np.ndarray, np.ndarray, int, dict]] = {}
        tblite_version()

    def reference(self, species: str) -> tuple[np.ndarray, np.ndarray, int, dict]:
        """(z, optimised positions with the chain along x, charge, optimisation record)."""
        if species not in self._refs:
            smiles, _ = CHAINS[species]
            z, x, charge = from_smiles(smiles, seed=42)
            x, info = xtb_optimise(z, x, charge)
            x = x - x.mean(0)
            axes = np.linalg.svd(x[z == 6] - x[z == 6].mean(0))[2]
            if np.linalg.det(axes) < 0:
                axes[2] *= -1
            self._refs[species] = (z, x @ axes.T, charge, info)
        return self._refs[species]

    def structure(self, i: int) -> Structure:
        species = "C10H2" if i % 2 == 0 else "C10H3+"
        k = i // 2
        z, x0, charge, _ = self.reference(species)
        rng = frame_rng(self.seed, zlib.crc32(species.encode()), k)
        s = (x0[:, 0] - x0[:, 0].min()) / np.ptp(x0[:, 0])
        x = x0 + self.noise * rng.standard_normal(x0.shape)
        m = np.arange(1, 4)
        for axis in (1, 2):
            a = rng.standard_normal(3) * self.bend / m
            x[:, axis] += np.sin(np.pi * m[None, :] * s[:, None]) @ a
        x = x @ rotation(rng).T
        return xtb_structure(z, x, charge, unpaired_electrons(z, charge), self.accuracy, id=f"{species}/{k}",
                             where=self.where(i) + f" ({species} {k})", meta={"species": species, "sample": k})

    def splits(self, n: int, seed: int):
        return frame_split(n, seed)

    def options(self) -> dict[str, Any]:
        return {"generator_seed": self.seed, "noise_A": self.noise, "bend_A": self.bend, "accuracy": self.accuracy,
                "species": {k: {"smiles": v[0], "charge": v[1]} for k, v in CHAINS.items()},
                "tblite": package_version("tblite"), "rdkit": package_version("rdkit")}

    def metadata(self) -> dict[str, Any]:
        refs = {}
        for sp in CHAINS:
            z, x, charge, info = self.reference(sp)
            refs[sp] = {"z": z.tolist(), "positions_A": x.tolist(), "charge": charge, "optimisation": info}
        return {"name": "C10H2 / C10H3+ carbon chains", "level_of_theory": xtb_theory(), "target": "energy",
                "periodic": False,
                "generator": {"command": "phizoo data generate carbon-chains", "phizoo": phizoo_version(),
                              **self.options(), "references": refs,
                              "frame_order": "even frames C10H2 (sample i/2), odd frames C10H3+ (sample (i-1)/2)"}}


def generate_ag3(output: str | Path, geometries: int = 500, *, seed: int = 0, overwrite: bool = False,
                 resume: bool = True, progress: bool = True, on_record: Callable[[int], None] | None = None,
                 accuracy: float = 1.0, electronic_temperature: float = AG3_ELECTRONIC_TEMPERATURE) -> Path:
    """Write ``2 × geometries`` Ag3⁺/Ag3⁻ frames (module docstring) to the LMDB database ``output``."""
    source = Ag3Source(geometries, seed=seed, accuracy=accuracy, electronic_temperature=electronic_temperature)
    return write(source, output, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                 on_record=on_record)


def generate_carbon_chains(output: str | Path, frames: int = 1000, *, seed: int = 0, overwrite: bool = False,
                           resume: bool = True, progress: bool = True,
                           on_record: Callable[[int], None] | None = None, **options) -> Path:
    """Write ``frames`` C10H2/C10H3⁺ frames (module docstring) to the LMDB database ``output``;
    ``options``: ``noise``, ``bend`` (Å), ``accuracy``."""
    source = CarbonChainSource(frames, seed=seed, **options)
    return write(source, output, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                 on_record=on_record)
