"""Training loss: energy + forces + the Φ terms.

    L = w_E · ℓ(ΔE [/ N]) + w_F · ℓ(ΔF) + λ_pde · pde_residual + λ_q · |Σρ − Q|
        + w_charges · ℓ(Δq) + w_dipole · ℓ(Δμ)

The last two (``loss.charges``, ``loss.dipole``) fit the Coulomb head's charges (e, per atom) and
dipole (e·Å, per molecule: the vector when the data holds [3] per structure, the magnitude |μ|
when it holds [1], as QM9 does) to reference values, where the batch carries ``charges`` /
``dipole``; a model without a Coulomb head refuses a non-zero weight.

ΔE is formed from the float64 totals (prediction incl. element references minus target)
and only then cast to the model dtype, so large total energies lose no precision.

Every term is a SUM over the local items divided by a normaliser (number of molecules or
force components) that the caller may pass for the global batch: under DDP each rank then
contributes exactly its share of the global-batch mean, and the averaged gradients equal
those of one process running the whole global batch.
"""
from __future__ import annotations

import math

import torch


def _elementwise(x: torch.Tensor, kind: str, delta: float) -> torch.Tensor:
    if kind == "mse":
        return x.pow(2)
    if kind == "l1":
        return x.abs()
    if kind == "huber":
        a = x.abs()
        return torch.where(a < delta, 0.5 * a.pow(2) / delta, a - 0.5 * delta)
    raise ValueError(f"unknown loss type {kind!r}")


def atoms_per_molecule(batch) -> torch.Tensor:
    b = getattr(batch, "batch", None)
    n = batch.z.shape[0]
    if b is None:
        return torch.tensor([n], device=batch.z.device)
    return torch.bincount(b, minlength=int(batch.num_graphs))


def energy_error(out: dict, batch) -> torch.Tensor:
    """Per-molecule prediction − target in float64 (eV)."""
    return out["energy"].double() - batch.energy.double().reshape(-1)


def dipole_error(out: dict, batch) -> torch.Tensor:
    """Predicted − reference dipole: [B, 3] e·Å for vector references ([3] per structure), [B] for
    magnitudes ([1] per structure: |μ_pred| − |μ_ref|)."""
    mu = out["dipole"]
    ref = batch.dipole.to(mu.dtype).reshape(-1)
    if ref.numel() == 3 * mu.shape[0]:
        return mu - ref.reshape(-1, 3)
    if ref.numel() == mu.shape[0]:
        return torch.linalg.vector_norm(mu, dim=-1) - ref
    raise ValueError(f"batch.dipole has {ref.numel()} values for {mu.shape[0]} structures (need 1 or 3 each)")


