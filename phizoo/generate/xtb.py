"""GFN2-xTB energies, forces and charges from tblite, with the SCC wavefunction kept between steps.

Units: tblite works in atomic units (Bohr, Hartree, Hartree/Bohr); conversions use
``ase.units`` (``Bohr``, ``Hartree``, ``kcal``, ``mol``). Frame ``i`` holds the positions after
MD step ``equilibration + (i + 1) * stride`` and the energy, forces and charges computed at
exactly those positions.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
from ase import units

from .optional import _import

KCAL_MOL = units.kcal / units.mol          # eV per kcal/mol
HARTREE_KCAL = units.Hartree / KCAL_MOL    # kcal/mol per Hartree
GRAD_TO_EV_A = units.Hartree / units.Bohr  # (Hartree/Bohr) -> eV/Å


class XTB:
    """GFN2-xTB energy, forces and charges of one molecule, reusing the last SCC solution as
    the starting guess (tblite ``Calculator.update`` + ``singlepoint(previous result)``)."""

    def __init__(self, z: np.ndarray, pos: np.ndarray, accuracy: float = 1.0, charge: int = 0):
        interface = _import("tblite.interface", "tblite", "GFN2-xTB molecular dynamics")
        self._Result = interface.Result
        self.calc = interface.Calculator("GFN2-xTB", np.asarray(z, dtype=np.int64),
                                         np.asarray(pos, dtype=np.float64) / units.Bohr, charge=float(charge))
        self.calc.set("verbosity", 0)
        self.calc.set("accuracy", float(accuracy))
        self.result = None  # last converged result: the next SCC's starting guess

    def __call__(self, pos: np.ndarray, where: str = "") -> tuple[float, np.ndarray, np.ndarray]:
        """(energy Hartree, gradient Hartree/Bohr [N,3], charges e [N]) at ``pos`` (Å)."""
        self.calc.update(np.asarray(pos, dtype=np.float64) / units.Bohr)
        try:
            res = self.calc.singlepoint(self.result, copy=True) if self.result is not None else self.calc.singlepoint()
        except RuntimeError as err:
            try:  # a bad starting guess: once more from the atomic guess
                res = self.calc.singlepoint()
            except RuntimeError:
                raise RuntimeError(f"GFN2-xTB failed{' at ' + where if where else ''}: {err}") from None
        e, g, q = float(res.get("energy")), np.array(res.get("gradient")), np.array(res.get("charges"))
        if not (np.isfinite(e) and np.isfinite(g).all() and np.isfinite(q).all()):
            raise RuntimeError(f"GFN2-xTB returned non-finite values{' at ' + where if where else ''}")
        self.result = res
        return e, g, q

    def save_wavefunction(self) -> bytes:
        if self.result is None:
            return b""
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "wf.npz")
            self.result.save(f)
            with open(f, "rb") as fh:
                return fh.read()

    def load_wavefunction(self, blob: bytes) -> None:
        if not blob:
            self.result = None
            return
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "wf.npz")
            with open(f, "wb") as fh:
                fh.write(blob)
            res = self._Result()
            res.load(f)
        self.result = res
