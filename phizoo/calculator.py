"""ASE calculator for any phizoo potential: energy, forces and (Φ models) charges."""
from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from torch_geometric.data import Data


class PhiZooCalculator(Calculator):
    """``atoms.calc = PhiZooCalculator(model)``.

    Energies in eV (float64, element references included), forces in eV/Å, charges in e
    (the Φ-Module's ρ; zeros for models without Φ). Non-periodic systems only: the cell
    and ``pbc`` are ignored, and a periodic ``Atoms`` is refused.

    Args:
        model: a ``phizoo`` Potential (``phizoo.load_model`` / ``build_model``).
        device: torch device for the evaluation. total_charge: net charge of the system (e).
    """

    implemented_properties = ["energy", "free_energy", "forces", "charges"]

    def __init__(self, model, device: str | torch.device = "cpu", total_charge: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.total_charge = float(total_charge)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise ValueError("PhiZooCalculator supports non-periodic systems only (atoms.pbc is set)")
        dtype = self.model.dtype
        data = Data(
            z=torch.as_tensor(self.atoms.numbers, dtype=torch.long, device=self.device),
            pos=torch.as_tensor(self.atoms.positions, dtype=dtype, device=self.device),
            total_charge=torch.tensor([self.total_charge], dtype=dtype, device=self.device),
        )
        out = self.model(data, compute_forces=True, create_graph=False)
        energy = float(out["energy"].detach()[0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = out["forces"].detach().cpu().double().numpy()
        charges = out.get("charges")
        self.results["charges"] = (charges.detach().cpu().double().numpy() if charges is not None
                                   else np.zeros(len(self.atoms)))
