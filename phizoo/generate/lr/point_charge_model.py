r"""The classical model behind the random point-charge benchmark (:mod:`.point_charges`):
±1 e point charges with their exact periodic Coulomb energy (Ewald, torch-pme) plus a smooth
Born–Mayer repulsion between all pairs inside ``REPULSION_CUTOFF``; energies in eV, forces
in eV/Å, and an ASE calculator wrapping it for the MD that samples the configurations.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...data.errors import DataError
from .common import K_E, package_version

CATION_Z, ANION_Z = 11, 17
DENSITY = 0.0319          # ions / Å³ (molten NaCl, 1.55 g/cm³)
BORN_MAYER_A = 1200.0     # eV
BORN_MAYER_RHO = 0.317    # Å
REPULSION_CUTOFF = 4.5    # Å
EWALD_CUTOFF = 12.0       # Å
INSERTION_MIN_DISTANCE = 2.5  # Å


def _pairs(pos: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half neighbour list (i, j, integer shift S; r_ij = x_j − x_i + S·cell) within ``cutoff``,
    sorted (vesin, one thread)."""
    from vesin import NeighborList

    nl = NeighborList(cutoff=float(cutoff), full_list=False, n_threads=1)
    i, j, S = nl.compute(points=pos, box=cell, periodic=True, quantities="ijS")
    i, j, S = np.asarray(i, np.int64), np.asarray(j, np.int64), np.asarray(S, np.int64)
    # a fixed order: the summation order (hence every bit of the result) does not depend on vesin's
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    return i[order], j[order], S[order]


class PointChargeModel:
    """The exact classical model of the module docstring: Ewald Coulomb (torch-pme) plus a
    shifted-force Born–Mayer repulsion. Energies in eV, lengths in Å, charges in e."""

    def __init__(self, A: float = BORN_MAYER_A, rho: float = BORN_MAYER_RHO, repulsion_cutoff: float = REPULSION_CUTOFF,
                 ewald_cutoff: float = EWALD_CUTOFF):
        for label, value in (("A", A), ("rho", rho), ("repulsion_cutoff", repulsion_cutoff),
                             ("ewald_cutoff", ewald_cutoff)):
            if not (np.isfinite(value) and value > 0):
                raise DataError(f"{label} = {value} must be positive")
        self.A, self.rho, self.rc = float(A), float(rho), float(repulsion_cutoff)
        self.ewald_cutoff = float(ewald_cutoff)
        self.smearing = self.ewald_cutoff / 6.0
        self.lr_wavelength = self.smearing / 2.0

    def describe(self) -> dict[str, Any]:
        return {"coulomb": "Ewald summation, torch-pme EwaldCalculator", "k_e_eV_A": K_E,
                "ewald_real_space_cutoff_A": self.ewald_cutoff, "ewald_smearing_A": self.smearing,
                "ewald_lr_wavelength_A": self.lr_wavelength,
                "repulsion": "Born-Mayer A exp(-r/rho), shifted force at r_c, all pairs",
                "born_mayer_A_eV": self.A, "born_mayer_rho_A": self.rho, "repulsion_cutoff_A": self.rc,
                "torch_pme": package_version("torch-pme"), "vesin": package_version("vesin")}

    def compute(self, pos: np.ndarray, cell: np.ndarray, charges: np.ndarray, forces: bool = True) -> dict[str, Any]:
        """``energy``, ``coulomb``, ``repulsion`` (eV) and ``forces`` [N, 3] eV/Å of one cubic or
        triclinic periodic cell ``cell`` (rows = lattice vectors, Å)."""
        import torch
        import torchpme

        pos = np.asarray(pos, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        q = np.asarray(charges, dtype=np.float64)
        frac = np.linalg.solve(cell.T, pos.T).T
        wrapped = pos - np.floor(frac) @ cell
        i, j, S = _pairs(wrapped, cell, max(self.ewald_cutoff, self.rc))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.enable_grad():
                x = torch.tensor(wrapped, dtype=torch.float64, requires_grad=forces)
                c = torch.tensor(cell, dtype=torch.float64)
                qt = torch.tensor(q, dtype=torch.float64)
                ti, tj = torch.from_numpy(i), torch.from_numpy(j)
                vec = x[tj] - x[ti] + torch.from_numpy(S).to(torch.float64) @ c
                d = vec.norm(dim=-1)
                inside = d < self.ewald_cutoff
                potential = torchpme.CoulombPotential(smearing=self.smearing).to(dtype=torch.float64)
                calc = torchpme.EwaldCalculator(potential, lr_wavelength=self.lr_wavelength,
                                                full_neighbor_list=False).to(dtype=torch.float64)
                v = calc(charges=qt[:, None], cell=c, positions=x, neighbor_indices=torch.stack([ti, tj], 1)[inside],
                         neighbor_distances=d[inside])
                e_c = K_E * (qt * v[:, 0]).sum()
                r = d[d < self.rc]
                a, rho, rc = self.A, self.rho, self.rc
                at_rc = a * math.exp(-rc / rho)
                e_rep = (a * torch.exp(-r / rho) - at_rc + (r - rc) * (at_rc / rho)).sum()
                energy = e_c + e_rep
                out = {"energy": float(energy.detach()), "coulomb": float(e_c.detach()),
                       "repulsion": float(e_rep.detach())}
                if forces:
                    (g,) = torch.autograd.grad(energy, x)
                    out["forces"] = -g.numpy().copy()
        finally:
            torch.set_num_threads(threads)
        return out


def ewald_energy(pos: np.ndarray, cell: np.ndarray, charges: np.ndarray, ewald_cutoff: float = EWALD_CUTOFF) -> float:
    """Coulomb energy (eV) of point charges in a periodic cell (the model's :math:`E_\\mathrm{C}`)."""
    return PointChargeModel(ewald_cutoff=ewald_cutoff).compute(pos, cell, charges, forces=False)["coulomb"]


def _ase_calculator_class():
    from ase.calculators.calculator import Calculator, all_changes

    class PointChargeCalculator(Calculator):
        """ASE calculator of :class:`PointChargeModel`; charges from ``atoms.get_initial_charges()``.
        Results: ``energy``, ``free_energy``, ``forces`` and the parts ``coulomb_energy``,
        ``repulsion_energy`` (eV)."""

        implemented_properties = ["energy", "free_energy", "forces"]

        def __init__(self, model: PointChargeModel | None = None, **kwargs):
            super().__init__(**kwargs)
            self.model = model or PointChargeModel()

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            if not self.atoms.pbc.all():
                raise ValueError("PointChargeCalculator: the cell must be periodic in all three directions")
            r = self.model.compute(self.atoms.positions, self.atoms.cell.array, self.atoms.get_initial_charges())
            self.results = {"energy": r["energy"], "free_energy": r["energy"], "forces": r["forces"],
                            "coulomb_energy": r["coulomb"], "repulsion_energy": r["repulsion"]}

    return PointChargeCalculator


def __getattr__(name):  # the ASE calculator class, built on first use (ase imported lazily)
    if name == "PointChargeCalculator":
        return _ase_calculator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
