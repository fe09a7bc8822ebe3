"""Radius graphs (neighbour lists) within each molecule of a batch.

Two backends give the same edge set:

* ``torch_cluster`` (fast, used automatically when importable),
* a pure-torch fallback that works on blocks of atoms so memory stays bounded.

Edges never cross molecules and are never truncated (no ``max_num_neighbors``),
so the graph does not depend on atom order. Convention: ``edge_index[0]`` is the
neighbour (source) ``j``, ``edge_index[1]`` the centre (target) ``i``; messages flow
``j -> i`` and are summed at ``i``; ``vec = pos[j] - pos[i]`` (+ ``S·cell`` for periodic
structures, see :mod:`phizoo.nn.neighbors`, which adds the ``vesin`` backend).

Precision: ``build_graph`` forms ``vec`` in float64 (positions and cell shifts) and only then
casts it to the model dtype, so a float32 model sees the same geometry at 1e6 Å from the
origin as at the origin (interatomic vectors exact to ~1e-10 Å there).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

try:  # optional fast backend
    import torch_cluster as _torch_cluster
except Exception:  # pragma: no cover - depends on the environment
    _torch_cluster = None

BACKENDS = ("auto", "torch_cluster", "torch")
PERIODIC_BACKENDS = BACKENDS + ("vesin",)


def has_torch_cluster() -> bool:
    return _torch_cluster is not None


@dataclass
class Graph:
    """Edges of a batch of molecules with their geometry.

    Attributes:
        edge_index: [2, E] long, (source j, target i).
        vec: [E, 3] Å, ``pos[j] - pos[i] + S·cell`` (differentiable w.r.t. positions and cell).
        dist: [E] Å, ``|vec|``.
        batch: [N] long, molecule index of every atom.
        num_graphs: number of molecules B.
        shifts: [E, 3] long cell shifts S, or ``None`` for a batch without periodic structures.
            With shifts, an atom pair may be joined by several edges (one per image), an atom
            may neighbour its own images, and the reverse of ``(j → i, S)`` is ``(i → j, −S)``.
    """

    edge_index: torch.Tensor
    vec: torch.Tensor
    dist: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    shifts: torch.Tensor | None = None
    _components: tuple[torch.Tensor, int] | None = None

    def components(self) -> tuple[torch.Tensor, int]:
        """Connected component of every atom [N] (ordered by first atom) and their number; cached."""
        if self._components is None:
            self._components = connected_components(self.edge_index, self.batch.shape[0])
        return self._components

    @property
    def periodic(self) -> bool:
        return self.shifts is not None

    @property
    def src(self) -> torch.Tensor:
        return self.edge_index[0]

    @property
    def dst(self) -> torch.Tensor:
        return self.edge_index[1]


def connected_components(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, int]:
    """Component label per atom [N] (0..C-1, ordered by the component's first atom) and C.

    Torch-only (no host round trip of the edge list): min-label propagation along the
    edges (both directions) with pointer jumping, until nothing changes. Labels only ever
    decrease and stay inside the component, so it terminates, in at most (graph diameter)
    rounds and usually far fewer.
    """
    label = torch.arange(num_nodes, device=edge_index.device)
    if edge_index.numel() == 0:
        return label, num_nodes
    a, b = edge_index[0], edge_index[1]
    while True:
        new = label.scatter_reduce(0, b, label[a], reduce="amin", include_self=True)
        new = new.scatter_reduce(0, a, new[b], reduce="amin", include_self=True)
        new = new[new]  # pointer jumping: adopt the label of one's label
        if torch.equal(new, label):
            break
        label = new
    roots, comp = torch.unique(label, return_inverse=True)
    return comp, int(roots.numel())


def _radius_graph_torch(pos: torch.Tensor, r: float, batch: torch.Tensor, block: int) -> torch.Tensor:
    n = pos.shape[0]
    pos = pos.detach()
    parts = []
    # Molecules are contiguous in a PyG batch; only compare atoms of the same molecule window.
    counts = torch.bincount(batch)
    starts = torch.cumsum(counts, 0) - counts
    mol_start = starts[batch]
    mol_end = mol_start + counts[batch]
    for a in range(0, n, block):
        b = min(a + block, n)
        lo = int(mol_start[a:b].min())
        hi = int(mol_end[a:b].max())
        d = torch.cdist(pos[a:b], pos[lo:hi])
        same = batch[a:b, None] == batch[None, lo:hi]
        ii = torch.arange(a, b, device=pos.device)[:, None]
        jj = torch.arange(lo, hi, device=pos.device)[None, :]
        mask = same & (d <= r) & (ii != jj)
        i_idx, j_idx = mask.nonzero(as_tuple=True)
        parts.append(torch.stack([j_idx + lo, i_idx + a]))
    if not parts:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    return torch.cat(parts, dim=1)


def radius_graph(
    pos: torch.Tensor,
    r: float,
    batch: torch.Tensor | None = None,
    backend: str = "auto",
    block: int = 2048,
) -> torch.Tensor:
    """All ordered pairs (j, i), j != i, of the same molecule with ``|pos_j - pos_i| <= r``.

    Args:
        pos: [N, 3] Å. batch: [N] molecule index, sorted (PyG convention); ``None`` = one molecule.
        backend: ``"auto"`` (torch_cluster if importable), ``"torch_cluster"`` or ``"torch"``.
    Returns:
        edge_index [2, E], sorted by target then source, so both backends return identical tensors.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown neighbour-list backend {backend!r}; choose one of {BACKENDS}")
    if pos.dim() != 2 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape [N, 3], got {tuple(pos.shape)}")
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch vector must be sorted (atoms of a molecule contiguous)")
    if backend == "torch_cluster" and _torch_cluster is None:
        raise RuntimeError("backend 'torch_cluster' requested but torch_cluster is not installed")
    use_cluster = backend == "torch_cluster" or (backend == "auto" and _torch_cluster is not None)
    if pos.shape[0] == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    # each molecule relative to its first atom: exact in float64, and cdist keeps its precision far
    # from the origin (edges do not depend on a translation)
    counts = torch.bincount(batch)
    first = (torch.cumsum(counts, 0) - counts)[batch]
    pos = pos.detach() - pos.detach()[first]
    if use_cluster:
        max_nb = int(torch.bincount(batch).max())  # never truncate
        edge_index = _torch_cluster.radius_graph(
            pos.detach(), r=r, batch=batch, loop=False, max_num_neighbors=max_nb, flow="source_to_target"
        )
    else:
        edge_index = _radius_graph_torch(pos, r, batch, block)
    return sort_edges(edge_index, pos.shape[0])


def sort_edges(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    key = edge_index[1] * num_nodes + edge_index[0]
    return edge_index[:, torch.argsort(key)]


def build_graph(pos: torch.Tensor, batch: torch.Tensor, cutoff: float, num_graphs: int, backend: str = "auto",
                cell: torch.Tensor | None = None, pbc: torch.Tensor | None = None,
                dtype: torch.dtype | None = None) -> Graph:
    """Neighbour list plus differentiable edge vectors and lengths.

    Args:
        pos: [N, 3] Å; batch: [N]; cell: [B, 3, 3] Å and pbc: [B, 3] bool (both or neither;
            a batch with no periodic direction takes the non-periodic path, ``shifts=None``).
        backend: ``auto``/``torch_cluster``/``torch``, or ``vesin`` (periodic path).
        dtype: dtype of ``vec``/``dist`` (default: that of ``pos``). ``vec`` is formed in
            float64 from ``pos`` and ``cell`` and cast afterwards; gradients flow to both.
    """
    if backend not in PERIODIC_BACKENDS:
        raise ValueError(f"unknown neighbour-list backend {backend!r}; choose one of {PERIODIC_BACKENDS}")
    dtype = dtype or pos.dtype
    periodic = cell is not None and pbc is not None and bool(pbc.bool().any())
    pos64 = pos.to(torch.float64)
    if periodic or backend == "vesin":
        from .neighbors import periodic_radius_graph

        if cell is None or pbc is None:
            cell = pos.new_zeros(num_graphs, 3, 3)
            pbc = torch.zeros(num_graphs, 3, dtype=torch.bool, device=pos.device)
        edge_index, shifts = periodic_radius_graph(pos64, cutoff, batch, cell.reshape(-1, 3, 3), pbc, backend)
        vec = pos64[edge_index[0]] - pos64[edge_index[1]]
        if periodic:
            cell64 = cell.to(torch.float64).reshape(-1, 3, 3)
            vec = vec + torch.einsum("ek,ekl->el", shifts.to(torch.float64), cell64[batch[edge_index[1]]])
        else:
            shifts = None
    else:
        edge_index = radius_graph(pos64, cutoff, batch, backend=backend)
        vec = pos64[edge_index[0]] - pos64[edge_index[1]]
        shifts = None
    vec = vec.to(dtype)
    dist = torch.linalg.vector_norm(vec, dim=-1)
    return Graph(edge_index=edge_index, vec=vec, dist=dist, batch=batch, num_graphs=num_graphs, shifts=shifts)
