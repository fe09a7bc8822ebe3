"""ASE calculator for any phizoo potential: energy, forces, stress (periodic), charges and dipole."""
from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data


class PhiZooCalculator(Calculator):
    """``atoms.calc = PhiZooCalculator(model)``.

    Energies in eV (float64, element references included), forces in eV/Å, stress in eV/Å³
    (ASE's sign and Voigt order; periodic ``Atoms`` with all three directions periodic), charges
    in e (``get_charges``: the Coulomb head's charges when the model has one, else the Φ-Module's
    ρ, else zeros), dipole in e·Å (``get_dipole_moment``: Σ q_i (r_i − centre) of the Coulomb
    charges; models with a Coulomb head only). ``results`` also holds the energy split of models
    with a long-range head: ``energy_short_range``, ``electrostatic_energy`` (Φ),
    ``coulomb_energy`` (eV), and ``phi_charges`` / ``coulomb_charges`` when both heads are present. Periodic and partly periodic ``Atoms``
    are supported (``atoms.cell``, ``atoms.pbc``; every image within the cutoff is seen).

    Total charge and spin multiplicity: ``atoms.info["charge"]`` and ``atoms.info["spin"]``
    (multiplicity 2S+1) when set, else the calculator's ``total_charge`` / ``spin`` (default:
    neutral, lowest multiplicity). A model trained without them (``charge_spin: false``) refuses
    a charged or high-spin system rather than ignoring it.

    Args:
        model: a ``phizoo`` Potential (``phizoo.load_model`` / ``build_model``).
        device: torch device for the evaluation. total_charge: net charge (e). spin: multiplicity.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges", "dipole"]

    def __init__(self, model, device: str | torch.device = "cpu", total_charge: float = 0.0,
                 spin: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.total_charge = float(total_charge)
        self.spin = None if spin is None else int(spin)

    def _data(self, atoms) -> Data:
        dev = self.device
        charge = float(atoms.info.get("charge", self.total_charge))
        spin = atoms.info.get("spin", self.spin)
        data = Data(z=torch.as_tensor(atoms.numbers, dtype=torch.long, device=dev),
                    # float64 positions: the model forms interatomic vectors in float64 before its cast
                    pos=torch.as_tensor(atoms.positions, dtype=torch.float64, device=dev),
                    total_charge=torch.tensor([charge], dtype=torch.float64, device=dev))
        if spin is not None:
            data.spin = torch.tensor([float(spin)], dtype=torch.float64, device=dev)
        if atoms.pbc.any():
            data.cell = torch.as_tensor(np.asarray(atoms.cell), dtype=torch.float64, device=dev).reshape(1, 3, 3)
            data.pbc = torch.as_tensor(atoms.pbc, dtype=torch.bool, device=dev).reshape(1, 3)
        return data

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        stress = "stress" in properties
        if stress and not self.atoms.pbc.all():
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions (atoms.pbc)")
        out = self.model(self._data(self.atoms), compute_forces=True, create_graph=False, compute_stress=stress)
        energy = float(out["energy"].detach()[0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().cpu().double().numpy()
        if stress:
            s = out["stress"].detach().cpu().double().numpy()[0]
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        charges = out.get("coulomb_charges", out.get("charges"))
        self.results["charges"] = (charges.detach().cpu().double().numpy() if charges is not None
                                   else np.zeros(len(self.atoms)))
        if "coulomb_charges" in out and "phi" in out:
            self.results["coulomb_charges"] = self.results["charges"]
            self.results["phi_charges"] = out["charges"].detach().cpu().double().numpy()
        if "dipole" in out:
            self.results["dipole"] = out["dipole"].detach().cpu().double().numpy()[0]
        for key in ("energy_short_range", "electrostatic_energy", "coulomb_energy"):
            if key in out:
                self.results[key] = float(out[key].detach()[0])
