r"""NVE stability: velocity-Verlet MD with a model, and how well it conserves the total energy.

A conservative, smooth potential integrated with a small enough time step keeps
:math:`E_\mathrm{tot} = E_\mathrm{pot} + E_\mathrm{kin}` constant up to an O(Δt²) oscillation; a
discontinuous energy, non-conservative forces or a potential that lets atoms collapse show up as a
drift, jumps or a blow-up. :func:`nve_stability` runs ASE's ``VelocityVerlet`` with
:class:`phizoo.calculator.PhiZooCalculator` and reports

* ``status``: ``"completed"``, or where and why it stopped (:math:`|ΔE_\mathrm{tot}|` above
  ``max_dE_eV``, or a non-finite energy; the message has no ``|``, so it fits a Markdown table);
* ``drift_meV_per_ps``: the slope of a least-squares line through :math:`ΔE_\mathrm{tot}(t)`
  (meV/ps; also per atom);
* ``max_abs_dE_meV``: the largest excursion :math:`\max_t |E_\mathrm{tot}(t) − E_\mathrm{tot}(0)|`;
* ``mean_temperature_K``, ``ms_per_step`` (wall time), ``simulated_ps``, and the trace (``t_ps``,
  ``dE_meV``) under ``_trace``.

Velocities start from a Maxwell–Boltzmann distribution at ``temperature_K`` drawn with
``numpy.random.default_rng(seed)``, without net momentum (and, for molecules, net angular
momentum). Periodic systems keep their cell.
"""
from __future__ import annotations

import time

import numpy as np


def nve_stability(model, atoms, *, steps: int = 20000, timestep_fs: float = 0.5, temperature_K: float = 300.0,
                  record_every: int = 20, seed: int = 0, max_dE_eV: float = 10.0) -> dict:
    """Run ``steps`` velocity-Verlet steps of ``timestep_fs`` from ``atoms`` (an ``ase.Atoms``, copied;
    its ``info["charge"]``/``info["spin"]`` are passed to charge-aware models) and return the
    measures listed in the module docstring. ``model``: a phizoo model (use float64 weights for a
    drift measurement that is not dominated by float32 rounding)."""
    from ase import units
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from ..calculator import PhiZooCalculator

    if int(steps) < record_every or record_every < 1:
        raise ValueError(f"steps = {steps} must be at least record_every = {record_every} (≥ 1)")
    atoms = atoms.copy()
    atoms.calc = PhiZooCalculator(model)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    t, etot, temp = [], [], []

    def record():
        t.append(dyn.nsteps * timestep_fs / 1000.0)
        etot.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        temp.append(atoms.get_temperature())

    dyn.attach(record, interval=record_every)
    status = "completed"
    t0 = time.perf_counter()
    for _ in range(int(steps) // record_every):
        dyn.run(record_every)
        if not np.isfinite(etot[-1]) or abs(etot[-1] - etot[0]) > max_dE_eV:
            status = f"stopped at {t[-1]:.2f} ps: the total energy moved by more than {max_dE_eV:g} eV or is not finite"
            break
    wall = time.perf_counter() - t0
    t_arr, e_arr = np.asarray(t), np.asarray(etot) - etot[0]
    finite = np.isfinite(e_arr)
    slope = float(np.polyfit(t_arr[finite], e_arr[finite], 1)[0]) * 1e3 if finite.sum() > 2 else None
    return {"status": status, "simulated_ps": float(t_arr[-1]), "steps": int(steps), "timestep_fs": timestep_fs,
            "temperature_K": temperature_K, "atoms": len(atoms),
            "drift_meV_per_ps": slope, "drift_meV_per_ps_per_atom": slope / len(atoms) if slope is not None else None,
            "max_abs_dE_meV": float(np.nanmax(np.abs(e_arr)) * 1e3) if finite.any() else None,
            "mean_temperature_K": float(np.nanmean(temp)), "ms_per_step": wall / max(dyn.nsteps, 1) * 1e3,
            "_trace": {"t_ps": t_arr.tolist(), "dE_meV": (e_arr * 1e3).tolist()}}
