r"""Na9Cl8⁺ / Na8Cl8: the sodium-chloride cluster benchmark of Ko et al. (4G-HDNNP, Nat. Commun.
12, 398 (2021)), recomputed with GFN2-xTB (tblite).

The two clusters differ by one neutral Na atom at one corner. A short-range model sees the
atoms at the far corner, ~8 Å away, in identical surroundings in both, yet their charges and
forces change with the removed atom and the total charge.

Reference (:meth:`NaClClusterSource.reference`): a 3 × 3 × 2 block of rock salt (Na9Cl9,
spacing 2.82 Å) without the Cl atom at one corner, i.e. Na9Cl8⁺. It is optimised with
GFN2-xTB at charge +1 (ASE BFGS, max |F| < 0.005 eV/Å). The removed Na is the Na atom farthest
from the Cl vacancy, at the opposite corner.

Geometry g (``numpy.random.default_rng([seed, crc32("nacl"), g])``): the reference plus
Gaussian noise of ``noise`` Å on every coordinate (0.1 Å, about the thermal displacement of
the ions near 500 K), a random rotation, the geometric centre of the 17 atoms at the origin.
Frame 2g is Na9Cl8⁺ (17 atoms, total charge +1); frame 2g + 1 is the same positions without the
removed Na, i.e. Na8Cl8 (16 atoms, charge 0). The 16 shared atoms have bit-identical positions in
both frames, and both frames are in the same split (splits by geometry). Both species have an
even electron count: singlets.

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
from .common import (GeneratedSource, check_seed_and_accuracy, frame_rng, group_split, package_version,
                     phizoo_version, rotation, tblite_version, unpaired_electrons, write, xtb_optimise,
                     xtb_structure, xtb_theory)

NA_Z, CL_Z = 11, 17
SPACING = 2.82  # Å, the Na–Cl distance of the rock-salt crystal
BLOCK = (3, 3, 2)
SPECIES = {"Na9Cl8+": 1, "Na8Cl8": 0}


def rock_salt_block(shape: tuple[int, int, int] = BLOCK, spacing: float = SPACING) -> tuple[np.ndarray, np.ndarray]:
    """(z, positions Å) of a rock-salt block of ``shape`` sites; Na where i + j + k is even."""
    ijk = np.array([(i, j, k) for i in range(shape[0]) for j in range(shape[1]) for k in range(shape[2])])
    z = np.where(ijk.sum(1) % 2 == 0, NA_Z, CL_Z).astype(np.int64)
    return z, ijk * float(spacing)


class NaClClusterSource(GeneratedSource):
    """Na9Cl8⁺ / Na8Cl8 pairs of frames (module docstring)."""

    dataset = "nacl"
    fit_references = True

    def __init__(self, geometries: int = 500, *, seed: int = 0, noise: float = 0.1, accuracy: float = 1.0):
        check_seed_and_accuracy(seed, accuracy)
        if not (np.isfinite(noise) and 0 <= noise <= 0.5):
            raise DataError(f"noise = {noise} Å is out of range (0-0.5 Å)")
        if isinstance(geometries, bool) or int(geometries) != geometries or geometries < 1:
            raise DataError(f"geometries = {geometries!r} must be a positive integer")
        super().__init__("Na9Cl8+/Na8Cl8", 2 * int(geometries))
        self.seed, self.noise, self.accuracy = int(seed), float(noise), float(accuracy)
        self._ref: tuple[np.ndarray, np.ndarray, int, dict] | None = None
        tblite_version()

    def reference(self) -> tuple[np.ndarray, np.ndarray, int, dict]:
        """(z of Na9Cl8⁺, its optimised positions Å centred at the origin, index of the Na atom that
        Na8Cl8 lacks, optimisation record)."""
        if self._ref is None:
            z, x = rock_salt_block()
            corner = np.array([0, 0, BLOCK[2] - 1]) * SPACING
            vacancy = int(np.flatnonzero((z == CL_Z) & np.all(np.isclose(x, corner), axis=1))[0])
            z, x = np.delete(z, vacancy), np.delete(x, vacancy, axis=0)
            x, info = xtb_optimise(z, x, SPECIES["Na9Cl8+"])
            na = np.flatnonzero(z == NA_Z)
            removed = int(na[np.argmax(np.linalg.norm(x[na] - corner, axis=1))])
            self._ref = (z, x - x.mean(0), removed, info)
        return self._ref

    def structure(self, i: int) -> Structure:
        g, k = divmod(i, 2)
        species = "Na9Cl8+" if k == 0 else "Na8Cl8"
        z, x0, removed, _ = self.reference()
        rng = frame_rng(self.seed, zlib.crc32(b"nacl"), g)
        x = x0 + self.noise * rng.standard_normal(x0.shape)
        x = (x - x.mean(0)) @ rotation(rng).T
        if k == 1:
            z, x = np.delete(z, removed), np.delete(x, removed, axis=0)
        charge = SPECIES[species]
        return xtb_structure(z, x, charge, unpaired_electrons(z, charge), self.accuracy, id=f"nacl/{g}/{species}",
                             where=self.where(i) + f" (geometry {g}, {species})",
                             meta={"geometry": g, "species": species})

    def splits(self, n: int, seed: int):
        return group_split([i // 2 for i in range(n)], seed, "geometry")

    def options(self) -> dict[str, Any]:
        return {"generator_seed": self.seed, "noise_A": self.noise, "accuracy": self.accuracy,
                "block": list(BLOCK), "spacing_A": SPACING, "species_charge": dict(SPECIES),
                "tblite": package_version("tblite")}

    def metadata(self) -> dict[str, Any]:
        z, x, removed, info = self.reference()
        return {"name": "Na9Cl8+ / Na8Cl8 clusters (the same positions without one corner Na)",
                "level_of_theory": xtb_theory(), "target": "energy", "periodic": False,
                "generator": {"command": "phizoo data generate nacl", "phizoo": phizoo_version(), **self.options(),
                              "reference": {"z": z.tolist(), "positions_A": x.tolist(), "charge": 1,
                                            "removed_na_index": removed, "optimisation": info},
                              "frame_order": "frame 2g: geometry g, Na9Cl8+ (charge +1); frame 2g+1: the same "
                                             "positions without atom removed_na_index, Na8Cl8 (charge 0)"}}


def generate_nacl(output: str | Path, geometries: int = 500, *, seed: int = 0, overwrite: bool = False,
                  resume: bool = True, progress: bool = True, on_record: Callable[[int], None] | None = None,
                  noise: float = 0.1, accuracy: float = 1.0) -> Path:
    """Write ``2 × geometries`` Na9Cl8⁺/Na8Cl8 frames (module docstring) to the LMDB database ``output``."""
    source = NaClClusterSource(geometries, seed=seed, noise=noise, accuracy=accuracy)
    return write(source, output, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                 on_record=on_record)
