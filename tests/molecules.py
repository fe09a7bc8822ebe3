"""Structures and symmetry operations shared by the tests (independent of phizoo)."""
from __future__ import annotations

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
    a = molecule(name)
    return Data(z=torch.tensor(a.numbers, dtype=torch.long), pos=torch.tensor(a.positions, dtype=torch.float64))


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
