r"""Shared machinery of the long-range generators: the LMDB writing, splits and GFN2-xTB.

Writing. A generator is a :class:`GeneratedSource` (a :class:`phizoo.data.convert.Source`
without source files): ``structure(i)`` computes frame ``i``. :func:`write` hands it to
:func:`phizoo.data.convert.convert`, the converters' pipeline, so a generated database is the
same kind of file as a converted one: records validated and checksummed, metadata with units,
statistics and splits, written to ``.<name>.partial`` and renamed onto the destination only
when complete. Interrupting (Ctrl-C; the CLI turns ``kill``/SIGTERM into Ctrl-C) keeps the
records written so far and the same command continues; the fingerprint that must match is the
generator's options and seed (:meth:`GeneratedSource.options`). The number of frames is not
part of it, so a rerun may also ask for more frames than the interrupted one.

Reproducibility. Frame ``i`` is a deterministic function of the options, the seed and ``i``
(the dimers and clusters: independent single points; the point charges: one seeded MD
trajectory, whose state is checkpointed), so the first N frames of an (N + M)-frame run are
the frames of an N-frame run, and a resumed run writes the records an uninterrupted one would.

GFN2-xTB. :func:`xtb_singlepoint` runs tblite (``tblite.interface.Calculator``) on one
structure from the atomic starting guess (no wavefunction carried between frames: a frame does
not depend on the one before), with the total charge and the number of unpaired electrons
given. tblite works in Bohr and Hartree; energies are converted with ``ase.units.Hartree``,
gradients with ``Hartree / Bohr``, dipoles (e·Bohr, about the coordinate origin) with
``Bohr`` and moved to the geometric centre of the structure, ``μ = μ₀ − Q c`` (phizoo's
convention, :func:`phizoo.heads.electrostatics.dipole_moment`). When the SCC does not
converge with tblite's defaults, one retry with mixer damping 0.1 and 1000 iterations is
made (deterministic; the record's ``meta["scc"]`` says which); a second failure is an error
naming the frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...data.convert import Source, Structure, convert, random_split, round_half_up
from ...data.errors import DataError
from ..optional import INSTALL_HINT, MissingDependencyError, tblite_version  # noqa: F401 (re-exported)
from ..optional import _import as require

K_E = 14.399645  # eV·Å/e², Coulomb's constant e²/(4πε₀) (as phizoo.heads.electrostatics.K_E)
SPLIT_FRACTIONS = (0.8, 0.1)  # train, val; test = the rest


def phizoo_version() -> str:
    from ... import __version__

    return __version__


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


# ----------------------------------------------------------------------------------- sources


class GeneratedSource(Source):
    """A :class:`~phizoo.data.convert.Source` whose structures are computed, not read."""

    fit_references = False  # overridden where compositions vary
    progress = False        # set by write(): progress bars of a generator's own long steps

    def __init__(self, name: str, frames: int):
        if isinstance(frames, bool) or int(frames) != frames or int(frames) < 1:
            raise DataError(f"the number of frames must be a positive integer, got {frames!r}")
        self.name = name
        self.frames = int(frames)

    def files(self) -> list[Path]:
        return []

    @property
    def label(self) -> str:
        return self.name

    def __len__(self) -> int:
        return self.frames

    def where(self, i: int) -> str:
        return f"{self.name}: frame {i}"

    def splits(self, n: int, seed: int):
        return frame_split(n, seed)

    # called by write()
    def discard_checkpoint(self, dest: Path) -> None:
        """Forget any state an interrupted run left beside ``dest`` (``--restart``)."""

    def bind(self, dest: Path) -> None:
        """The destination is known (generators that checkpoint state beside it)."""

    def finished(self, dest: Path) -> None:
        """The database is complete: remove the generator's own checkpoint files."""


def frame_split(n: int, seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS):
    """Shuffled train/val/test split of ``n`` frames (80/10/10 %, sizes rounded half up, at
    least one validation frame from 3 frames on)."""
    n_train = round_half_up(fractions[0] * n)
    n_val = min(max(round_half_up(fractions[1] * n), 1 if n >= 3 else 0), n - n_train)
    splits = random_split(n, {"train": n_train, "val": n_val}, seed, rest="test")
    return splits, {"policy": f"shuffled train/val/test split of all frames, {fractions[0]:.0%}/"
                              f"{fractions[1]:.0%}/rest (numpy default_rng(seed).permutation)"}


