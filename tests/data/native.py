"""Small fixture files in the exact native formats of MD22, OE62 and QM9 (built in the tests)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

# per-element "true" references used to synthesise OE62 energies (eV)
TRUE_REFS = {1: -13.6, 6: -1029.8, 7: -1485.3, 8: -2042.6}
SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}

# hand-computed conversion factors (CODATA values, independent of ase)
KCAL_MOL_IN_EV = 4184.0 / (6.02214076e23 * 1.602176634e-19)  # 0.0433641...
HARTREE_IN_EV = 27.211386
DEBYE_IN_E_ANGSTROM = 0.20819434


def md22_npz(path: Path, n: int = 40, atoms: int = 6, seed: int = 0, e_shape: str = "n1", **override) -> Path:
    """An sGDML-style MD22 file: R Å [n,N,3], z [N], E kcal/mol [n,1] (or [n]), F kcal/mol/Å."""
    rng = np.random.default_rng(seed)
    z = np.array(([6, 1, 8, 7] * atoms)[:atoms], dtype=np.uint8)
    R = chain(rng, atoms)[None] + rng.normal(size=(n, atoms, 3)) * 0.05  # thermal noise around a geometry
    E = -1000.0 - rng.random(n) * 10.0
    E = E.reshape(n, 1) if e_shape == "n1" else E
    F = rng.normal(size=(n, atoms, 3)) * 20.0
    arrays = {"R": R, "z": z, "E": E, "F": F, "name": np.array(Path(path).stem),
              "theory": np.array("PBE+MBD"), "type": np.array("d")}
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return path


def chain(rng, natoms: int, bond: float = 1.3, dmin: float = 1.0) -> np.ndarray:
    """A random chain of atoms ``bond`` Å apart with no two atoms closer than ``dmin`` Å."""
    pos = np.zeros((natoms, 3))
    for i in range(1, natoms):
        while True:
            step = rng.normal(size=3)
            p = pos[i - 1] + bond * step / np.linalg.norm(step)
            if np.min(np.linalg.norm(pos[:i] - p, axis=1)) >= dmin:
                pos[i] = p
                break
    return pos


def random_molecule(rng, natoms: int, elements=(1, 6, 7, 8)) -> tuple[list[int], np.ndarray]:
    z = [6] + [int(x) for x in rng.choice(elements, size=natoms - 1)]
    return z, chain(rng, natoms)


def xyz_block(z, pos) -> str:
    lines = [str(len(z)), ""]
    lines += [f"{SYMBOLS.get(a, a)}\t{x:.8f}\t{y:.8f}\t{w:.8f}" for a, (x, y, w) in zip(z, pos)]
    return "\n".join(lines) + "\n"


def oe62_frame(n: int = 100, seed: int = 0, noise: float = 0.02) -> pd.DataFrame:
    """Rows shaped like df_62k.json (the columns phizoo uses plus a few others)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        z, pos = random_molecule(rng, int(rng.integers(3, 12)))
        e = sum(TRUE_REFS[a] for a in z) + float(rng.normal()) * noise
        q = rng.normal(size=len(z)) * 0.1
        q -= q.mean()
        rows.append({
            "refcode_csd": f"REF{i:05d}",
            "canonical_smiles": "C" * (i % 5 + 1) + "\n",
            "inchi": f"InChI=1S/X{i}\n",
            "number_of_atoms": len(z),
            "xyz_pbe_relaxed": xyz_block(z, pos),
            "energies_occ_pbe": list(rng.normal(size=3)),
            "total_energy_pbe": e + 5.0,
            "total_energy_pbe0_vac_tier2": e,
            "hirshfeld_pbe": q.tolist(),
        })
    return pd.DataFrame(rows, index=rng.permutation(10 * n)[:n])


def oe62_json(path: Path, df: pd.DataFrame | None = None, **kw) -> Path:
    (oe62_frame(**kw) if df is None else df).to_json(path, orient="split")
    return path


QM9_HEADER = ("XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,"
              "RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,"
              "R2_bohr2,ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,"
              "GibbsFreeEnergy_298K_au,Heatcapacity_Cv_cal_mol_K")


def _num(x: float) -> str:
    """qm9pack writes integral floats as '0.' and '1.'."""
    x = float(x)
    return f"{int(x)}." if x == int(x) else repr(x)


def qm9_row(index: int, z, pos, q, dipole: float, u0: float, smiles: str = "C") -> dict:
    return {
        "XYZ_file": f"dsgdb9nsd_{index:06d}.xyz", "Index": index, "SMILES": smiles, "InChi": "InChI=1S/X",
        "N_atoms": len(z), "Stoichiometry": "[4,1,0,0,0]",
        "Elements": "[" + ",".join(f"'{SYMBOLS[a]}'" for a in z) + "]",
        "XYZ_Ang": "[" + ",".join("[" + ",".join(_num(c) for c in p) + "]" for p in pos) + "]",
        "Mulliken_pop": "[" + ",".join(_num(c) for c in q) + "]",
        "Harmonic_Freq_cmi": "[1341.307,1341.3284]", "RotA_GHz": 157.7118, "RotB_GHz": 157.70997,
        "RotC_GHz": 157.70699, "Dipole_debye": dipole, "Polarizability_bohr3": 13.21, "HOMO_au": -0.3877,
        "LUMO_au": 0.1171, "HOMO_LUMO_gap_au": 0.5048, "R2_bohr2": 35.3641, "ZPVE_au": 0.044749,
        "InternalEnergy_0K_au": u0, "InternalEnergy_298K_au": u0 + 0.003, "Enthalphy_298K_au": u0 + 0.004,
        "GibbsFreeEnergy_298K_au": u0 - 0.02, "Heatcapacity_Cv_cal_mol_K": 6.469,
    }


def qm9_rows(n: int = 60, seed: int = 0, start: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        z, pos = random_molecule(rng, int(rng.integers(2, 9)), elements=(1, 6, 7, 8, 9))
        pos[0] = [0.0, 1.0, 0.0]  # exercises the '0.' / '1.' number style
        q = np.round(rng.normal(size=len(z)) * 0.2, 6)
        u0 = round(sum(TRUE_REFS.get(a, -2715.0) for a in z) / HARTREE_IN_EV + float(rng.normal()) * 1e-3, 6)
        rows.append(qm9_row(start + 2 * k, z, pos, q, round(float(rng.random()) * 3, 4), u0))
    return rows


def qm9_csv(path: Path, rows: list[dict]) -> Path:
    """Quote strings as qm9pack does (QUOTE_NONNUMERIC); numbers unquoted."""
    cols = QM9_HEADER.split(",")
    with open(path, "w", newline="") as fh:
        fh.write(QM9_HEADER + "\n")
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for r in rows:
            w.writerow([r[c] for c in cols])
    return path
