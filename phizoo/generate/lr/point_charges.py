r"""Random point charges: the LES benchmark (Cheng, "Latent Ewald summation", 2024/2025).

``n_cations`` charges +1 e (stored as Na, Z = 11) and ``n_anions`` charges −1 e (Cl, Z = 17),
by default 64 + 64, in a periodic cubic box at a liquid-like number density (default 0.0319
ions/Å³, that of molten NaCl at 1.55 g/cm³: L = 15.89 Å for 128 ions). The exact model:

.. math::

    E = E_\mathrm{C} + E_\mathrm{rep}, \qquad
    E_\mathrm{C} = \frac{k_e}{2} \sum_{i, j, \mathbf{n}}{}' \frac{q_i q_j}{|\mathbf{r}_{ij} + \mathbf{n} L|}, \qquad
    E_\mathrm{rep} = \sum_{i<j,\ r_{ij} < r_c} \left[ A e^{-r_{ij}/\rho} - A e^{-r_c/\rho}
                      + (r_{ij} - r_c) \frac{A}{\rho} e^{-r_c/\rho} \right]

* :math:`E_\mathrm{C}`: the Coulomb energy of the periodic lattice sum (the prime drops
  i = j for n = 0), :math:`k_e` = 14.399645 eV·Å/e², computed by Ewald summation with
  torch-pme (``torchpme.EwaldCalculator``; real-space cutoff ``ewald_cutoff`` (12 Å), Gaussian
  smearing σ = cutoff / 6 (erfc(6/√2) = 2·10⁻⁹) and k-space wavelength cutoff
  ``lr_wavelength`` = σ/2): converged to ~10⁻⁹ relative (the rock-salt Madelung constant
  comes out within 2·10⁻⁹), the exact energy for any practical purpose. The cell is neutral,
  so no background term enters.
* :math:`E_\mathrm{rep}`: a Born–Mayer repulsion between all pairs (like and unlike),
  shifted-force truncated at :math:`r_c` = 4.5 Å (energy and force continuous, zero at
  :math:`r_c`): A = 1200 eV, ρ = 0.317 Å (Tosi–Fumi's NaCl hardness); with these the rock-salt
  crystal of the model has its minimum at the NaCl nearest-neighbour distance, ≈ 2.82 Å. The
  repulsion lies inside a 5 Å model cutoff; everything beyond is pure Coulomb.

Forces :math:`F = -∂E/∂r` by autograd, in float64. Units: eV, Å, eV/Å, e.

Sampling: random sequential insertion (no two ions closer than 2.5 Å; seeded), Maxwell–
Boltzmann velocities, then Langevin dynamics (``ase.md.langevin.Langevin``, centre of mass
fixed with ``ase.constraints.FixCom``; the model wrapped as the ASE calculator
:class:`PointChargeCalculator`) at ``temperature`` (1500 K, a molten salt), ``timestep`` 2 fs,
friction 0.01 fs⁻¹; ``equilibration`` steps (5000 = 10 ps) are discarded, then every
``stride``-th step (100 = 200 fs; measured: the energy autocorrelation is 0.07 after 100
steps, and the ions diffuse, D ≈ 0.7 Å²/ps: a liquid) is a frame. Frame i holds the state after step ``equilibration + (i + 1) ·
stride``; positions wrapped into the cell.

Records: ``z``, ``pos`` Å, ``energy`` eV, ``forces`` eV/Å, ``charges`` (exactly ±1 e),
``total_charge`` 0, ``cell`` [3, 3] Å, ``pbc`` (1, 1, 1); ``meta``: frame, MD step, kinetic
temperature, and the parts :math:`E_\mathrm{C}`, :math:`E_\mathrm{rep}` (eV).

Reproducibility and resume: the model runs on one torch thread with a sorted neighbour list,
the thermostat draws from ``numpy.random.default_rng(seed)``, so a seed gives one trajectory,
bit for bit. The MD state (positions, momenta, generator state) after every
``checkpoint_every`` frames, and on Ctrl-C/SIGTERM, is kept in ``.<output name>.md-state.npz``
beside the output; a rerun restarts the trajectory from the last state at or before the
records already written, so resumed and uninterrupted runs give identical records. An
interruption during equilibration restarts the equilibration.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...data.convert import Structure
from ...data.errors import DataError
from . import point_charge_model as _model
from .common import K_E, GeneratedSource, frame_rng, package_version, phizoo_version, write
from .point_charge_model import (ANION_Z, BORN_MAYER_A, BORN_MAYER_RHO, CATION_Z, DENSITY,  # noqa: F401 (re-exported)
                                 EWALD_CUTOFF, INSERTION_MIN_DISTANCE, REPULSION_CUTOFF, PointChargeModel,
                                 _ase_calculator_class, ewald_energy)


def __getattr__(name):  # PointChargeCalculator, built on first use in point_charge_model (ase imported lazily)
    return getattr(_model, name)


# ----------------------------------------------------------------------------------- sampling


def random_insertion(n: int, box: float, min_distance: float, rng: np.random.Generator,
                     attempts: int = 1000) -> np.ndarray:
    """``n`` points in a periodic cubic box of side ``box`` with every minimum-image distance at
    least ``min_distance`` (random sequential insertion)."""
    pts = np.zeros((0, 3))
    for k in range(n):
        for _ in range(attempts):
            p = rng.random(3) * box
            if len(pts) == 0:
                break
            d = pts - p
            d -= box * np.round(d / box)
            if np.min(np.einsum("ij,ij->i", d, d)) >= min_distance ** 2:
                break
        else:
            raise DataError(f"cannot place {n} ions {min_distance} Å apart in a {box:.3f} Å box (placed {k}); "
                            f"lower the density")
        pts = np.vstack([pts, p])
    return pts


def checkpoint_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.md-state.npz")


class PointChargeSource(GeneratedSource):
    """Frames of the point-charge MD (module docstring)."""

    dataset = "point-charges"

    def __init__(self, frames: int = 1000, *, seed: int = 0, n_cations: int = 64, n_anions: int = 64,
                 box: float | None = None, density: float = DENSITY, temperature: float = 1500.0,
                 timestep: float = 2.0, friction: float = 0.01, stride: int = 100, equilibration: int = 5000,
                 checkpoint_every: int = 10, model: PointChargeModel | None = None,
                 on_step: Callable[[int], None] | None = None):
        super().__init__("point-charges", frames)
        for label, value in (("n_cations", n_cations), ("n_anions", n_anions), ("stride", stride),
                             ("checkpoint_every", checkpoint_every)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise DataError(f"{label} = {value!r} must be a positive integer")
        if isinstance(equilibration, bool) or int(equilibration) != equilibration or equilibration < 0:
            raise DataError(f"equilibration = {equilibration!r} must be a non-negative integer")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise DataError(f"seed = {seed!r} must be a non-negative integer")
        for label, value, ok in (("temperature", temperature, temperature > 0), ("timestep", timestep, timestep > 0),
                                 ("friction", friction, friction > 0), ("density", density, density > 0)):
            if not ok or not np.isfinite(value):
                raise DataError(f"{label} = {value} must be positive")
        n = int(n_cations) + int(n_anions)
        if box is None:
            box = (n / density) ** (1.0 / 3.0)
        elif not (np.isfinite(box) and box > 0):
            raise DataError(f"box = {box} must be positive")
        self.model = model or PointChargeModel()  # any box size: the pair sums run over all images
        self.seed, self.n_cations, self.n_anions = int(seed), int(n_cations), int(n_anions)
        self.box = float(box)
        self.temperature, self.timestep, self.friction = float(temperature), float(timestep), float(friction)
        self.stride, self.equilibration = int(stride), int(equilibration)
        self.checkpoint_every = int(checkpoint_every)
        self.on_step = on_step
        self.z = np.array([CATION_Z] * self.n_cations + [ANION_Z] * self.n_anions, dtype=np.int64)
        self.q = np.array([1.0] * self.n_cations + [-1.0] * self.n_anions)
        self.cell = np.eye(3) * self.box
        self._ckpt: Path | None = None
        self._atoms = self._dyn = self._rng = None
        self._next = -1           # the frame the current MD state produces next
        self._step = 0
        self._state: dict[str, Any] | None = None  # MD state after the last completed frame

    # -- identity
    def options(self) -> dict[str, Any]:
        return {"n_cations": self.n_cations, "n_anions": self.n_anions, "box_A": self.box,
                "temperature_K": self.temperature, "timestep_fs": self.timestep, "friction_per_fs": self.friction,
                "stride": self.stride, "equilibration_steps": self.equilibration, "generator_seed": self.seed,
                "insertion_min_distance_A": INSERTION_MIN_DISTANCE, "model": self.model.describe(),
                "integrator": "ase.md.langevin.Langevin (fixcm=False) + ase.constraints.FixCom",
                "ase": package_version("ase")}

    def metadata(self) -> dict[str, Any]:
        m = self.model
        return {"name": f"random point charges {self.n_cations}+{self.n_anions}",
                "level_of_theory": (f"classical point charges ±1 e: Ewald Coulomb (torch-pme "
                                    f"{package_version('torch-pme')}, k_e = {K_E} eV·Å/e²) + Born–Mayer repulsion "
                                    f"{m.A:g} exp(-r/{m.rho:g} Å) eV, "
                                    f"shifted force at {m.rc:g} Å"),
                "target": "energy",
                "periodic": True,
                "generator": {"command": "phizoo data generate point-charges", "phizoo": phizoo_version(),
                              **self.options(), "density_per_A3": self.num_atoms / self.box ** 3,
                              "frame_i_is_step": "equilibration_steps + (i + 1) * stride",
                              "species": {"Na (Z=11)": "+1 e", "Cl (Z=17)": "-1 e"}},
                "element_references_note": "not fitted: every frame has the same composition"}

    @property
    def num_atoms(self) -> int:
        return self.n_cations + self.n_anions

    # -- checkpoints
    def bind(self, dest: Path) -> None:
        self._ckpt = checkpoint_path(dest)

    def discard_checkpoint(self, dest: Path) -> None:
        checkpoint_path(dest).unlink(missing_ok=True)

    def finished(self, dest: Path) -> None:
        checkpoint_path(dest).unlink(missing_ok=True)

    def _fingerprint(self) -> str:
        return json.dumps(self.options(), sort_keys=True)

    def _load_states(self) -> dict[int, dict[str, Any]]:
        if self._ckpt is None or not self._ckpt.exists():
            return {}
        try:
            with np.load(self._ckpt, allow_pickle=False) as d:
                if str(d["fingerprint"]) != self._fingerprint():
                    return {}
                return {int(k): {"positions": d[f"pos_{k}"], "momenta": d[f"mom_{k}"], "rng": str(d[f"rng_{k}"]),
                                 "step": int(d[f"step_{k}"])} for k in d["frames_done"].tolist()}
        except Exception:  # unreadable: start over (the records are regenerated identically)
            return {}

    def _save_state(self, frames_done: int, state: dict[str, Any]) -> None:
        if self._ckpt is None:
            return
        states = self._load_states()
        states[frames_done] = state
        arrays: dict[str, Any] = {"fingerprint": np.array(self._fingerprint()),
                                  "frames_done": np.array(sorted(states), dtype=np.int64)}
        for k, s in states.items():
            arrays[f"pos_{k}"], arrays[f"mom_{k}"] = s["positions"], s["momenta"]
            arrays[f"rng_{k}"], arrays[f"step_{k}"] = np.array(s["rng"]), np.int64(s["step"])
        self._ckpt.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self._ckpt.name, suffix=".tmp", dir=self._ckpt.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, self._ckpt)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _snapshot(self) -> dict[str, Any]:
        return {"positions": self._atoms.positions.copy(), "momenta": self._atoms.get_momenta().copy(),
                "rng": json.dumps(self._rng.bit_generator.state), "step": self._step}

    # -- MD
    def _setup(self, state: dict[str, Any] | None) -> None:
        import warnings

        from ase import Atoms, units
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin
        from ase.md.velocitydistribution import Stationary

        self._rng = frame_rng(self.seed, 0)
        atoms = Atoms(numbers=self.z, cell=self.cell, pbc=True)
        atoms.set_initial_charges(self.q)
        if state is None:
            atoms.positions = random_insertion(self.num_atoms, self.box, INSERTION_MIN_DISTANCE, self._rng)
            m = atoms.get_masses()  # Maxwell-Boltzmann momenta
            sigma = np.sqrt(m * units.kB * self.temperature)[:, None]
            atoms.set_momenta(self._rng.standard_normal((len(m), 3)) * sigma)
            Stationary(atoms)
            self._step = 0
        else:
            atoms.positions = state["positions"]
            atoms.set_momenta(state["momenta"])
            self._rng.bit_generator.state = json.loads(state["rng"])
            self._step = int(state["step"])
        atoms.set_constraint(FixCom())
        atoms.calc = _ase_calculator_class()(self.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self._dyn = Langevin(atoms, timestep=self.timestep * units.fs, temperature_K=self.temperature,
                                 friction=self.friction / units.fs, fixcm=False, rng=self._rng)
        self._atoms = atoms

    def _steps(self, n: int, desc: str | None = None, snapshot_every: int = 0) -> None:
        """``n`` MD steps (a progress bar titled ``desc``); ``snapshot_every``: keep the state
        every that many steps (the last completed frame, for an interruption)."""
        from tqdm.auto import tqdm

        bar = tqdm(total=n, disable=desc is None or not self.progress, desc=desc, unit="step", leave=False,
                   dynamic_ncols=True)
        try:
            for _ in range(n):
                if self.on_step is not None:
                    self.on_step(self._step)
                self._dyn.step()
                self._step += 1
                bar.update(1)
                if snapshot_every and (_ + 1) % snapshot_every == 0:
                    self._state = self._snapshot()
        finally:
            bar.close()

    def _restore(self, i: int) -> None:
        """Bring the MD to the state that produces frame ``i`` next."""
        states = self._load_states()
        usable = [k for k in states if k <= i]
        if usable:
            k = max(usable)
            self._setup(states[k])
        else:
            k = 0
            self._setup(None)
            self._steps(self.equilibration, "equilibration")
            self._save_state(0, self._snapshot())
        self._state = self._snapshot()
        try:
            # regenerate the frames between the checkpoint and the records written (identical by determinism)
            self._steps((i - k) * self.stride, f"replaying frames {k}..{i - 1}" if i > k else None,
                        snapshot_every=self.stride)
        except KeyboardInterrupt:
            self._save_state(self._state_frames(), self._state)
            raise
        self._next = i

    def _state_frames(self) -> int:
        return (int(self._state["step"]) - self.equilibration) // self.stride

    def structure(self, i: int) -> Structure:
        if i != self._next or self._dyn is None:
            self._restore(i)
        try:
            self._steps(self.stride)
        except KeyboardInterrupt:
            self._save_state(i, self._state)
            raise
        atoms = self._atoms
        calc = atoms.calc
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces(apply_constraint=False).copy()
        self._next = i + 1
        self._state = self._snapshot()
        if (i + 1) % self.checkpoint_every == 0:
            self._save_state(i + 1, self._state)
        frac = atoms.get_scaled_positions(wrap=True)
        return Structure(z=self.z.copy(), pos=frac @ self.cell, energy=energy, forces=forces, charges=self.q.copy(),
                         total_charge=0.0, cell=self.cell.copy(), pbc=np.ones(3), id=f"point-charges/{i}",
                         meta={"frame": i, "md_step": self._step, "temperature_K": float(atoms.get_temperature()),
                               "coulomb_energy_eV": float(calc.results["coulomb_energy"]),
                               "repulsion_energy_eV": float(calc.results["repulsion_energy"])})


def generate_point_charges(output: str | Path, frames: int = 1000, *, seed: int = 0, overwrite: bool = False,
                           resume: bool = True, progress: bool = True,
                           on_record: Callable[[int], None] | None = None, **options) -> Path:
    """Write ``frames`` frames of the random-point-charge benchmark (module docstring) to the
    LMDB database ``output``; ``options`` go to :class:`PointChargeSource` (``n_cations``,
    ``n_anions``, ``box`` Å or ``density`` ions/Å³, ``temperature`` K, ``timestep`` fs,
    ``friction`` 1/fs, ``stride``, ``equilibration`` steps, ``checkpoint_every`` frames,
    ``model``). ``seed`` drives the insertion, the velocities, the thermostat and the split."""
    source = PointChargeSource(frames, seed=seed, **options)
    return write(source, output, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                 on_record=on_record)