def group_split(groups: Sequence[Any], seed: int, what: str, fractions: Sequence[float] = SPLIT_FRACTIONS):
    """Train/val/test split that keeps every group (a dimer curve, an Ag3 geometry) in one split:
    the distinct groups, in order of first appearance, are shuffled with
    ``numpy.random.default_rng(seed)`` and cut 80/10/rest %; a frame goes where its group goes."""
    groups = list(groups)
    keys = list(dict.fromkeys(groups))
    splits_g, _ = frame_split(len(keys), seed, fractions)
    where = {}
    for name, idx in splits_g.items():
        for k in idx:
            where[keys[int(k)]] = name
    out = {name: np.array([i for i, g in enumerate(groups) if where[g] == name], dtype=np.int64)
           for name in ("train", "val", "test")}
    plural = what[:-1] + "ies" if what.endswith("y") else what + "s"
    return out, {"policy": f"shuffled train/val/test split of the {len(keys)} {plural}, {fractions[0]:.0%}/"
                           f"{fractions[1]:.0%}/rest (numpy default_rng(seed).permutation); all frames of a "
                           f"{what} are in the same split"}


def write(source: GeneratedSource, dest: str | Path, *, seed: int, overwrite: bool = False, resume: bool = True,
          progress: bool = True, on_record: Callable[[int], None] | None = None) -> Path:
    """Write ``source`` to the database ``dest`` with :func:`phizoo.data.convert.convert`."""
    dest = Path(dest)
    if dest.is_dir():
        raise DataError(f"{dest}: is a directory; give a file name such as data/lr/{source.dataset}.lmdb")
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: already exists; pass --overwrite (overwrite=True) to replace it")
    if not resume:
        source.discard_checkpoint(dest)
    source.bind(dest)
    source.progress = progress
    path = convert(source, dest, seed=seed, overwrite=overwrite, resume=resume, progress=progress,
                   on_record=on_record)
    source.finished(dest)
    return path


# ------------------------------------------------------------------------------------ GFN2-xTB


def xtb_theory(electronic_temperature: float | None = None) -> str:
    """The level of theory recorded in the metadata, as ``phizoo data xtb-md`` writes it (plus
    the electronic temperature when it is not tblite's default, 300 K)."""
    extra = "" if electronic_temperature is None else f", electronic temperature {electronic_temperature:g} K"
    return f"GFN2-xTB (tblite {tblite_version()}){extra}"


_RETRY = {"mixer-damping": 0.1, "max-iter": 1000}


