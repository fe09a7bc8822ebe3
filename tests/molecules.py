"""Structures and symmetry operations shared by the tests (independent of phizoo)."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from ase.build import molecule
from torch_geometric.data import Batch, Data

ELEMENTS = (1, 6, 7, 8)


def random_molecule(n: int, seed: int, dmin: float = 0.95, bond: tuple[float, float] = (1.0, 1.5)) -> Data:
    """A connected random molecule: each atom placed at a bond length from an earlier one."""
    rng = np.random.default_rng(seed)
    pos = [np.zeros(3)]
    while len(pos) < n:
        anchor = pos[rng.integers(len(pos))]
        d = rng.normal(size=3)
        cand = anchor + d / np.linalg.norm(d) * rng.uniform(*bond)
        if min(np.linalg.norm(cand - p) for p in pos) >= dmin:
            pos.append(cand)
    z = rng.choice(ELEMENTS, size=n)
    return Data(z=torch.tensor(z, dtype=torch.long), pos=torch.tensor(np.array(pos), dtype=torch.float64))


def ase_molecule(name: str) -> Data:
    return ase_molecule_from(molecule(name))


def ase_molecule_from(atoms) -> Data:
    """An isolated molecule from ASE ``Atoms`` (cell and periodicity dropped)."""
    return Data(z=torch.tensor(atoms.numbers, dtype=torch.long), pos=torch.tensor(atoms.positions, dtype=torch.float64))


def batch(*mols: Data) -> Batch:
    return Batch.from_data_list(list(mols))


def random_orthogonal(seed: int, reflect: bool = False) -> torch.Tensor:
    """A random 3x3 rotation (det +1), or rotoreflection (det -1) when ``reflect``."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ np.diag([1.0, 1.0, -1.0])
    return torch.tensor(q, dtype=torch.float64)


def transformed(d: Data, R: torch.Tensor | None = None, shift=None, perm: torch.Tensor | None = None) -> Data:
    pos, z = d.pos.clone(), d.z.clone()
    if R is not None:
        pos = pos @ R.T
    if shift is not None:
        pos = pos + torch.as_tensor(shift, dtype=pos.dtype)
    if perm is not None:
        pos, z = pos[perm], z[perm]
    return Data(z=z, pos=pos)


def merged(a: Data, b: Data, offset) -> Data:
    """One structure holding ``a`` and ``b`` shifted by ``offset`` (Å)."""
    return Data(z=torch.cat([a.z, b.z]), pos=torch.cat([a.pos, b.pos + torch.as_tensor(offset, dtype=b.pos.dtype)]))


def cutoff_crossing(cutoff: float, delta: float, spacing: float = 1.4) -> Data:
    """A connected zig-zag chain plus one atom at distance ``cutoff + delta`` from atom 0.

    The extra atom stays bonded to the chain, so the graph remains connected while the
    pair (0, last) crosses the cutoff as ``delta`` changes sign.
    """
    m = int(np.ceil(cutoff / spacing)) + 2
    pos = [[spacing * i, 0.3 * (i % 2), 0.0] for i in range(m)]
    h = 1.1
    x = float(np.sqrt((cutoff + delta) ** 2 - h**2))
    pos.append([x, 0.0, h])
    z = [6] * m + [8]
    return Data(z=torch.tensor(z, dtype=torch.long), pos=torch.tensor(pos, dtype=torch.float64))


def alkane(n_carbon: int) -> Data:
    """Linear all-trans alkane C_nH_2n+2 along x (C–C 1.54 Å, C–H 1.09 Å, tetrahedral angles)."""
    cc, ch = 1.54, 1.09
    half = np.deg2rad(109.5) / 2
    dx, dy = cc * np.sin(half), cc * np.cos(half) / 2
    carbons = np.array([[i * dx, dy * (1 if i % 2 else -1), 0.0] for i in range(n_carbon)])
    pos, z = list(carbons), [6] * n_carbon
    for i, c in enumerate(carbons):
        out = np.array([0.0, 1.0 if i % 2 else -1.0, 0.0])  # away from the backbone
        for s in (1.0, -1.0):
            pos.append(c + ch * (np.cos(np.deg2rad(54.75)) * out + np.sin(np.deg2rad(54.75)) * np.array([0, 0, s])))
            z.append(1)
    for end, sign in ((0, -1.0), (n_carbon - 1, 1.0)):  # terminal hydrogens along the chain
        pos.append(carbons[end] + ch * np.array([sign, 0.0, 0.0]))
        z.append(1)
    return Data(z=torch.tensor(z, dtype=torch.long), pos=torch.tensor(np.array(pos), dtype=torch.float64))


