"""A small synthetic data set with known physics: per-element offsets + a smooth Morse pair
potential (cut off at 3.5 Å), energies and forces in float64. Independent of phizoo."""
from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from tests.molecules import random_molecule

# large per-element offsets (eV), like real total energies: the float64 path is exercised
OFFSETS = {1: -13.6, 6: -1029.8, 7: -1485.3, 8: -2042.6}
DEPTH = {1: 0.9, 6: 1.6, 7: 1.3, 8: 1.1}
CUTOFF = 3.5


def pair_energy(z: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(pos, pos)
    iu = torch.triu_indices(len(z), len(z), 1)
    r = d[iu[0], iu[1]]
    D = torch.sqrt(torch.tensor([DEPTH[int(a)] * DEPTH[int(b)] for a, b in zip(z[iu[0]], z[iu[1]])],
                                dtype=pos.dtype))
    morse = D * ((1 - torch.exp(-1.8 * (r - 1.25))) ** 2 - 1)
    fc = torch.where(r < CUTOFF, 0.5 * (torch.cos(np.pi * r / CUTOFF) + 1), torch.zeros_like(r))
    return (morse * fc).sum()


def labelled(mol: Data, charge_on_total: bool = False) -> Data:
    pos = mol.pos.double().clone().requires_grad_(True)
    e_pair = pair_energy(mol.z, pos)
    (g,) = torch.autograd.grad(e_pair, pos)
    e = torch.tensor([sum(OFFSETS[int(a)] for a in mol.z)], dtype=torch.float64) + e_pair.detach()
    return Data(z=mol.z.clone(), pos=mol.pos.double().clone(), energy=e.reshape(1), forces=-g,
                total_charge=torch.zeros(1, dtype=torch.float64))


def dataset(n: int, seed: int = 0, sizes=(3, 9)) -> list[Data]:
    rng = np.random.default_rng(seed)
    return [labelled(random_molecule(int(rng.integers(sizes[0], sizes[1] + 1)), seed=10_000 * seed + i))
            for i in range(n)]


def splits(n: int, n_val: int, n_test: int = 0, seed: int = 0) -> dict[str, list[int]]:
    perm = np.random.default_rng(seed).permutation(n).tolist()
    out = {"val": perm[:n_val], "train": perm[n_val + n_test:]}
    if n_test:
        out["test"] = perm[n_val:n_val + n_test]
    return out


class SplitDataset(list):
    """A list of ``Data`` with stored splits, standing in for the LMDB store (``split(name)``)."""

    def __init__(self, items, splits: dict[str, list[int]], name: str = "synthetic"):
        super().__init__(items)
        self.splits_ = {k: list(v) for k, v in splits.items()}
        self.metadata = {"name": name}

    def split(self, name: str) -> list[int]:
        if name not in self.splits_:
            raise KeyError(name)
        return list(self.splits_[name])
