"""Figures of the Φ-Module page (docs/phi-module.md), written to docs/figures/.

    OMP_NUM_THREADS=1 .venv/bin/python docs/figures.py      # ~10 s on one CPU thread

1. ``spectrum.png``: the spectrum of the weighted graph Laplacian ``L`` of Ac-Ala3-NHMe (the
   radius graph and edge weights of a ``cpu``-preset Φ model) with the continuous filter
   ``f(λ) = 1/(1 + λ/μ)`` at the initial μ overlaid, and the paper's "k lowest modes".
2. ``contact_scan.png``: the energy of two molecules brought into contact, continuous vs paper
   formulation, the same ``test``-preset PaiNN backbone with the same (randomised) weights.
   The paper formulation counts ``k`` modes per connected component, so its energy jumps where
   the two molecules' graphs join (gap = cutoff); the continuous one is smooth.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.io import read  # noqa: E402
from torch_geometric.data import Batch, Data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.molecules: the contact scan of the shared test suite

import phizoo  # noqa: E402
from phizoo.nn.graph import build_graph  # noqa: E402
from phizoo.heads.phi.laplacian import edge_weights  # noqa: E402
from tests.molecules import approaching_pair  # noqa: E402

OUT = ROOT / "docs" / "figures"
STRUCTURE = ROOT / "phizoo" / "data" / "structures" / "Ac-Ala3-NHMe.xyz"


def phi_head(model):
    """The Φ head of a model built with ``phi=True`` (the module with a learned ``mu`` or ``k``)."""
    for m in model.modules():
        if m.__class__.__name__ in ("ContinuousPhi", "PaperPhi", "PhiModule"):
            return m
    raise LookupError("no Φ head in the model")


def spectrum() -> None:
    model = phizoo.build_model("painn", phi=True, preset="cpu").double()
    head = phi_head(model)
    atoms = read(STRUCTURE)
    pos = torch.tensor(atoms.positions)
    graph = build_graph(pos, torch.zeros(len(atoms), dtype=torch.long), head.cutoff, 1)
    w = edge_weights(graph.dist, head.cutoff, head.weight)
    n = len(atoms)
    W = torch.zeros(n, n, dtype=torch.float64)
    W[graph.edge_index[1], graph.edge_index[0]] = w
    L = torch.diag(W.sum(1)) - W
    lam = torch.linalg.eigvalsh(L).numpy()
    mu = float(head.mu.detach())
    floor = 1e-3  # λ₀ = 0 (one per connected component) is drawn here on the log axis
    lam_plot = np.maximum(lam, floor)
    grid = np.geomspace(floor, lam.max() * 1.05, 400)
    k = 9
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.vlines(lam_plot, 0, 1, color="0.75", lw=0.8, label=f"eigenvalues λᵢ of L ({n} atoms; λ₀ = 0 drawn at 10⁻³)")
    ax.vlines(lam_plot[:k], 0, 1, color="tab:orange", lw=1.6, label=f"paper: the k = {k} lowest modes pass")
    ax.plot(grid, 1 / (1 + grid / mu), color="tab:blue", lw=2, label=f"continuous: f(λ) = 1/(1 + λ/μ), μ = {mu:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("λ (units of the edge weights)")
    ax.set_ylabel("weight of mode in φ")
    ax.set_title("Ac-Ala3-NHMe: Laplacian spectrum and the Φ filters")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(OUT / "spectrum.png", dpi=120)
    plt.close(fig)


def as_data(name: str) -> Data:
    m = molecule(name)
    return Data(z=torch.tensor(m.numbers), pos=torch.tensor(m.positions - m.positions.mean(0)))


def contact_scan() -> None:
    a, b = as_data("CH3CH2OH"), as_data("H2O")
    gaps = np.linspace(1.6, 6.0, 221)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for formulation, color in (("continuous", "tab:blue"), ("paper", "tab:orange")):
        torch.manual_seed(0)
        model = phizoo.build_model("painn", phi=True, preset="test",
                                   phi_options={"formulation": formulation}).double()
        with torch.no_grad():  # randomised weights (as the shared test suite does), so Φ matters
            gen = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        model.eval()
        energies = []
        for g in gaps:
            out = model(Batch.from_data_list([approaching_pair(a, b, float(g))]))
            energies.append(float(out["energy"].detach()[0]))
        e = np.array(energies)
        ax.plot(gaps, e - e[-1], color=color, lw=1.8, label=f"{formulation} formulation")
        cutoff = phi_head(model).cutoff
    ax.axvline(cutoff, color="0.5", ls="--", lw=1)
    ax.text(cutoff, ax.get_ylim()[1], " cutoff: the graphs join", va="top", fontsize=8, color="0.3")
    ax.set_xlabel("closest distance between ethanol and water (Å)")
    ax.set_ylabel("E − E(6 Å)  (eV)")
    ax.set_title("Molecule-contact scan, PaiNN-Φ (test preset, randomised weights)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "contact_scan.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    spectrum()
    contact_scan()
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")))