def xtb_singlepoint(z: np.ndarray, pos: np.ndarray, charge: int = 0, uhf: int = 0, accuracy: float = 1.0,
                    where: str = "", electronic_temperature: float | None = None) -> dict[str, Any]:
    """GFN2-xTB single point (module docstring): ``energy`` eV, ``forces`` [N, 3] eV/Å, ``charges``
    [N] e (Mulliken), ``dipole`` [3] e·Å about the geometric centre, ``scc`` ("default"/"damped").
    ``electronic_temperature`` (K): Fermi smearing of the occupations (tblite's default: 300 K);
    the energy is then the electronic free energy, of which the forces are the gradient."""
    from ase import units

    interface = require("tblite.interface", "tblite", "GFN2-xTB")
    z = np.asarray(z, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    err = None
    for scc, extra in (("default", {}), ("damped", _RETRY)):
        calc = interface.Calculator("GFN2-xTB", z, pos / units.Bohr, charge=float(charge), uhf=int(uhf))
        calc.set("verbosity", 0)
        calc.set("accuracy", float(accuracy))
        if electronic_temperature is not None:
            calc.set("temperature", float(electronic_temperature) * units.kB / units.Hartree)
        for k, v in extra.items():
            calc.set(k, v)
        try:
            res = calc.singlepoint()
        except RuntimeError as e:  # TBLiteRuntimeError: SCF not converged
            err = e
            continue
        e = float(res.get("energy")) * units.Hartree
        f = -np.array(res.get("gradient"), dtype=np.float64) * (units.Hartree / units.Bohr)
        q = np.array(res.get("charges"), dtype=np.float64)
        mu = np.array(res.get("dipole"), dtype=np.float64) * units.Bohr - float(charge) * pos.mean(0)
        if not (np.isfinite(e) and np.isfinite(f).all() and np.isfinite(q).all() and np.isfinite(mu).all()):
            raise DataError(f"GFN2-xTB returned non-finite values{' at ' + where if where else ''}")
        return {"energy": e, "forces": f, "charges": q, "dipole": mu, "scc": scc}
    raise DataError(f"GFN2-xTB: the SCC did not converge{' at ' + where if where else ''} (also not with mixer "
                    f"damping 0.1 and 1000 iterations): {err}")


def xtb_optimise(z: np.ndarray, pos: np.ndarray, charge: int = 0, uhf: int = 0, fmax: float = 0.005,
                 steps: int = 1000) -> tuple[np.ndarray, dict[str, Any]]:
    """GFN2-xTB geometry optimisation (ASE BFGS until max |F| < ``fmax`` eV/Å): (positions Å,
    record of the optimisation). Deterministic."""
    import warnings

    from ase import Atoms
    from ase.calculators.calculator import Calculator, all_changes
    from ase.optimize import BFGS

    class _XTB(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            r = xtb_singlepoint(self.atoms.numbers, self.atoms.positions, charge, uhf, where="optimisation")
            self.results = {"energy": r["energy"], "forces": r["forces"]}

    atoms = Atoms(numbers=np.asarray(z), positions=np.asarray(pos, dtype=np.float64))
    if len(atoms) == 1:
        return atoms.positions.copy(), {"optimised": False, "reason": "one atom"}
    atoms.calc = _XTB()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = BFGS(atoms, logfile=None)
        converged = bool(opt.run(fmax=fmax, steps=steps))
    fm = float(np.abs(atoms.get_forces()).max())
    if not converged:
        raise DataError(f"GFN2-xTB optimisation of {atoms.get_chemical_formula()} (charge {charge}) did not reach "
                        f"max |F| < {fmax} eV/Å in {steps} steps (max |F| {fm:.3g})")
    return atoms.positions.copy(), {"optimised": True, "optimiser": "ase BFGS", "fmax_eV_per_A": fmax,
                                    "steps": int(opt.nsteps), "energy_eV": float(atoms.get_potential_energy())}


def from_smiles(smiles: str, seed: int = 42) -> tuple[np.ndarray, np.ndarray, int]:
    """(atomic numbers, positions Å centred at the geometric centre, formal charge) of a SMILES
    string, built by :func:`phizoo.generate.structure.from_smiles` (RDKit ETKDGv3, MMFF94)."""
    from ..structure import from_smiles as build

    mol = build(smiles, seed=seed)  # errors (unparsable SMILES, no embedding) name the SMILES
    Chem = require("rdkit.Chem", "rdkit", "building a molecule from SMILES")
    return mol.z, mol.pos - mol.pos.mean(0), int(Chem.GetFormalCharge(Chem.MolFromSmiles(smiles)))


def rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (Shoemake's quaternion method) from ``rng``."""
    u1, u2, u3 = rng.random(3)
    a, b = np.sqrt(1.0 - u1), np.sqrt(u1)
    w, x = a * np.sin(2 * np.pi * u2), a * np.cos(2 * np.pi * u2)
    y, zz = b * np.sin(2 * np.pi * u3), b * np.cos(2 * np.pi * u3)
    return np.array([[1 - 2 * (y * y + zz * zz), 2 * (x * y - zz * w), 2 * (x * zz + y * w)],
                     [2 * (x * y + zz * w), 1 - 2 * (x * x + zz * zz), 2 * (y * zz - x * w)],
                     [2 * (x * zz - y * w), 2 * (y * zz + x * w), 1 - 2 * (x * x + y * y)]])


def frame_rng(seed: int, *keys: int) -> np.random.Generator:
    """The random generator of one frame/curve: ``default_rng([seed, *keys])`` (independent of the
    other frames, so frames can be computed in any order and a resumed run draws the same)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def check_seed_and_accuracy(seed, accuracy) -> None:
    """One-line errors for a seed that is not a non-negative integer or a non-positive tblite accuracy."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise DataError(f"seed = {seed!r} must be a non-negative integer")
    if not (np.isfinite(accuracy) and accuracy > 0):
        raise DataError(f"accuracy = {accuracy} must be positive")


def unpaired_electrons(z: np.ndarray, charge: int) -> int:
    """Lowest number of unpaired electrons of atoms ``z`` at total charge ``charge``: 0 or 1."""
    return int((int(np.sum(z)) - charge) % 2)


def xtb_structure(z: np.ndarray, pos: np.ndarray, charge: int, uhf: int, accuracy: float, id: str, where: str,
                  meta: dict[str, Any], electronic_temperature: float | None = None) -> Structure:
    """One GFN2-xTB frame as a :class:`~phizoo.data.convert.Structure` (energy, forces, charges,
    dipole, total charge, spin multiplicity ``uhf + 1``)."""
    r = xtb_singlepoint(z, pos, charge, uhf, accuracy, where, electronic_temperature)
    return Structure(z=np.asarray(z, dtype=np.int64), pos=np.asarray(pos, dtype=np.float64), energy=r["energy"],
                     forces=r["forces"], charges=r["charges"], dipole=r["dipole"], total_charge=float(charge),
                     spin=float(uhf + 1), id=id, meta={**meta, "scc": r["scc"]})