def compute_loss(out: dict, batch, weights: dict, dtype: torch.dtype, n_mol: float | None = None,
                 n_force: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted loss and its components (float, for logging).

    Args:
        out: model outputs; batch: the PyG batch with ``energy`` and optionally ``forces``.
        weights: the ``loss`` section of the training config.
        n_mol, n_force: normalisers (global molecules / force components of the step); default local counts.
    """
    kind, delta = weights.get("type", "mse"), float(weights.get("huber_delta", 0.01))
    natoms = atoms_per_molecule(batch)
    B = natoms.numel()
    n_mol = float(B) if n_mol is None else float(n_mol)
    parts: dict[str, torch.Tensor] = {}
    de = energy_error(out, batch)
    if weights.get("per_atom_energy", True):
        de = de / natoms.double()
    de = de.to(dtype)
    parts["energy"] = _elementwise(de, kind, delta).sum() / n_mol
    if weights.get("forces", 0.0) and "forces" in out and getattr(batch, "forces", None) is not None:
        df = out["forces"] - batch.forces.to(out["forces"].dtype)
        nf = float(df.numel()) if n_force is None else float(n_force)
        parts["forces"] = _elementwise(df, kind, delta).sum() / max(nf, 1.0)
    if weights.get("pde", 0.0):
        if "pde_residual" not in out:
            raise ValueError("loss.pde is set but this model has no PDE residual (the continuous Φ has ρ = Lφ "
                             "exactly, the base model no Φ): set loss.pde to 0")
        parts["pde"] = out["pde_residual"].to(dtype).sum() / n_mol
    if weights.get("charge", 0.0) and "charge_error" in out:
        parts["charge"] = out["charge_error"].to(dtype).abs().sum() / n_mol
    if weights.get("charges", 0.0) or weights.get("dipole", 0.0):
        if "coulomb_charges" not in out:
            raise ValueError("loss.charges / loss.dipole fit the Coulomb head's charges and dipole: build the model "
                             "with coulomb: true (model.coulomb) or set them to 0")
        if weights.get("charges", 0.0) and getattr(batch, "charges", None) is not None:
            dq = out["coulomb_charges"].to(dtype) - batch.charges.to(dtype).reshape(-1)
            n_at = float(dq.numel()) if n_force is None else float(n_force) / 3.0
            parts["charges"] = _elementwise(dq, kind, delta).sum() / max(n_at, 1.0)
        if weights.get("dipole", 0.0) and getattr(batch, "dipole", None) is not None:
            parts["dipole"] = _elementwise(dipole_error(out, batch).to(dtype), kind, delta).sum() / n_mol
    total = sum(float(weights.get(k, 0.0)) * v for k, v in parts.items())
    if not isinstance(total, torch.Tensor):
        total = out["energy"].new_zeros(()).to(dtype)
    return total, {k: float(v.detach()) for k, v in parts.items()}


def batch_errors(out: dict, batch) -> dict[str, torch.Tensor]:
    """float64 sums for metrics: |ΔE|, ΔE², |ΔE|/N, (ΔE/N)², |ΔF|, ΔF² and counts."""
    de = energy_error(out, batch).detach()
    natoms = atoms_per_molecule(batch).double()
    s = {
        "n_mol": torch.tensor(float(de.numel()), dtype=torch.float64),
        "e_abs": de.abs().sum(), "e_sq": de.pow(2).sum(),
        "ea_abs": (de / natoms).abs().sum(), "ea_sq": (de / natoms).pow(2).sum(),
    }
    f = getattr(batch, "forces", None)
    if f is not None and "forces" in out:
        df = (out["forces"].detach().double() - f.double())
        s.update(n_f=torch.tensor(float(df.numel()), dtype=torch.float64), f_abs=df.abs().sum(),
                 f_sq=df.pow(2).sum())
    q = getattr(batch, "charges", None)
    if q is not None and "coulomb_charges" in out:
        dq = out["coulomb_charges"].detach().double() - q.double().reshape(-1)
        s.update(n_q=torch.tensor(float(dq.numel()), dtype=torch.float64), q_err_abs=dq.abs().sum())
    if getattr(batch, "dipole", None) is not None and "dipole" in out:
        dmu = dipole_error({"dipole": out["dipole"].detach().double()}, batch)
        s["mu_abs"] = (dmu.norm(dim=-1) if dmu.dim() == 2 else dmu.abs()).sum()
    if "pde_residual" in out:
        s["pde"] = out["pde_residual"].detach().double().sum()
        s["q_abs"] = out["charge_error"].detach().double().abs().sum()
    return {k: v.cpu() for k, v in s.items()}


def finalize_errors(s: dict[str, float]) -> dict[str, float]:
    """Metrics (eV, eV/atom, eV/Å) from summed ``batch_errors``."""
    m: dict[str, float] = {}
    n = s.get("n_mol", 0.0)
    if n:
        m.update(energy_mae=s["e_abs"] / n, energy_rmse=math.sqrt(s["e_sq"] / n),
                 energy_mae_per_atom=s["ea_abs"] / n, energy_rmse_per_atom=math.sqrt(s["ea_sq"] / n))
        if "pde" in s:
            m.update(pde_residual=s["pde"] / n, charge_error_mae=s["q_abs"] / n)
        if "mu_abs" in s:
            m["dipole_mae"] = s["mu_abs"] / n  # e·Å (|Δμ| of vectors, Δ|μ| of magnitudes)
    if s.get("n_q"):
        m["charges_mae"] = s["q_err_abs"] / s["n_q"]
    if s.get("n_f"):
        m.update(forces_mae=s["f_abs"] / s["n_f"], forces_rmse=math.sqrt(s["f_sq"] / s["n_f"]))
    return m
