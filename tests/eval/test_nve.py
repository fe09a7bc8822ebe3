"""``phizoo.eval.nve_stability``: velocity-Verlet NVE with a model and its energy-conservation measures."""
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import phizoo
from phizoo.eval import nve_stability


def _model(**kw):
    torch.manual_seed(0)
    return phizoo.build_model("painn", preset="test", dtype=torch.float64, **kw).eval()


def test_energy_error_of_velocity_verlet_scales_as_dt_squared():
    """The same 40 fs at Δt and Δt/2: velocity Verlet's total-energy error is O(Δt²), so the largest
    excursion shrinks about 4× (a smooth, conservative Φ potential; any force inconsistent with the
    energy would leave an O(1) part that does not shrink)."""
    model, atoms = _model(phi=True), molecule("CH3CH2OH")
    coarse = nve_stability(model, atoms, steps=80, timestep_fs=0.5, record_every=2, temperature_K=600)
    fine = nve_stability(model, atoms, steps=160, timestep_fs=0.25, record_every=4, temperature_K=600)
    for r in (coarse, fine):
        assert r["status"] == "completed" and r["simulated_ps"] == pytest.approx(0.04)
        assert r["_trace"]["dE_meV"][0] == 0.0 and len(r["_trace"]["t_ps"]) == 41  # t = 0 included
        assert r["atoms"] == 9 and 100 < r["mean_temperature_K"] < 1200
    ratio = coarse["max_abs_dE_meV"] / fine["max_abs_dE_meV"]
    assert 2.5 < ratio < 6.0, ratio
    # the drift is the least-squares slope of the trace
    t, e = np.array(coarse["_trace"]["t_ps"]), np.array(coarse["_trace"]["dE_meV"])
    assert coarse["drift_meV_per_ps"] == pytest.approx(np.polyfit(t, e, 1)[0], rel=1e-9)
    assert atoms.calc is None  # the caller's Atoms are not modified


def test_a_run_beyond_the_threshold_stops_and_says_where():
    r = nve_stability(_model(), molecule("H2O"), steps=40, timestep_fs=5.0, record_every=2, temperature_K=3000,
                      max_dE_eV=1e-9)
    assert r["status"] == "stopped at 0.01 ps: the total energy moved by more than 1e-09 eV or is not finite"
    assert r["simulated_ps"] == pytest.approx(0.01)


def test_periodic_cell_and_charged_molecule():
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    r = nve_stability(_model(coulomb=True), crystal, steps=20, timestep_fs=1.0, record_every=5)
    assert r["status"] == "completed" and r["atoms"] == 8 and np.isfinite(r["drift_meV_per_ps"])
    ion = molecule("NH3")
    ion.info["charge"] = 1.0
    with pytest.raises(Exception, match="charge"):  # a model without the charge embedding refuses a charged system
        nve_stability(_model(), ion, steps=4, record_every=2)
    r = nve_stability(_model(charge_spin=True), ion, steps=4, record_every=2)
    assert r["status"] == "completed"


def test_bad_step_counts():
    with pytest.raises(ValueError, match="record_every"):
        nve_stability(_model(), molecule("H2O"), steps=3, record_every=5)
