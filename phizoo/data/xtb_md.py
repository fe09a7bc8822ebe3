"""GFN2-xTB Langevin molecular dynamics written as MD22-format (sGDML) ``.npz`` files.

``phizoo data xtb-md`` (:func:`xtb_md`) makes MD22-like training data on a laptop: it starts
from a SMILES string (RDKit: hydrogens added, ETKDG embedding with a fixed seed, MMFF
pre-optimisation), a structure file (anything ``ase.io.read`` reads) or one of the MD22
molecules in :data:`MOLECULES`, runs Langevin dynamics with GFN2-xTB energies and forces from
tblite, and saves every ``stride``-th step.

Output (sGDML dataset format, what :mod:`phizoo.data.md22` and sGDML read)::

    R  [n, N, 3] float64  positions, Å
    z  [N]       int64    atomic numbers
    E  [n, 1]    float64  total GFN2-xTB energy, kcal/mol
    F  [n, N, 3] float64  forces = -gradient, kcal/mol/Å
    Q  [n, N]    float64  GFN2-xTB (Mulliken) partial charges, e   (not in sGDML; phizoo reads it)
    name, theory ('GFN2-xTB (tblite <version>)'), type 'd', r_unit 'Ang', e_unit 'kcal/mol',
    md5 (sGDML's dataset fingerprint: md5 of the md5 digests of z, R, E, F),
    E_min/E_max/E_mean/E_var, F_min/F_max/F_mean/F_var (as sGDML's dataset scripts write),
    xtb_md (JSON: every setting, the starting structure, program versions)

Units: tblite works in atomic units (Bohr, Hartree, Hartree/Bohr); conversions use
``ase.units`` (``Bohr``, ``Hartree``, ``kcal``, ``mol``). Frame ``i`` holds the positions after
MD step ``equilibration + (i + 1) * stride`` and the energy, forces and charges computed at
exactly those positions.

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
import functools
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ase import units

from .errors import DataError

INSTALL_HINT = "pip install phizoo[xtb]"
KCAL_MOL = units.kcal / units.mol          # eV per kcal/mol
HARTREE_KCAL = units.Hartree / KCAL_MOL    # kcal/mol per Hartree
GRAD_TO_EV_A = units.Hartree / units.Bohr  # (Hartree/Bohr) -> eV/Å
INTEGRATOR = "BAOAB Langevin, centre-of-mass velocity removed (phizoo xtb_md v1)"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class MissingDependencyError(ImportError, RuntimeError):
    """An optional dependency of ``phizoo data xtb-md`` (tblite, rdkit) is not installed."""


def _import(module: str, package: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package!r}, which is not installed ({err}); "
            f"install it with: {INSTALL_HINT}") from None


def tblite_version() -> str:
    _import("tblite.interface", "tblite", "GFN2-xTB molecular dynamics")
    try:
        from importlib.metadata import version

        return version("tblite")
    except Exception:  # pragma: no cover - a tblite without package metadata
        from tblite.library import get_version

        return ".".join(map(str, get_version()))


def theory_string() -> str:
    return f"GFN2-xTB (tblite {tblite_version()})"


# --------------------------------------------------------------------------- starting structures


@dataclass
class Molecule:
    """A starting structure: atomic numbers, positions (Å) and where they came from."""
    name: str
    z: np.ndarray
    pos: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)


def from_smiles(smiles: str, seed: int = 42, name: str | None = None, mmff_iterations: int = 5000) -> Molecule:
    """3D structure of a SMILES string: RDKit AddHs, ETKDGv3 embedding with ``randomSeed=seed``
    (one thread, so deterministic), MMFF94 optimisation (UFF when MMFF lacks parameters)."""
    Chem = _import("rdkit.Chem", "rdkit", "building a molecule from SMILES")
    from rdkit.Chem import AllChem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise DataError(f"SMILES {smiles!r}: RDKit cannot parse it")
    formula = CalcMolFormula(mol)
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True  # large or strained molecules
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise DataError(f"SMILES {smiles!r}: RDKit ETKDG could not embed a 3D structure (seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        ff, optimiser = "MMFF94", AllChem.MMFFOptimizeMolecule
    else:
        ff, optimiser = "UFF", AllChem.UFFOptimizeMolecule
    converged = optimiser(mol, maxIters=mmff_iterations) == 0
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    pos = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return Molecule(name or formula, z, pos, {"smiles": smiles, "formula": formula, "embedding": "RDKit ETKDGv3",
                                              "embed_seed": int(seed), "preoptimisation": ff,
                                              "preoptimisation_converged": bool(converged)})


def from_file(path: str | Path, name: str | None = None) -> Molecule:
    """First structure of a file ``ase.io.read`` understands (xyz, extxyz, pdb, mol, cif...)."""
    from ase.io import read

    from .errors import check_file
    from .convert import sha256_file

    p = check_file(path, "structure file")
    try:
        atoms = read(str(p), index=0)
    except Exception as err:  # ase raises many types for unreadable files
        raise DataError(f"{p}: ase.io.read cannot read it ({type(err).__name__}: {err})") from None
    if atoms.pbc.any():
        raise DataError(f"{p}: periodic structure; xtb-md runs isolated molecules only")
    return Molecule(name or p.stem, atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                    {"file": p.name, "file_sha256": sha256_file(p)})


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def molecule(name: str, seed: int = 42) -> Molecule:
    """One of the MD22 molecules of :data:`MOLECULES` (atom count checked against MD22's)."""
    key = _ALIASES.get(_norm(name))
    if key is None:
        raise DataError(f"unknown molecule {name!r}; known: {', '.join(MOLECULES)} "
                        f"(or give --smiles / --structure)")
    spec = MOLECULES[key]
    if spec.smiles is not None:
        mol = from_smiles(spec.smiles, seed=seed, name=key)
    else:
        mol = spec.builder(seed)
        mol.name = key
    mol.source = {"molecule": key, **mol.source}
    from ase import Atoms

    formula = Atoms(numbers=mol.z).get_chemical_formula(mode="hill")
    if len(mol.z) != spec.md22_atoms or formula != spec.formula:
        raise DataError(f"{key}: built {len(mol.z)} atoms ({formula}) but MD22's {key} has {spec.md22_atoms} "
                        f"({spec.formula})")
    return mol


@dataclass
class Spec:
    md22_atoms: int
    formula: str
    smiles: str | None = None
    builder: Callable[[int], Molecule] | None = None
    note: str = ""


# the MD22 molecules buildable here; the builders of the non-covalent complexes are below
MOLECULES: dict[str, Spec] = {}
_ALIASES: dict[str, str] = {}


# --------------------------------------------------------------------------- the sGDML file


def sgdml_md5(data: dict[str, np.ndarray]) -> bytes:
    """sGDML's dataset fingerprint (``sgdml.utils.io.dataset_md5``): md5 over the md5 digests of
    ``z``, ``R``, ``E`` (when present) and ``F``, each flattened in its stored dtype."""
    h = hashlib.md5()
    for key in ("z", "R", "E", "F"):
        if key in data:
            h.update(hashlib.md5(np.ascontiguousarray(data[key]).ravel()).digest())
    return h.hexdigest().encode("utf-8")


def write_npz(path: str | Path, arrays: dict[str, Any], compress: bool = True) -> Path:
    """``np.savez``-compatible archive, written atomically (temporary file in the same folder,
    fsync, rename) and byte-reproducibly (fixed zip timestamps, keys in the given order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=method) as zf:
                for key, value in arrays.items():
                    info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
                    info.compress_type = method
                    info.external_attr = 0o644 << 16
                    with zf.open(info, "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dataset_arrays(name: str, z: np.ndarray, R: np.ndarray, E: np.ndarray, F: np.ndarray, Q: np.ndarray,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """The arrays of an sGDML dataset file (see the module docstring), in writing order."""
    d: dict[str, Any] = {
        "type": np.array("d"),
        "name": np.array(name),
        "theory": np.array(theory_string()),
        "r_unit": np.array("Ang"),
        "e_unit": np.array("kcal/mol"),
        "z": np.asarray(z, dtype=np.int64),
        "R": np.asarray(R, dtype=np.float64),
        "E": np.asarray(E, dtype=np.float64).reshape(-1, 1),
        "F": np.asarray(F, dtype=np.float64),
        "Q": np.asarray(Q, dtype=np.float64),
    }
    d["E_min"], d["E_max"] = np.float64(d["E"].min()), np.float64(d["E"].max())
    d["E_mean"], d["E_var"] = np.float64(d["E"].mean()), np.float64(d["E"].var())
    d["F_min"], d["F_max"] = np.float64(d["F"].min()), np.float64(d["F"].max())
    d["F_mean"], d["F_var"] = np.float64(d["F"].mean()), np.float64(d["F"].var())
    d["md5"] = np.array(sgdml_md5(d))
    d["xtb_md"] = np.array(json.dumps(meta, sort_keys=True))
    return d


# --------------------------------------------------------------------------- GFN2-xTB


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


# --------------------------------------------------------------------------- MD


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


# --------------------------------------------------------------------------- entry point


def xtb_md(output: str | Path, *, molecule_name: str | None = None, smiles: str | None = None,
           structure: str | Path | None = None, name: str | None = None, seed: int = 0, **md) -> Path:
    """Build the starting structure (exactly one of ``molecule_name``, ``smiles``, ``structure``)
    and run :func:`run_md` (keyword arguments as there). The RDKit embedding uses ``seed`` too."""
    given = [k for k, v in (("molecule", molecule_name), ("smiles", smiles), ("structure", structure)) if v]
    if len(given) != 1:
        raise DataError(f"give exactly one of --molecule, --smiles, --structure (got {', '.join(given) or 'none'})")
    tblite_version()  # fail before building anything when tblite is missing
    if molecule_name:
        mol = molecule(molecule_name, seed=seed)
    elif smiles:
        mol = from_smiles(smiles, seed=seed)
    else:
        mol = from_file(structure)
    if name:
        mol.name = name
    return run_md(mol, output, seed=seed, **md)


# --------------------------------------------------------------------------- the MD22 molecules

# L-alanine (S) throughout: the brief's SMILES CC(=O)NC(C)C(=O)NC(C)C(=O)NC(C)C(=O)NC without
# stereo tags would let ETKDG pick D or L at random for each residue.
AC_ALA3_NHME = "CC(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)N[C@@H](C)C(=O)NC"
# docosahexaenoic acid, all-cis-4,7,10,13,16,19 (22:6 n-3), C22H32O2
DHA = "CC/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\C/C=C\\CCC(=O)O"
# stachyose, alpha-D-Gal-(1->6)-alpha-D-Gal-(1->6)-alpha-D-Glc-(1<->2)-beta-D-Fru, C24H42O21;
# CIP labels checked with RDKit: Gal C1 S, C2 R, C3 S, C4 R, C5 R (both); Glc C1 R, C2 R, C3 S,
# C4 S, C5 R; Fru C2 S, C3 S, C4 S, C5 R (as in sucrose's and raffinose's IUPAC names)
STACHYOSE = ("OC[C@H]1O[C@H](OC[C@H]2O[C@H](OC[C@H]3O[C@H](O[C@]4(CO)O[C@H](CO)[C@@H](O)[C@@H]4O)"
             "[C@H](O)[C@@H](O)[C@@H]3O)[C@H](O)[C@@H](O)[C@H]2O)[C@H](O)[C@@H](O)[C@H]1O")

MOLECULES.update({
    "Ac-Ala3-NHMe": Spec(42, "C12H22N4O4", smiles=AC_ALA3_NHME, note="N-acetyl-L-alanyl-L-alanyl-L-alanine methylamide"),
    "DHA": Spec(56, "C22H32O2", smiles=DHA, note="docosahexaenoic acid, all-cis"),
    "stachyose": Spec(87, "C24H42O21", smiles=STACHYOSE, note="tetrasaccharide Gal-Gal-Glc-Fru"),
})
_ALIASES.update({_norm(k): k for k in MOLECULES})


# --------------------------------------------------------------------------- non-covalent complexes
#
# The nucleobases carry H where DNA has its sugar (9H-adenine/guanine, 1H-thymine/cytosine), as
# in MD22. Atom map numbers label the atoms used below: 9 the glycosidic N, the others the
# Watson-Crick donors/acceptors (ring numbering: A N1 = 11, N6 = 6; T N3 = 3, O4 = 4, O2 = 2;
# G N1 = 11, N2 = 2, O6 = 6; C N3 = 3, N4 = 4, O2 = 2).
_BASES = {
    "A": "[NH2:6]c1[n:11]c[n:3]c2[nH:9]c[n:7]c12",
    "T": "Cc1c[nH:9]c(=[O:2])[nH:3]c1=[O:4]",
    "G": "[NH2:2]c1[nH:11]c(=[O:6])c2[n:7]c[nH:9]c2[n:3]1",
    "C": "[NH2:4]c1cc[nH:9]c(=[O:2])[n:3]1",
}
# Watson-Crick hydrogen bonds: (donor base, donor label, acceptor label, donor-acceptor distance Å)
_WATSON_CRICK = {"AT": [("A", 6, 4, 2.95), ("T", 3, 11, 2.85)],
                 "CG": [("C", 4, 6, 2.91), ("G", 11, 3, 2.95), ("G", 2, 2, 2.86)]}
_MAJOR_GROOVE = {"A": 6, "T": 4, "G": 6, "C": 4}  # N6/O4/O6/N4 face the major groove
RISE, TWIST = 3.38, 36.0  # B-DNA step (Å, degrees)


def _embed(smiles: str, seed: int):
    Chem = _import("rdkit.Chem", "rdkit", "building a molecule")
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise DataError(f"RDKit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    x = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    labels = {a.GetAtomMapNum(): a.GetIdx() for a in mol.GetAtoms() if a.GetAtomMapNum()}
    return mol, z, x, labels


def _hydrogen_toward(mol, x: np.ndarray, i: int, point: np.ndarray) -> int:
    hs = [n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetAtomicNum() == 1]
    return min(hs, key=lambda h: float(np.linalg.norm(x[h] - point)))


@functools.lru_cache(maxsize=16)
def _base_pair(code: str, seed: int):
    """A Watson-Crick pair ``code`` (strand-I base first: AT, TA, CG, GC) as (z, x, frame): the
    strand-II base is placed as a rigid body (RDKit/MMFF geometry) so that the Watson-Crick
    donor-acceptor distances, near-linear N-H...X and coplanarity hold (least squares, 24 seeded
    starts). ``frame`` = (origin, 3x3 axes) of the pair in the spirit of the standard base-pair
    reference frame (Olson et al., J. Mol. Biol. 313, 229 (2001)): y from strand II to strand I
    along C1'...C1' (virtual C1' atoms 1.47 Å out along the glycosidic N-H), x toward the major
    groove, z = x × y; origin 2.6 Å from the C1'...C1' midpoint toward the major groove, where a
    B-DNA helix axis passes."""
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation

    b1, b2 = code[0], code[1]
    hbonds = _WATSON_CRICK.get(code) or _WATSON_CRICK[code[::-1]]
    m1, z1, x1, l1 = _embed(_BASES[b1], seed)
    m2, z2, x2, l2 = _embed(_BASES[b2], seed)
    heavy = x1[z1 > 1]
    c1 = heavy.mean(0)
    normal = np.linalg.svd(heavy - c1)[2][2]
    x2c = x2 - x2.mean(0)

    def place(p):
        return Rotation.from_rotvec(p[:3]).apply(x2c) + p[3:]

    def loss(p):
        y = place(p)
        total = 0.0
        for donor, dlab, alab, d0 in hbonds:
            if donor == b1:
                D, X = x1[l1[dlab]], y[l2[alab]]
                H = x1[_hydrogen_toward(m1, x1, l1[dlab], X)]
            else:
                D, X = y[l2[dlab]], x1[l1[alab]]
                H = y[_hydrogen_toward(m2, y, l2[dlab], X)]
            dh = np.linalg.norm(H - D)
            total += (np.linalg.norm(D - X) - d0) ** 2 + (np.linalg.norm(H - X) - (d0 - dh)) ** 2
        total += 0.1 * np.sum(((y[z2 > 1] - c1) @ normal) ** 2)
        dist = np.linalg.norm(y[:, None] - x1[None], axis=-1)
        return total + 10.0 * np.sum(np.clip(1.7 - dist, 0.0, None) ** 2)

    hb = np.mean([x1[l1[k]] for k in l1 if k != 9], axis=0)
    away = hb - c1
    away -= (away @ normal) * normal
    away /= np.linalg.norm(away)
    best = None
    for k in range(24):
        p0 = np.concatenate([Rotation.random(random_state=k).as_rotvec(), c1 + 7.0 * away])
        r = minimize(loss, p0, method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    y = place(best.x)

    def c1prime(mol, x, lab):
        n = lab[9]
        h = _hydrogen_toward(mol, x, n, x[n])
        return x[n] + 1.47 * (x[h] - x[n]) / np.linalg.norm(x[h] - x[n])

    p1, p2 = c1prime(m1, x1, l1), c1prime(m2, y, l2)
    ey = (p1 - p2) / np.linalg.norm(p1 - p2)
    groove = 0.5 * (x1[l1[_MAJOR_GROOVE[b1]]] + y[l2[_MAJOR_GROOVE[b2]]]) - 0.5 * (p1 + p2)
    ex = groove - (groove @ ey) * ey
    ex /= np.linalg.norm(ex)
    ez = np.cross(ex, ey)
    origin = 0.5 * (p1 + p2) + 2.6 * ex
    z, x = np.concatenate([z1, z2]), np.concatenate([x1, y])
    for arr in (z, x, origin):
        arr.flags.writeable = False  # cached: shared between calls
    return z, x, (origin, np.stack([ex, ey, ez], axis=1)), float(best.fun)


def base_pair_stack(pairs: list[str], seed: int = 42, name: str | None = None) -> Molecule:
    """Watson-Crick pairs stacked as a B-DNA fragment without backbone: pair k is rotated by
    k·36° about the helix axis (z of its base-pair frame) and raised by k·3.38 Å."""
    zs, xs, fits = [], [], []
    for k, code in enumerate(pairs):
        z, x, (origin, axes), fit = _base_pair(code, seed)
        local = (x - origin) @ axes  # coordinates in the pair's frame
        a = np.radians(TWIST * k)
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        zs.append(z)
        xs.append(local @ rot.T + np.array([0.0, 0.0, RISE * k]))
        fits.append(fit)
    x = np.concatenate(xs)
    return Molecule(name or "-".join(pairs), np.concatenate(zs), x - x.mean(0), {
        "construction": f"Watson-Crick pairs {'-'.join(pairs)} (strand-I base first) stacked as B-DNA without "
                        f"backbone: rise {RISE} Å, twist {TWIST}°; bases RDKit ETKDG + MMFF94, each pair a "
                        f"rigid-body least-squares fit of its Watson-Crick hydrogen bonds",
        "embed_seed": int(seed), "pair_fit_residual": fits})





def _catcher_mol():
    """Sygula's buckycatcher C60H28 (J. Am. Chem. Soc. 129, 3842 (2007)) as an RDKit molecule:
    a cyclooctatetraene whose four bonds 1-2, 3-4, 5-6, 7-8 are benzo-fused; the benzo rings on
    bonds 1-2 and 5-6 are in turn fused to a rim C-C bond of a corannulene (the two pincers)."""
    Chem = _import("rdkit.Chem", "rdkit", "building the buckyball catcher")
    cor = Chem.MolFromSmiles("c1cc2ccc3ccc4ccc5ccc1c1c2c3c4c51")
    rw = Chem.RWMol()
    aromatic, single = Chem.BondType.AROMATIC, Chem.BondType.SINGLE

    def carbons(n):
        out = []
        for _ in range(n):
            a = Chem.Atom(6)
            a.SetIsAromatic(True)
            out.append(rw.AddAtom(a))
        return out

    pincers = []
    rim = next(b for b in cor.GetBonds() if b.GetBeginAtom().GetTotalNumHs() == 1 and b.GetEndAtom().GetTotalNumHs() == 1)
    for _ in range(2):
        off = rw.GetNumAtoms()
        carbons(cor.GetNumAtoms())
        for b in cor.GetBonds():
            rw.AddBond(b.GetBeginAtomIdx() + off, b.GetEndAtomIdx() + off, aromatic)
        i, j = rim.GetBeginAtomIdx() + off, rim.GetEndAtomIdx() + off
        b1, b2, b3, b4 = carbons(4)
        for p, q in ((i, b1), (b1, b2), (b2, b3), (b3, b4), (b4, j)):
            rw.AddBond(p, q, aromatic)
        pincers.append((b2, b3))
    benzo = []
    for _ in range(2):
        r = carbons(6)
        for t in range(6):
            rw.AddBond(r[t], r[(t + 1) % 6], aromatic)
        benzo.append((r[0], r[1]))
    (u1a, u1b), (u2a, u2b) = pincers
    (z1a, z1b), (z2a, z2b) = benzo
    for p, q in ((u1b, z1a), (z1b, u2a), (u2b, z2a), (z2b, u1a)):  # the cyclooctatetraene ring
        rw.AddBond(p, q, single)
    mol = rw.GetMol()
    Chem.SanitizeMol(mol)
    return mol


def buckyball_catcher(seed: int = 42, name: str | None = None, attempts: int = 20) -> Molecule:
    """C60 in the buckycatcher C60H28 (148 atoms): ETKDG embedding of the catcher, both corannulene
    bowls pre-bent toward each other (their concave faces form the cleft), C60 (ase) moved along
    the cleft from the tether outward until no contact is below 3 Å, then UFF optimisation of
    the whole complex (MMFF94 flattens corannulene; UFF keeps its bowl, depth ~0.9 Å).

    Accepted when C60 ends up inside the cleft: its centre 6.3-7.5 Å from both corannulene hub
    (five-ring) centroids and no C60-catcher contact below 3.0 Å. Some ETKDG conformers of the
    tether leave the ball outside; then the embedding seed is increased (up to ``attempts``
    times; the seed used is recorded)."""
    for k in range(attempts):
        mol = _buckyball_catcher_once(seed + k, name)
        s = mol.source
        if all(6.3 < d < 7.5 for d in s["c60_centre_to_corannulene_hub_A"]) and s["closest_c60_catcher_contact_A"] > 3.0:
            s["embed_seed_requested"] = int(seed)
            return mol
    raise DataError(f"buckyball-catcher: no embedding with C60 inside the cleft for seeds {seed}..{seed + attempts - 1}")


def _buckyball_catcher_once(seed: int, name: str | None) -> Molecule:
    Chem = _import("rdkit.Chem", "rdkit", "building the buckyball catcher")
    from ase.build import molecule as ase_molecule
    from rdkit.Chem import AllChem

    catcher = Chem.AddHs(_catcher_mol())
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(catcher, params) != 0:
        raise DataError("buckyball-catcher: RDKit could not embed the catcher")
    x = np.asarray(catcher.GetConformer().GetPositions(), dtype=np.float64)
    rings = catcher.GetRingInfo().AtomRings()
    hubs = [x[list(r)].mean(0) for r in rings if len(r) == 5]
    cot = x[list(next(r for r in rings if len(r) == 8))].mean(0)
    for k, hub in enumerate(hubs):  # bend each corannulene into a bowl opening toward the other
        axis = (hubs[1 - k] - hub) / np.linalg.norm(hubs[1 - k] - hub)
        d = np.linalg.norm(x - hub, axis=1)
        bowl = (d > 1.3) & (d < 4.6)
        x[bowl] += axis * (0.45 * (d[bowl] - 1.2) / 2.4)[:, None]
    c60 = ase_molecule("C60").positions
    c60 = c60 - c60.mean(0)
    mid = 0.5 * (hubs[0] + hubs[1])
    out = (mid - cot) / np.linalg.norm(mid - cot)
    for shift in np.arange(-3.0, 12.0, 0.25):
        ball = c60 + mid + shift * out
        if np.linalg.norm(ball[:, None] - x[None], axis=-1).min() > 3.0:
            break
    ball_mol = Chem.RWMol()
    for _ in range(60):
        a = Chem.Atom(6)
        a.SetIsAromatic(True)
        a.SetNoImplicit(True)
        ball_mol.AddAtom(a)
    dist = np.linalg.norm(c60[:, None] - c60[None], axis=-1)
    for i, j in zip(*np.nonzero(np.triu(dist < 1.6, 1))):
        ball_mol.AddBond(int(i), int(j), Chem.BondType.AROMATIC)
    complex_ = Chem.CombineMols(catcher, ball_mol.GetMol())
    Chem.SanitizeMol(complex_)
    conf = Chem.Conformer(complex_.GetNumAtoms())
    for i, p in enumerate(np.concatenate([x, ball])):
        conf.SetAtomPosition(i, p.tolist())
    complex_.RemoveAllConformers()
    complex_.AddConformer(conf, assignId=True)
    ff = AllChem.UFFGetMoleculeForceField(complex_, ignoreInterfragInteractions=False)
    ff.Initialize()
    converged = ff.Minimize(maxIts=20000) == 0
    pos = np.asarray(ff.Positions(), dtype=np.float64).reshape(-1, 3)
    z = np.array([a.GetAtomicNum() for a in complex_.GetAtoms()], dtype=np.int64)
    n = catcher.GetNumAtoms()
    centre = pos[n:].mean(0)
    hub_d = [float(np.linalg.norm(centre - pos[list(r)].mean(0))) for r in rings if len(r) == 5]
    return Molecule(name or "buckyball-catcher", z, pos - pos.mean(0), {
        "construction": "C60 (ase.build.molecule) in the buckycatcher C60H28 (RDKit ETKDG, corannulene bowls bent "
                        "toward each other), UFF-optimised complex",
        "catcher_smiles": Chem.MolToSmiles(_catcher_mol()), "embed_seed": int(seed),
        "uff_converged": bool(converged), "c60_centre_to_corannulene_hub_A": hub_d,
        "closest_c60_catcher_contact_A": float(np.linalg.norm(pos[n:, None] - pos[None, :n], axis=-1).min())})


MOLECULES.update({
    "AT-AT": Spec(60, "C20H22N14O4", builder=lambda seed: base_pair_stack(["AT", "AT"], seed),
                  note="two stacked Watson-Crick A·T pairs (B-DNA step, no backbone)"),
    "AT-AT-CG-CG": Spec(118, "C38H42N30O8", builder=lambda seed: base_pair_stack(["AT", "AT", "CG", "CG"], seed),
                        note="four stacked Watson-Crick pairs A·T, A·T, C·G, C·G (B-DNA, no backbone)"),
    "buckyball-catcher": Spec(148, "C120H28", builder=buckyball_catcher,
                              note="C60 in Sygula's buckycatcher C60H28"),
})
_ALIASES.update({_norm(k): k for k in MOLECULES})
