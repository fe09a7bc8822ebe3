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
state (written atomically every ``checkpoint_every`` frames and on Ctrl-C / SIGTERM); running
the same command again continues from it. ``frames`` and ``checkpoint_every`` are not part of
the run's identity: asking for more frames in a rerun extends an interrupted run. The output
is written once, atomically (temporary file, then rename), and the checkpoint removed.
Same inputs, seed and thread count give a byte-identical file (zip entries carry a fixed
timestamp); multi-threaded BLAS/OpenMP may change the last digits between thread counts.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
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
    if len(mol.z) != spec.md22_atoms:
        raise DataError(f"{key}: built {len(mol.z)} atoms but MD22's {key} has {spec.md22_atoms}")
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
