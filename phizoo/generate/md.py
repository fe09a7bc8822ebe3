"""The MD driver of ``phizoo data xtb-md``: BAOAB Langevin dynamics with GFN2-xTB, checkpointed and resumable.

Design (why not ``ase.md.Langevin`` with ``tblite.ase.TBLite``): the run must be bitwise
reproducible and resumable. Its full state is the positions, velocities, forces, the random
generator state *and the SCC wavefunction* that tblite uses as the starting guess of the next
step (a different guess changes the converged energy in the last digits, and MD amplifies such
differences). tblite's ASE calculator keeps that wavefunction private; with
``tblite.interface.Calculator`` directly, ``Result.save``/``Result.load`` store and restore it
exactly, so an interrupted run continued from its checkpoint produces the same file as an
uninterrupted one. The integrator is BAOAB Langevin (Leimkuhler & Matthews, Appl. Math. Res.
Express 2013; one force call per step) driven by ``numpy.random.default_rng(seed)``, with the
centre-of-mass velocity removed after each thermostat step (no drift of the molecule; 3N − 3
thermalised degrees of freedom).

Checkpoints: ``.<output name>.partial`` next to the output holds the frames so far and the MD
state, written atomically every ``checkpoint_every`` frames and on Ctrl-C (the CLI turns SIGTERM
into Ctrl-C); running the same command again continues from it. ``frames`` and ``checkpoint_every`` are not part of
the run's identity: asking for more frames in a rerun extends an interrupted run. The output
is written once, atomically (temporary file, then rename), and the checkpoint removed.
With ``OMP_NUM_THREADS=1``, the same inputs and seed give a byte-identical file (zip entries
carry a fixed timestamp), interrupted or not. Multi-threaded tblite is not bitwise
deterministic (two 2-thread runs of stachyose differ in the last digits after 30 steps), so
such runs are valid trajectories but not reproducible to the bit, resumed ones included.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import units

from ..data.errors import DataError
from .optional import tblite_version
from .sgdml import dataset_arrays, write_npz
from .structure import Molecule
from .xtb import GRAD_TO_EV_A, HARTREE_KCAL, KCAL_MOL, XTB

INTEGRATOR = "BAOAB Langevin, centre-of-mass velocity removed (phizoo xtb_md v1)"


def masses_of(z: np.ndarray) -> np.ndarray:
    from ase.data import atomic_masses

    return np.asarray(atomic_masses[np.asarray(z)], dtype=np.float64)


def kinetic_temperature(v: np.ndarray, m: np.ndarray) -> float:
    """Instantaneous temperature (K) with 3N − 3 degrees of freedom (centre of mass fixed)."""
    dof = max(3 * len(m) - 3, 1)
    return float(np.sum(m[:, None] * v * v) / (dof * units.kB))


def _remove_com(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    return v - (m @ v) / m.sum()


@dataclass
class _State:
    step: int
    x: np.ndarray      # Å
    v: np.ndarray      # Å / ASE time unit
    f: np.ndarray      # eV/Å
    e: float           # Hartree
    g: np.ndarray      # Hartree/Bohr
    q: np.ndarray      # e
    rng: dict          # numpy bit-generator state after this step
    result: Any        # tblite Result at x


def _fingerprint(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()


def checkpoint_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.partial")


def _rng_json(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


def run_md(mol: Molecule, output: str | Path, *, temperature: float = 500.0, timestep: float = 0.5,
           friction: float = 0.01, frames: int = 1000, stride: int = 10, equilibration: int = 1000,
           seed: int = 0, accuracy: float = 1.0, checkpoint_every: int = 100, overwrite: bool = False,
           resume: bool = True, progress: bool = True,
           on_step: Callable[[int], None] | None = None) -> Path:
    """Langevin MD of ``mol`` with GFN2-xTB; writes an sGDML ``.npz`` to ``output`` (see module doc).

    ``temperature`` K, ``timestep`` fs, ``friction`` 1/fs, ``frames`` saved frames, one every
    ``stride`` steps after ``equilibration`` steps. ``on_step(step)`` is called before each MD
    step (tests use it to interrupt). Returns ``output``.
    """
    tblite_version()  # clear error early when tblite is missing
    output = Path(output)
    if output.is_dir():
        raise DataError(f"{output}: is a directory; give a file name such as data/xtb/{mol.name}.npz")
    if output.exists() and not overwrite:
        raise DataError(f"{output}: already exists; pass --overwrite (overwrite=True) to replace it")
    for label, value, ok in (("frames", frames, frames >= 1), ("stride", stride, stride >= 1),
                             ("equilibration", equilibration, equilibration >= 0),
                             ("checkpoint_every", checkpoint_every, checkpoint_every >= 1),
                             ("temperature", temperature, temperature > 0), ("timestep", timestep, timestep > 0),
                             ("friction", friction, friction >= 0), ("accuracy", accuracy, accuracy > 0)):
        if not ok or not np.isfinite(value):
            raise DataError(f"{label} = {value} is out of range")
    z = np.asarray(mol.z, dtype=np.int64)
    x0 = np.asarray(mol.pos, dtype=np.float64)
    if z.ndim != 1 or x0.shape != (len(z), 3) or not np.isfinite(x0).all():
        raise DataError(f"{mol.name}: positions must be finite with shape [{len(z)}, 3], got {list(x0.shape)}")
    if np.any((z < 1) | (z > 86)):
        raise DataError(f"{mol.name}: GFN2-xTB is parametrised for elements 1-86, got {sorted(set(z.tolist()))}")
    if int(z.sum()) % 2:
        raise DataError(f"{mol.name}: odd number of electrons ({int(z.sum())}); xtb-md runs neutral closed-shell "
                        f"molecules (the MD22 format stores no charge or spin)")

    options = {"method": "GFN2-xTB", "tblite": tblite_version(), "accuracy": float(accuracy),
               "integrator": INTEGRATOR, "temperature_K": float(temperature), "timestep_fs": float(timestep),
               "friction_per_fs": float(friction), "stride": int(stride), "equilibration_steps": int(equilibration),
               "seed": int(seed), "z": z.tolist(),
               "initial_positions_sha256": hashlib.sha256(x0.tobytes()).hexdigest()}
    fp = _fingerprint(options)
    ckpt = checkpoint_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{ckpt}.lock")
    lock = open(lock_path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DataError(f"{output}: another xtb-md run is writing it right now ({ckpt})") from None
    try:
        path = _run_locked(mol, z, x0, output, ckpt, options, fp, frames=frames, checkpoint_every=checkpoint_every,
                           resume=resume, progress=progress, on_step=on_step)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    if not ckpt.exists():
        lock_path.unlink(missing_ok=True)
    return path


def _frames_at(step: int, equilibration: int, stride: int) -> int:
    return max(0, step - equilibration) // stride


def _run_locked(mol: Molecule, z, x0, output: Path, ckpt: Path, options: dict, fp: str, *, frames: int,
                checkpoint_every: int, resume: bool, progress: bool, on_step) -> Path:
    from tqdm.auto import tqdm

    T = options["temperature_K"]
    dt = options["timestep_fs"] * units.fs
    gamma = options["friction_per_fs"] / units.fs
    stride, equil = options["stride"], options["equilibration_steps"]
    total = equil + frames * stride
    m = masses_of(z)
    kT = units.kB * T
    c1 = float(np.exp(-gamma * dt))
    c2 = np.sqrt((1.0 - c1 * c1) * kT / m)[:, None]  # O step noise amplitude per atom
    xtb = XTB(z, x0, accuracy=options["accuracy"])
    rng = np.random.default_rng(options["seed"])
    R: list[np.ndarray] = []
    E: list[float] = []
    F: list[np.ndarray] = []
    Q: list[np.ndarray] = []
    Tk: list[float] = []

    state = _load_checkpoint(ckpt, fp, options, xtb, rng) if (resume and ckpt.exists()) else None
    if not resume and ckpt.exists():
        ckpt.unlink()
    if state is not None:
        state, arrays = state
        n0 = min(len(arrays["R"]), frames)
        R, F, Q = list(arrays["R"][:n0]), list(arrays["F"][:n0]), list(arrays["Q"][:n0])
        E, Tk = list(arrays["E"][:n0]), list(arrays["T"][:n0])
    else:
        v = _remove_com(rng.standard_normal((len(z), 3)) * np.sqrt(kT / m)[:, None], m)
        e, g, q = xtb(x0, "the starting structure")
        state = _State(0, x0, v, -g * GRAD_TO_EV_A, e, g, q, rng.bit_generator.state, xtb.result)

    def save_checkpoint(s: _State) -> None:
        n = min(_frames_at(s.step, equil, stride), len(R))
        N = len(z)
        write_npz(ckpt, {
            "fingerprint": np.array(fp), "options": np.array(json.dumps(options, sort_keys=True)),
            "step": np.int64(s.step), "x": s.x, "v": s.v, "f": s.f, "e": np.float64(s.e), "g": s.g, "q": s.q,
            "rng": np.array(_rng_json(s.rng)),
            "wavefunction": np.frombuffer(_wavefunction_bytes(xtb, s.result), dtype=np.uint8),
            "R": np.asarray(R[:n], dtype=np.float64).reshape(n, N, 3),
            "E": np.asarray(E[:n], dtype=np.float64), "F": np.asarray(F[:n], dtype=np.float64).reshape(n, N, 3),
            "Q": np.asarray(Q[:n], dtype=np.float64).reshape(n, N), "T": np.asarray(Tk[:n], dtype=np.float64),
        }, compress=False)

    bar = tqdm(total=total, initial=min(state.step, total), disable=not progress, unit="step",
               desc=f"xtb-md {mol.name}", dynamic_ncols=True)
    try:
        while state.step < total:
            if on_step is not None:
                on_step(state.step)
            step = state.step + 1
            # BAOAB: half kick, half drift, thermostat, half drift, force, half kick
            v = state.v + (0.5 * dt) * state.f / m[:, None]
            x = state.x + (0.5 * dt) * v
            v = _remove_com(c1 * v + c2 * rng.standard_normal(v.shape), m)
            x = x + (0.5 * dt) * v
            e, g, q = xtb(x, f"MD step {step}")
            f = -g * GRAD_TO_EV_A
            v = v + (0.5 * dt) * f / m[:, None]
            new = _State(step, x, v, f, e, g, q, rng.bit_generator.state, xtb.result)
            if step > equil and (step - equil) % stride == 0:
                R.append(x)
                E.append(e * HARTREE_KCAL)
                F.append(-g * (GRAD_TO_EV_A / KCAL_MOL))
                Q.append(q)
                Tk.append(kinetic_temperature(v, m))
            state = new
            bar.update(1)
            if step > equil and (step - equil) % stride == 0:
                n = len(R)
                if progress:
                    bar.set_postfix_str(f"frame {n}/{frames} T {Tk[-1]:.0f} K", refresh=False)
                if n % checkpoint_every == 0 and n < frames:
                    save_checkpoint(state)
            elif step <= equil and step % (checkpoint_every * stride) == 0:
                save_checkpoint(state)
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(state)  # the last completed step
        raise
    bar.close()
    Tk_arr = np.asarray(Tk[:frames])
    meta = {
        "generator": "phizoo data xtb-md",
        "phizoo": _phizoo_version(),
        "rdkit": _rdkit_version(),
        **options,
        "frames": int(frames),
        "frame_i_is_step": "equilibration_steps + (i + 1) * stride",
        "initial_structure": mol.source,
        "name": mol.name,
        "kinetic_temperature_K": {"mean": float(Tk_arr.mean()), "std": float(Tk_arr.std()),
                                  "min": float(Tk_arr.min()), "max": float(Tk_arr.max()),
                                  "degrees_of_freedom": "3N - 3"},
        "units": {"R": "angstrom", "E": "kcal/mol", "F": "kcal/mol/angstrom", "Q": "e"},
        "conversion": {"kcal_mol_per_hartree": HARTREE_KCAL, "bohr_in_angstrom": units.Bohr,
                       "note": "ase.units: E = E_h * Hartree / (kcal/mol); F = -gradient * Hartree/Bohr / (kcal/mol)"},
    }
    data = dataset_arrays(mol.name, z, np.stack(R[:frames]), np.asarray(E[:frames]), np.stack(F[:frames]),
                          np.stack(Q[:frames]), meta)
    write_npz(output, data)
    ckpt.unlink(missing_ok=True)
    return output


def _wavefunction_bytes(xtb: XTB, result) -> bytes:
    saved = xtb.result
    try:
        xtb.result = result
        return xtb.save_wavefunction()
    finally:
        xtb.result = saved


def _load_checkpoint(ckpt: Path, fp: str, options: dict, xtb: XTB, rng) -> tuple[_State, dict] | None:
    try:
        with np.load(ckpt, allow_pickle=False) as d:
            c = {k: d[k] for k in d.files}
    except Exception as err:
        raise DataError(f"{ckpt}: unreadable checkpoint ({type(err).__name__}: {err}); delete it or pass "
                        f"--restart to start over") from None
    if str(c.get("fingerprint", "")) != fp:
        try:
            old = json.loads(str(c["options"]))
            diff = sorted(k for k in set(old) | set(options) if old.get(k) != options.get(k))
        except Exception:
            diff = ["(unreadable)"]
        raise DataError(f"{ckpt}: a checkpoint of a different run (differs in: {', '.join(diff)}); rerun with the "
                        f"same settings to continue it, or pass --restart to discard it")
    rng.bit_generator.state = json.loads(str(c["rng"]))
    xtb.load_wavefunction(c["wavefunction"].tobytes())
    state = _State(int(c["step"]), c["x"], c["v"], c["f"], float(c["e"]), c["g"], c["q"], rng.bit_generator.state,
                   xtb.result)
    xtb.calc.update(np.asarray(state.x) / units.Bohr)
    return state, {k: c[k] for k in ("R", "E", "F", "Q", "T")}


def _phizoo_version() -> str:
    from .. import __version__

    return __version__


def _rdkit_version() -> str | None:
    try:
        import rdkit

        return rdkit.__version__
    except ImportError:
        return None
