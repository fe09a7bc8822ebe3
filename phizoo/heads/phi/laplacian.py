"""Graph Laplacians of molecular graphs, one dense block per connected component.

The Φ-Module treats every connected component of every molecule as its own system
(size consistency: two molecules far apart give the sum of their energies). The
components of a batch are packed into a zero-padded tensor ``[C, n_max, n_max]`` so one
batched eigensolver call handles the whole batch; padding is decoupled from the
real atoms and marked by ``Blocks.mask``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...nn.graph import connected_components
from ...nn.radial import envelope

LAPLACIANS = ("combinatorial", "normalized")


def edge_weights(dist: torch.Tensor, cutoff: float, kind: str = "cosine") -> torch.Tensor:
    """w_ij = envelope(r_ij): 1 at r=0, falling to 0 with zero slope at the cutoff. [E]."""
    return envelope(kind)(dist, cutoff)


@dataclass
class Blocks:
    """Per-component dense packing of a batch.

    Attributes:
        comp: [N] component of each atom. slot: [N] row of each atom inside its block.
        sizes: [C] atoms per component. mask: [C, n_max] True for real atoms.
        comp_graph: [C] molecule index of each component.
    """

    comp: torch.Tensor
    slot: torch.Tensor
    sizes: torch.Tensor
    mask: torch.Tensor
    comp_graph: torch.Tensor

    @property
    def num_components(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def n_max(self) -> int:
        return int(self.mask.shape[1])

    def to_dense(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] per-atom values -> [C, n_max, ...] zero-padded."""
        out = x.new_zeros((self.num_components, self.n_max) + tuple(x.shape[1:]))
        return out.index_put((self.comp, self.slot), x)

    def from_dense(self, x: torch.Tensor) -> torch.Tensor:
        """[C, n_max, ...] -> [N, ...]."""
        return x[self.comp, self.slot]


def pack_components(edge_index: torch.Tensor, batch: torch.Tensor,
                    components: tuple[torch.Tensor, int] | None = None) -> Blocks:
    """Pack the components (``components`` = precomputed ``(labels, count)``, else computed)."""
    n = batch.shape[0]
    comp, n_comp = components if components is not None else connected_components(edge_index, n)
    sizes = torch.bincount(comp, minlength=n_comp)
    order = torch.argsort(comp, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.empty_like(comp)
    slot[order] = torch.arange(n, device=comp.device) - starts[comp[order]]
    n_max = int(sizes.max()) if n_comp else 0
    mask = torch.arange(n_max, device=comp.device)[None, :] < sizes[:, None]
    comp_graph = torch.zeros(n_comp, dtype=torch.long, device=comp.device).index_put((comp,), batch)
    return Blocks(comp=comp, slot=slot, sizes=sizes, mask=mask, comp_graph=comp_graph)


def dense_laplacian(blocks: Blocks, edge_index: torch.Tensor, weights: torch.Tensor, kind: str = "combinatorial") -> torch.Tensor:
    """Laplacian of every component as [C, n_max, n_max], zero outside the real block.

    combinatorial: L = D - W (PSD, L·1 = 0, so ρ = Lφ is neutral).
    normalized:    L = I - D^-1/2 W D^-1/2 (eigenvalues in [0, 2]; isolated atoms get L = 0).
    Differentiable w.r.t. ``weights`` [E]. The edge list must be symmetric (it is for radius graphs).
    """
    if kind not in LAPLACIANS:
        raise ValueError(f"unknown Laplacian {kind!r}; choose one of {LAPLACIANS}")
    src, dst = edge_index
    c = blocks.comp[dst]
    C, n = blocks.num_components, blocks.n_max
    W = weights.new_zeros(C, n, n).index_put((c, blocks.slot[dst], blocks.slot[src]), weights, accumulate=True)
    deg = W.sum(-1)
    if kind == "combinatorial":
        return torch.diag_embed(deg) - W
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(torch.finfo(deg.dtype).tiny).rsqrt(), torch.zeros_like(deg))
    eye = torch.diag_embed((deg > 0).to(W.dtype))
    return eye - inv_sqrt[:, :, None] * W * inv_sqrt[:, None, :]


def _degree(edge_index: torch.Tensor, weights: torch.Tensor, num_nodes: int) -> torch.Tensor:
    return weights.new_zeros(num_nodes).index_add(0, edge_index[1], weights)


def sparse_laplacian(edge_index: torch.Tensor, weights: torch.Tensor, num_nodes: int,
                     kind: str = "combinatorial") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entries ``L[rows, cols] = vals`` (off-diagonal from the edges, then the diagonal) [nnz].

    Same matrix as ``dense_laplacian``; differentiable w.r.t. ``weights``.
    """
    if kind not in LAPLACIANS:
        raise ValueError(f"unknown Laplacian {kind!r}; choose one of {LAPLACIANS}")
    src, dst = edge_index
    deg = _degree(edge_index, weights, num_nodes)
    diag_idx = torch.arange(num_nodes, device=weights.device)
    if kind == "combinatorial":
        off, diag = -weights, deg
    else:
        inv_sqrt = torch.where(deg > 0, deg.clamp_min(torch.finfo(deg.dtype).tiny).rsqrt(), torch.zeros_like(deg))
        off, diag = -weights * inv_sqrt[dst] * inv_sqrt[src], (deg > 0).to(weights.dtype)
    return torch.cat([dst, diag_idx]), torch.cat([src, diag_idx]), torch.cat([off, diag])


def laplacian_matvec(edge_index: torch.Tensor, weights: torch.Tensor, x: torch.Tensor,
                     kind: str = "combinatorial") -> torch.Tensor:
    """``L x`` for per-atom values x [N] (or [N, ch]) without forming L; O(E)."""
    rows, cols, vals = sparse_laplacian(edge_index, weights, x.shape[0], kind)
    contrib = vals.unsqueeze(-1) * x[cols].reshape(cols.shape[0], -1)
    return x.new_zeros(x.shape[0], contrib.shape[-1]).index_add(0, rows, contrib).reshape(x.shape)