def water_cluster(n_molecules: int, seed: int = 0, density: float = 0.033) -> Data:
    """Water molecules at random orientations on a jittered cubic lattice (molecules per Å³)."""
    rng = np.random.default_rng(seed)
    a = density ** (-1.0 / 3.0)
    m = int(np.ceil(n_molecules ** (1.0 / 3.0)))
    sites = np.array([[i, j, k] for i in range(m) for j in range(m) for k in range(m)][:n_molecules], float) * a
    local = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    pos, z = [], []
    for site in sites:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        pos.extend(site + 0.2 * rng.uniform(-1, 1, 3) + local @ (q * np.sign(np.diag(r))).T)
        z.extend([8, 1, 1])
    return Data(z=torch.tensor(z, dtype=torch.long), pos=torch.tensor(np.array(pos), dtype=torch.float64))


def approaching_pair(a: Data, b: Data, gap: float, direction=(1.0, 0.0, 0.0)) -> Data:
    """``a`` plus ``b`` translated along ``direction`` so that the closest atom pair is ``gap`` Å apart."""
    u = torch.as_tensor(direction, dtype=a.pos.dtype)
    u = u / u.norm()
    # closest distance as a function of the shift t along u: solve |a_i - b_j - t u| = gap for the
    # first contact (largest t among pairs that reach it)
    d = a.pos[:, None, :] - b.pos[None, :, :]
    du = d @ u
    perp2 = (d * d).sum(-1) - du**2
    reach = perp2 <= gap**2
    t = torch.where(reach, du + torch.sqrt((gap**2 - perp2).clamp_min(0)), torch.full_like(du, -np.inf)).max()
    return merged(a, b, t * u)


def sf6(bond: float = 1.561) -> Data:
    """SF6, point group Oh: S at the origin, six F at ±``bond`` Å on the axes (S-F 1.561 Å, gas-phase
    electron diffraction). Not in ASE's g2 collection, hence built here."""
    axes = torch.cat([torch.eye(3, dtype=torch.float64), -torch.eye(3, dtype=torch.float64)]) * bond
    return Data(z=torch.tensor([16] + [9] * 6, dtype=torch.long),
                pos=torch.cat([torch.zeros(1, 3, dtype=torch.float64), axes]))


def c60(bond: float = 1.43) -> Data:
    """C60 as an exact truncated icosahedron (point group Ih, all edges ``bond`` Å): the cyclic
    permutations of (0, ±1, ±3φ), (±1, ±(2+φ), ±2φ), (±φ, ±2, ±φ³), edge length 2, scaled.
    (ASE's C60 is Ih only to the ~1e-5 Å of its stored coordinates.)"""
    phi = (1 + 5**0.5) / 2
    pts = []
    for base in ((0, 1, 3 * phi), (1, 2 + phi, 2 * phi), (phi, 2, phi**3)):
        for signs in itertools.product((1, -1), repeat=3):
            p = [b * s for b, s in zip(base, signs)]
            if any(b == 0 and s < 0 for b, s in zip(base, signs)):
                continue
            pts += [p, p[1:] + p[:1], p[2:] + p[:2]]
    return Data(z=torch.full((60,), 6, dtype=torch.long), pos=torch.tensor(pts, dtype=torch.float64) * (bond / 2))


def benzene(cc: float = 1.397, ch: float = 1.084) -> Data:
    """Benzene, D6h to rounding: C and H on rays 60° apart in the xy plane (C-C ``cc``, C-H ``ch`` Å).
    (ASE's benzene is D6h only to the ~1e-6 Å of its stored coordinates.)"""
    ang = torch.arange(6, dtype=torch.float64) * (torch.pi / 3)
    ring = torch.stack([torch.cos(ang), torch.sin(ang), torch.zeros(6, dtype=torch.float64)], dim=1)
    return Data(z=torch.tensor([6] * 6 + [1] * 6, dtype=torch.long), pos=torch.cat([cc * ring, (cc + ch) * ring]))


#: High-symmetry molecules (point group: builder): vector features vanish at their symmetric sites.
SYMMETRIC_MOLECULES = {
    "CH4 (Td)": lambda: ase_molecule("CH4"),
    "SF6 (Oh)": sf6,
    "C60 (Ih)": c60,
    "C6H6 (D6h)": benzene,
    "CO2 (Dinfh)": lambda: ase_molecule("CO2"),
}
