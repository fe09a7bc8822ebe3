r"""Your own data: any file ``ase.io.read(path, index=":")`` reads (extxyz, ASE db, traj, ...).

    phizoo data convert ase train.extxyz more.traj -o mine.lmdb --energy-unit kcal/mol

Every frame of every file (in the order given) becomes one record: ``z``, ``pos``, ``energy``
and, when the files hold them, ``forces``, ``stress``, ``charges``, ``total_charge``,
``spin``, ``cell``/``pbc``. Where a value is looked up (``key`` selectable per quantity):

* per structure (energy, stress, total charge, spin): ``atoms.info[key]``, else the attached
  calculator's results (what ASE's extxyz/traj/db readers fill in for ``energy``/``stress``);
* per atom (forces, charges): ``atoms.arrays[key]``, else the calculator's results.

Energy is required in every frame. Each optional quantity is taken when the FIRST frame has it
(or when its key is given explicitly, then it is required) and must then be in every frame.
Cell and pbc are stored for every frame when any frame is periodic.

Units are declared, converted to phizoo's (eV, Å, eV/Å, eV/Å³, e) with ASE's constants and
recorded in the metadata: ``energy_unit`` ∈ {eV, kcal/mol, kJ/mol, Hartree}, ``length_unit`` ∈
{Ang, Bohr}; forces scale as energy/length, stress as energy/length³ (ASE's sign: (1/V) ∂E/∂ε).

Checks, each an error naming the file and frame: missing energy (listing the keys the frame
has), a quantity missing from a later frame, shapes, a singular periodic cell, a spin
multiplicity impossible for the electron count, coincident atoms (``phizoo.validate``).

Splits: shuffled train/val/test (default 80/10/10 %, or ``--train-size``/``--val-size``/
``--test-size``); element references are fitted on the training split only (``convert``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .convert import Source, Structure, check_limit, train_val_test_split
from .errors import DataError, DataFileNotFoundError

ENERGY_UNITS = ("eV", "kcal/mol", "kJ/mol", "Hartree")
LENGTH_UNITS = ("Ang", "Bohr")
OPTIONAL = ("forces", "stress", "charges", "total_charge", "spin")
PER_ATOM = ("forces", "charges")
DEFAULT_KEYS = {"energy": "energy", "forces": "forces", "stress": "stress", "charges": "charges",
                "total_charge": "charge", "spin": "spin"}


def unit_factors(energy_unit: str, length_unit: str) -> dict[str, float]:
    """Multipliers from the declared units to eV, Å, eV/Å, eV/Å³ (ASE's CODATA constants)."""
    from ase import units

    e = {"eV": 1.0, "kcal/mol": units.kcal / units.mol, "kJ/mol": units.kJ / units.mol,
         "Hartree": units.Hartree}.get(energy_unit)
    length = {"Ang": 1.0, "Bohr": units.Bohr}.get(length_unit)
    if e is None:
        raise DataError(f"unknown energy unit {energy_unit!r}; choose one of {', '.join(ENERGY_UNITS)}")
    if length is None:
        raise DataError(f"unknown length unit {length_unit!r}; choose one of {', '.join(LENGTH_UNITS)}")
    return {"energy": e, "length": length, "forces": e / length, "stress": e / length ** 3}


def _lookup(atoms, key: str, per_atom: bool):
    table = atoms.arrays if per_atom else atoms.info
    if key in table:
        return table[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    return results.get(key)


def _available(atoms) -> str:
    calc = getattr(atoms, "calc", None)
    results = sorted((getattr(calc, "results", None) or {}))
    return (f"info keys {sorted(atoms.info)}, per-atom arrays {sorted(atoms.arrays)}, "
            f"calculator results {results}")


def _read(path: Path, format: str | None) -> list:
    """All frames; for an ASE database the rows' key-value pairs and data are put into ``atoms.info``
    (``ase.io.read`` drops them; ``charge`` is reserved there: store the total charge under another key)."""
    import ase.io

    if format == "db" or (format is None and path.suffix == ".db"):
        import ase.db

        out = []
        for row in ase.db.connect(str(path)).select():
            atoms = row.toatoms()
            atoms.info.update(row.key_value_pairs)
            atoms.info.update(row.get("data") or {})
            out.append(atoms)
        return out
    return ase.io.read(str(path), index=":", format=format)


def _stress_3x3(value, where: str) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    s = np.asarray(value, dtype=np.float64)
    if s.size == 6:
        return voigt_6_to_full_3x3_stress(s.reshape(6))
    if s.size == 9:
        return s.reshape(3, 3)
    raise DataError(f"{where}: stress has {s.size} components; expected 6 (Voigt) or 9 (3x3)")


class ASESource(Source):
    """Frames of one or more ASE-readable files (see the module docstring)."""

    dataset = "ase"

    def __init__(self, paths: str | Path | Sequence[str | Path], *, limit: int | None = None,
                 keys: dict[str, str | None] | None = None, energy_unit: str = "eV", length_unit: str = "Ang",
                 train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
                 name: str | None = None, theory: str | None = None, format: str | None = None):
        paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        if not paths:
            raise DataError("give at least one structure file")
        self.paths = paths
        self.factors = unit_factors(energy_unit, length_unit)
        self.energy_unit, self.length_unit = energy_unit, length_unit
        given = {k: v for k, v in (keys or {}).items() if v}
        unknown = set(given) - set(DEFAULT_KEYS)
        if unknown:
            raise DataError(f"unknown quantities {sorted(unknown)}; keys can be set for {', '.join(DEFAULT_KEYS)}")
        self.keys = {**DEFAULT_KEYS, **given}
        self.train_size, self.val_size, self.test_size = train_size, val_size, test_size
        self.name, self.theory, self.format = name, theory, format
        self.frames: list[tuple[Path, int, Any]] = []
        limit = check_limit(limit)
        for p in paths:
            if not p.exists():
                raise DataFileNotFoundError(f"{p}: no such file")
            try:
                frames = _read(p, format)
            except Exception as err:  # ase raises many types for unreadable files
                raise DataError(f"{p}: ase.io.read cannot read it ({type(err).__name__}: {err})") from None
            if not isinstance(frames, list):
                frames = [frames]
            self.frames += [(p, k, a) for k, a in enumerate(frames)]
            if limit is not None and len(self.frames) >= limit:
                self.frames = self.frames[:limit]
                break
        if not self.frames:
            raise DataError(f"{', '.join(map(str, paths))}: no structures")
        first_path, first_k, first = self.frames[0]
        self.present = {q for q in OPTIONAL
                        if q in given or _lookup(first, self.keys[q], q in PER_ATOM) is not None}
        self.periodic = any(bool(a.pbc.any()) for _, _, a in self.frames)

    def files(self) -> list[Path]:
        return list(self.paths)

    @property
    def label(self) -> str:
        return str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} files)"

    def __len__(self) -> int:
        return len(self.frames)

    def where(self, i: int) -> str:
        path, k, _ = self.frames[i]
        return f"{path}: frame {k}"

    def _value(self, atoms, quantity: str, where: str, required: bool):
        key = self.keys[quantity]
        value = _lookup(atoms, key, quantity in PER_ATOM)
        if value is None and required:
            raise DataError(f"{where}: no {quantity} under key {key!r} ({_available(atoms)}); "
                            f"choose the key with --{quantity.replace('_', '-')}-key")
        return value

    def structure(self, i: int) -> Structure:
        from ..validate import check_min_distance
        from ..electrons import lowest_multiplicity, multiplicity_problem

        path, k, atoms = self.frames[i]
        where = self.where(i)
        f = self.factors
        z = np.asarray(atoms.numbers)
        pos = np.asarray(atoms.positions, dtype=np.float64) * f["length"]
        energy = self._value(atoms, "energy", where, True)
        try:
            energy = float(np.asarray(energy, dtype=np.float64).reshape(-1)[0]) * f["energy"]
        except (TypeError, ValueError, IndexError):
            raise DataError(f"{where}: energy {energy!r} is not a number") from None
        s = Structure(z=z, pos=pos, energy=energy, id=f"{path.name}:{k}",
                      meta={"file": str(path), "frame": k, "formula": atoms.get_chemical_formula()})
        v = {q: self._value(atoms, q, where, True) for q in self.present}
        if "forces" in v:
            s.forces = np.asarray(v["forces"], dtype=np.float64) * f["forces"]
        if "charges" in v:
            s.charges = np.asarray(v["charges"], dtype=np.float64)
        if "stress" in v:
            s.stress = _stress_3x3(v["stress"], where) * f["stress"]
        s.total_charge = float(v.get("total_charge", 0.0))
        electrons = float(z.sum()) - s.total_charge
        if "spin" in v:
            s.spin = float(v["spin"])
            problem = multiplicity_problem(electrons, s.total_charge, s.spin)
            if problem:
                raise DataError(f"{where}: {problem}")
        elif "spin" in self.present:  # pragma: no cover - present means required above
            s.spin = float(lowest_multiplicity(electrons))
        if self.periodic:
            from ..nn.neighbors import CellError, check_cell
            import torch

            s.cell = np.asarray(atoms.cell, dtype=np.float64) * f["length"]
            s.pbc = np.asarray(atoms.pbc, dtype=np.float64)
            try:
                check_cell(torch.as_tensor(s.cell), torch.as_tensor(atoms.pbc), k)
            except CellError as err:
                raise DataError(f"{where}: {str(err).split(': ', 1)[1]}") from None
        if "stress" in v and not (self.periodic and bool(np.all(atoms.pbc))):
            raise DataError(f"{where}: has a stress but is not periodic in all three directions")
        check_min_distance(pos, where=where, error=DataError)
        return s

    def splits(self, n: int, seed: int):
        return train_val_test_split(n, seed, (80, 10), 100, "80/10/10 % train/val/test",
                                    "shuffled train/val/test split of all frames (numpy default_rng(seed))",
                                    self.train_size, self.val_size, self.test_size)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name or "+".join(p.stem for p in self.paths),
                "level_of_theory": self.theory or "unknown (not declared: --theory)",
                "target": "energy", "source_units": {"energy": self.energy_unit, "length": self.length_unit},
                "conversion": {k: float(v) for k, v in self.factors.items()},
                "source_keys": {q: self.keys[q] for q in ("energy", *sorted(self.present))},
                "periodic": self.periodic}

    def options(self) -> dict[str, Any]:
        return {"keys": self.keys, "energy_unit": self.energy_unit, "length_unit": self.length_unit,
                "train_size": self.train_size, "val_size": self.val_size, "test_size": self.test_size,
                "num_frames": len(self.frames), "format": self.format}


def convert_ase(paths, dest: str | Path, *, seed: int = 42, train_subsets: Sequence[int] = (),
                test_only: bool = False, overwrite: bool = False, resume: bool = True, progress: bool = False,
                **options) -> Path:
    """Convert ASE-readable files into the phizoo LMDB ``dest``; ``options`` go to :class:`ASESource`."""
    from .convert import convert

    source = ASESource(paths, **options)
    return convert(source, dest, seed=seed, train_subsets=train_subsets, test_only=test_only, overwrite=overwrite,
                   resume=resume, progress=progress)
