"""MD22 (Chmiela et al., Sci. Adv. 2023) from the sGDML ``.npz`` files.

Input keys: ``R`` positions [n, N, 3], ``z`` atomic numbers [N], ``E`` energies [n] or [n, 1],
``F`` forces [n, N, 3] (in ``e_unit`` per ``r_unit``); optional ``Q`` partial charges e [n, N]
(written by ``phizoo data xtb-md``; stored as ``charges``, and each frame's charges must sum to
0 within 0.01 e) and ``theory`` (the level of theory stored in the database metadata; PBE+MBD,
MD22's, when absent). Output: eV, Å and eV/Å (``ase.units``; energies float64), neutral
molecules (total charge 0).

Units: the sGDML keys ``r_unit`` and ``e_unit`` are honoured (:data:`LENGTH_UNITS`: Ang, Bohr,
nm, pm; :data:`ENERGY_UNITS`: kcal/mol, kJ/mol, eV, meV, Hartree); an unknown unit is an error
naming the key. When a key is absent the MD22 convention applies (Å, kcal/mol) and the metadata
says it was assumed. After conversion the data are checked for plausibility (interatomic
distances against covalent radii, the energy fluctuation's effective temperature, the force
RMS: :mod:`phizoo.validate`); an implausible scale, usually a unit mix-up, gives a
:class:`~phizoo.validate.PlausibilityWarning` and is recorded in the metadata under
``plausibility_warnings``.

Splits (the Φ-Module paper's protocol): a per-molecule training budget B (Ac-Ala3-NHMe 6000,
DHA 8000, stachyose 8000, AT-AT 3000, AT-AT-CG-CG 2000, buckyball-catcher 600, double-walled
nanotube 800) is drawn at random (``numpy.random.default_rng(seed)``); its first
``B - round(0.05 B)`` frames in shuffled order form ``train``, the remaining ``round(0.05 B)``
(rounded half up, at least 1) ``val``; ``test`` is every frame not in train or val (the paper: "all other frames"). With
``--limit`` the budget is scaled by ``limit / frames in the file``. Files whose molecule is not
recognised from the file name need an explicit ``train_size`` (the budget B).
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from ase import units

from .convert import Source, Structure, check_limit, random_split, round_half_up
from .errors import DataError, check_file

KCAL_PER_MOL = units.kcal / units.mol  # eV per (kcal/mol)

# normalised spelling (lower case, no spaces, "mol-1" -> "/mol") -> (canonical name, factor to Å / eV)
LENGTH_UNITS: dict[str, tuple[str, float]] = {
    **{k: ("angstrom", 1.0) for k in ("ang", "angstrom", "angstroms", "a", "å", "aa")},
    **{k: ("bohr", units.Bohr) for k in ("bohr", "au", "a.u.", "a0")},
    "nm": ("nm", 10.0), "pm": ("pm", 0.01),
}
ENERGY_UNITS: dict[str, tuple[str, float]] = {
    "kcal/mol": ("kcal/mol", KCAL_PER_MOL), "kj/mol": ("kJ/mol", units.kJ / units.mol),
    "ev": ("eV", 1.0), "mev": ("meV", 1e-3),
    **{k: ("hartree", units.Hartree) for k in ("hartree", "ha", "eh", "au", "a.u.")},
}


def _unit(raw: str | None, table: dict, default: str, key: str, path: Path) -> tuple[str, float, bool]:
    """(canonical unit, factor to phizoo units, declared?) of the value of ``key``."""
    if raw is None:
        name, factor = table[default]
        return name, factor, False
    norm = raw.strip().lower().replace(" ", "").replace("mol-1", "/mol").replace("mol^-1", "/mol")
    if norm not in table:
        known = sorted({v[0] for v in table.values()})
        raise DataError(f"{path}: key {key!r} is {raw!r}, a unit phizoo does not know (known: {', '.join(known)}); "
                        f"fix the key or convert the file")
    name, factor = table[norm]
    return name, factor, True

# canonical name -> (training budget of the paper, frames in the published file)
MOLECULES: dict[str, tuple[int, int]] = {
    "Ac-Ala3-NHMe": (6000, 85109),
    "DHA": (8000, 69753),
    "stachyose": (8000, 27272),
    "AT-AT": (3000, 20001),
    "AT-AT-CG-CG": (2000, 10153),
    "buckyball-catcher": (600, 6102),
    "double-walled_nanotube": (800, 5032),
}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


_ALIASES = {_norm(k): k for k in MOLECULES}
_ALIASES.update({"dw-nanotube": "double-walled_nanotube", "double-walled-nanotube": "double-walled_nanotube"})


def molecule_from_name(name: str) -> str | None:
    """Canonical MD22 molecule of a file name (``md22_DHA.npz``, ``md22_dw_nanotube.npz``...) or None."""
    stem = Path(name).name
    if stem.lower().endswith(".npz"):
        stem = stem[:-4]
    if stem.lower().startswith("md22-") or stem.lower().startswith("md22_"):
        stem = stem[5:]
    return _ALIASES.get(_norm(stem))


class MD22Source(Source):
    dataset = "md22"
    fit_references = False  # one composition per file: references are not identifiable

    def __init__(self, path: str | Path, limit: int | None = None, train_size: int | None = None,
                 val_fraction: float = 0.05, molecule: str | None = None):
        self.path = check_file(path, "MD22 .npz file")
        self.train_size = None if train_size is None else int(train_size)
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.molecule = (molecule_from_name(molecule) or molecule) if molecule else molecule_from_name(self.path.name)
        try:
            npz = np.load(self.path, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise DataError(f"{self.path}: not a readable .npz archive ({err})") from None
        with npz:
            missing = [k for k in ("R", "z", "E", "F") if k not in npz.files]
            if missing:
                raise DataError(f"{self.path}: missing key(s) {', '.join(map(repr, missing))}; "
                                f"an MD22 file has R, z, E, F (found: {', '.join(npz.files) or 'none'})")
            arrays = {}
            for key in ("R", "z", "E", "F", "Q"):
                if key == "Q" and key not in npz.files:
                    continue
                try:
                    arrays[key] = npz[key]
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
                    raise DataError(f"{self.path}: key {key!r} is unreadable ({err})") from None
            self.source_name = self._string(npz, "name")
            self.theory = self._string(npz, "theory")
            self.r_unit, self.r_factor, r_declared = _unit(self._string(npz, "r_unit"), LENGTH_UNITS, "ang",
                                                           "r_unit", self.path)
            self.e_unit, self.e_factor, e_declared = _unit(self._string(npz, "e_unit"), ENERGY_UNITS, "kcal/mol",
                                                           "e_unit", self.path)
            self.units_declared = {"r_unit": r_declared, "e_unit": e_declared}
        R, z, E, F = (arrays[k] for k in ("R", "z", "E", "F"))
        Q = arrays.get("Q")
        for key, arr in arrays.items():
            if arr.dtype.kind not in "iuf":
                raise DataError(f"{self.path}: key {key!r} has dtype {arr.dtype}, expected numbers")
        if z.ndim != 1 or z.shape[0] == 0:
            raise DataError(f"{self.path}: key 'z' must have shape [N] with N > 0, got {list(z.shape)}")
        N = z.shape[0]
        if R.ndim != 3 or R.shape[1:] != (N, 3):
            raise DataError(f"{self.path}: key 'R' has shape {list(R.shape)}, expected [n, {N}, 3] ({N} atoms in 'z')")
        n = R.shape[0]
        if n == 0:
            raise DataError(f"{self.path}: holds no frames (key 'R' has shape {list(R.shape)})")
        if E.shape not in ((n,), (n, 1)):
            raise DataError(f"{self.path}: key 'E' has shape {list(E.shape)}, expected [{n}] or [{n}, 1] "
                            f"({n} frames in 'R')")
        if F.shape != R.shape:
            raise DataError(f"{self.path}: key 'F' has shape {list(F.shape)}, expected {list(R.shape)} (as 'R')")
        if Q is not None and Q.shape != (n, N):
            raise DataError(f"{self.path}: key 'Q' (partial charges) has shape {list(Q.shape)}, expected [{n}, {N}] "
                            f"({n} frames in 'R', {N} atoms in 'z')")
        if z.dtype.kind == "f" and (not np.all(np.isfinite(z)) or np.any(z != np.round(z))):
            raise DataError(f"{self.path}: key 'z' holds non-integer atomic numbers")
        bad = (z < 1) | (z > 118)
        if np.any(bad):
            raise DataError(f"{self.path}: key 'z': unknown element(s) with atomic number "
                            f"{sorted(set(z[bad].tolist()))} at atom(s) {np.flatnonzero(bad)[:10].tolist()}")
        self.frames_in_file = n
        limit = check_limit(limit)
        self.n = n if limit is None else min(n, limit)
        self.z = z.astype(np.int64)
        self.R = R[: self.n]
        self.E = E.reshape(n)[: self.n]
        self.F = F[: self.n]
        self.Q = None if Q is None else Q[: self.n]
        for key, arr in (("R", self.R), ("E", self.E), ("F", self.F)) + ((("Q", self.Q),) if Q is not None else ()):
            finite = np.isfinite(arr).reshape(self.n, -1).all(axis=1)
            if not finite.all():
                frame = int(np.argmin(finite))
                raise DataError(f"{self.path}: key {key!r}: frame {frame} holds a non-finite value (NaN or inf)")
        if self.Q is not None:
            net = np.abs(self.Q.sum(axis=1))
            if np.any(net > 0.01):
                frame = int(np.argmax(net > 0.01))
                raise DataError(f"{self.path}: key 'Q': the charges of frame {frame} sum to "
                                f"{self.Q[frame].sum():.4g} e, but MD22 molecules are stored as neutral (total charge 0)")
        if self.train_size is not None and self.train_size < 1:
            raise DataError(f"{self.path}: the training budget (--train-size) must be at least 1, got {self.train_size}")
        self.warnings = self._plausibility()

    def _plausibility(self) -> list[str]:
        """Warnings about implausible distances or energy scales (see the module docstring)."""
        from ..validate import PlausibilityWarning, geometry_warning, md_energy_warning

        found = []
        units_note = f"(r_unit {self.r_unit}, e_unit {self.e_unit}{'' if all(self.units_declared.values()) else ', partly assumed'})"
        for i in sorted({0, self.n // 2, self.n - 1}):
            msg = geometry_warning(self.z, np.asarray(self.R[i], np.float64) * self.r_factor, f"{self.path}: frame {i}")
            if msg:
                found.append(f"{msg} {units_note}")
                break
        f_factor = self.e_factor / self.r_factor
        sample = np.asarray(self.F[: min(self.n, 1000)], np.float64) * f_factor
        msg = md_energy_warning(np.asarray(self.E, np.float64) * self.e_factor, sample, len(self.z), str(self.path))
        if msg:
            found.append(f"{msg} {units_note}")
        for msg in found:
            warnings.warn(msg, PlausibilityWarning, stacklevel=3)
        return found

    @staticmethod
    def _string(npz, key: str) -> str | None:
        if key not in npz.files:
            return None
        try:
            value = npz[key]
        except ValueError:  # an object array: never unpickled
            return None
        if value.dtype.kind in "US" and value.size == 1:
            v = value.reshape(-1)[0]
            return v.decode() if isinstance(v, bytes) else str(v)
        return None

    # ------------------------------------------------------------------ Source interface
    def files(self) -> list[Path]:
        return [self.path]

    def __len__(self) -> int:
        return self.n

    def where(self, i: int) -> str:
        return f"{self.path}: frame {i}"

    def structure(self, i: int) -> Structure:
        name = self.molecule or self.path.stem
        return Structure(z=self.z, pos=np.asarray(self.R[i], dtype=np.float64) * self.r_factor,
                         energy=float(np.float64(self.E[i]) * self.e_factor),
                         forces=np.asarray(self.F[i], dtype=np.float64) * (self.e_factor / self.r_factor),
                         charges=None if self.Q is None else np.asarray(self.Q[i], dtype=np.float64),
                         total_charge=0.0, id=f"{name}/{i}", meta={"frame": i})

    def budget(self, n: int) -> tuple[int, str]:
        if self.train_size is not None:
            return self.train_size, "given by --train-size"
        if self.molecule is None:
            raise DataError(f"{self.path}: unknown MD22 molecule {self.path.stem!r} (known: "
                            f"{', '.join(MOLECULES)}; both md22_dw_nanotube.npz and "
                            f"md22_double-walled_nanotube.npz are recognised); pass --train-size "
                            f"(the training budget, train + validation) or --test-only")
        full = MOLECULES[self.molecule][0]
        if n < self.frames_in_file:
            b = max(2, round_half_up(full * n / self.frames_in_file))
            return b, (f"the paper's {full} scaled by {n}/{self.frames_in_file} converted frames (--limit)")
        return full, "the paper's per-molecule budget"

    def splits(self, n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        budget, why = self.budget(n)
        if budget > n:
            raise DataError(f"{self.path}: training budget {budget} exceeds the {n} converted frames")
        n_val = round_half_up(self.val_fraction * budget)
        if self.val_fraction > 0 and budget >= 2:
            n_val = max(n_val, 1)
        n_train = budget - n_val
        splits = random_split(n, {"train": n_train, "val": n_val}, seed, rest="test")
        policy = {"policy": "MD22 (Φ-Module paper): random training budget B, 95 % train / 5 % val of B, "
                            "test = every remaining frame; numpy.random.default_rng(seed).permutation",
                  "budget": budget, "budget_source": why, "val_fraction": self.val_fraction}
        return splits, policy

    def metadata(self) -> dict[str, Any]:
        name = self.molecule or self.path.stem
        md22_theory = self.theory is None or "PBE" in self.theory.upper()
        return {
            # a file at another level of theory (e.g. `phizoo data xtb-md`) is not MD22 itself
            "name": f"MD22 {name}" if md22_theory else f"{name} (MD22 format, {self.theory})",
            "molecule": name,
            "level_of_theory": self.theory or "PBE+MBD (MD22, sGDML distribution)",
            "target": "E: total energy (eV) and F: forces (eV/angstrom)"
                      + ("; charges: partial charges from key Q (e)" if self.Q is not None else ""),
            "source_format": f"sGDML .npz (keys R, z, E, F{', Q' if self.Q is not None else ''})",
            "source_units": {"energy": self.e_unit, "forces": f"{self.e_unit}/{self.r_unit}", "length": self.r_unit,
                             **({"charges": "e"} if self.Q is not None else {})},
            "source_units_declared": dict(self.units_declared),
            "conversion": {"energy": self.e_factor, "forces": self.e_factor / self.r_factor, "length": self.r_factor,
                           **({"charges": 1.0} if self.Q is not None else {}),
                           "note": "factors to eV / eV/angstrom / angstrom from ase.units (kcal/mol = "
                                   "ase.units.kcal / ase.units.mol, Bohr = ase.units.Bohr)"},
            "plausibility_warnings": list(self.warnings),
            "frames_in_file": self.frames_in_file,
            "npz_name": self.source_name,
            "element_references_note": "not fitted: every frame has the same composition",
        }

    def options(self) -> dict[str, Any]:
        return {"limit": self.n, "train_size": self.train_size, "val_fraction": self.val_fraction,
                "molecule": self.molecule}
