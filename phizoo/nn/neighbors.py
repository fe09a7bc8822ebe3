r"""Periodic neighbour lists: every pair within the cutoff, with its integer cell shift.

For a structure with cell ``C`` (rows = lattice vectors a₁, a₂, a₃, Å) and periodic directions
``pbc`` [3], an edge ``(j → i, S)`` (``S`` ∈ ℤ³, zero along non-periodic directions) means

    vec = pos[j] − pos[i] + S · C,      |vec| ≤ r,      (j, S) ≠ (i, 0).

An atom may see several images of the same neighbour, and its own images (``j = i``, ``S ≠ 0``)
when the cell is smaller than the cutoff: every image is found however small the cell (no
minimum-image convention). The reverse of ``(j → i, S)`` is ``(i → j, −S)``, so the list is
symmetric. Positions need not be wrapped into the cell; ``S`` refers to the positions given.

Backends (all return the same edges and shifts; tested):

* ``vesin`` (``vesin-torch``, else ``vesin``): cell lists in C++, the default for periodic structures;
* ``torch_cluster`` / ``torch``: the atoms are wrapped into the cell, the images within
  reach are replicated (``n_k ≤ ⌈r·|b_k|⌉ + 1`` cells along direction k, ``b_k`` the reciprocal
  vectors) and searched by ``torch_cluster.radius`` or a dense ``cdist``.

Each backend searches at ``r + 1e-9`` Å; the distances are then recomputed in float64 with one
formula and cut at ``≤ r``, so no backend's rounding decides an edge. Structures are handled one
at a time, each shifted by its first atom in float64 first (exact far from the origin).
"""
from __future__ import annotations

import itertools

import torch

try:  # optional fast backend
    import torch_cluster as _torch_cluster
except Exception:  # pragma: no cover - depends on the environment
    _torch_cluster = None

try:
    import vesin.torch as _vesin_torch
except Exception:  # pragma: no cover - depends on the environment
    _vesin_torch = None
try:
    import vesin as _vesin
except Exception:  # pragma: no cover - depends on the environment
    _vesin = None

SKIN = 1e-9  # Å added to the cutoff of every backend's search; the final cut is exact (≤ r, float64)


class CellError(ValueError):
    """A periodic cell that cannot be used (singular, non-finite, wrong shape)."""


def has_vesin() -> bool:
    return _vesin_torch is not None or _vesin is not None


def check_cell(cell: torch.Tensor, pbc: torch.Tensor, index: int = 0) -> None:
    """``CellError`` naming structure ``index`` when its periodic lattice vectors are not finite
    or linearly dependent (volume of the periodic part < 1e-6 of the product of their lengths)."""
    if cell.shape != (3, 3):
        raise CellError(f"structure {index}: cell must have shape [3, 3], got {list(cell.shape)}")
    if not bool(torch.isfinite(cell).all()):
        raise CellError(f"structure {index}: the cell holds a non-finite value: {cell.tolist()}")
    a = cell[pbc.bool()].double()
    if a.shape[0] == 0:
        return
    lengths = torch.linalg.vector_norm(a, dim=-1)
    gram_det = torch.linalg.det(a @ a.T).clamp_min(0.0).sqrt()  # volume of the periodic lattice vectors
    if bool((lengths < 1e-6).any()) or float(gram_det) < 1e-6 * float(lengths.prod()):
        raise CellError(f"structure {index}: singular cell: the periodic lattice vectors "
                        f"{a.tolist()} (Å) are linearly dependent (volume {float(gram_det):.3g})")


def _complete_cell(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """The cell with every non-periodic row replaced by a unit vector orthogonal to the rows
    kept, so that it is invertible; the shifts along periodic rows are unchanged by this."""
    out = cell.clone()
    keep = [k for k in range(3) if bool(pbc[k])]
    basis = [out[k] / torch.linalg.vector_norm(out[k]) for k in keep]
    for k in range(3):
        if bool(pbc[k]):
            continue
        for trial in torch.eye(3, dtype=cell.dtype, device=cell.device):
            v = trial.clone()
            for b in basis:
                v = v - (v @ b) * b
            if float(torch.linalg.vector_norm(v)) > 0.5:
                break
        v = v / torch.linalg.vector_norm(v)
        basis.append(v)
        out[k] = v
    return out


def _images_search(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, r: float, use_cluster: bool):
    """(i, j, S) candidates of one structure by replicating wrapped atoms (torch / torch_cluster)."""
    full = _complete_cell(cell, pbc)
    inv = torch.linalg.inv(full)
    frac = pos @ inv
    fl = torch.where(pbc, torch.floor(frac), torch.zeros_like(frac))
    wrapped = pos - fl @ full
    recip_len = torch.linalg.vector_norm(inv, dim=0)  # |b_k|: columns of C⁻¹ are the reciprocal vectors
    reach = [int(torch.ceil((r + SKIN) * recip_len[k])) + 1 if bool(pbc[k]) else 0 for k in range(3)]
    shifts = torch.tensor(list(itertools.product(*(range(-n, n + 1) for n in reach))), dtype=pos.dtype,
                          device=pos.device)  # [M, 3]
    n, m = pos.shape[0], shifts.shape[0]
    images = (wrapped.unsqueeze(0) + (shifts @ full).unsqueeze(1)).reshape(m * n, 3)  # image (s, j) at s*n + j
    if use_cluster:
        tgt, src = _torch_cluster.radius(images, wrapped, r + SKIN, max_num_neighbors=m * n)
    else:
        parts_t, parts_s = [], []
        for a in range(0, m * n, 4096):
            d = torch.cdist(wrapped, images[a:a + 4096], compute_mode="donot_use_mm_for_euclid_dist")
            t, s = (d <= r + SKIN).nonzero(as_tuple=True)
            parts_t.append(t)
            parts_s.append(s + a)
        tgt, src = torch.cat(parts_t), torch.cat(parts_s)
    j = src % n
    s_img = shifts[src // n]
    shift = s_img - fl[j] + fl[tgt]  # back to the positions given (unwrapped)
    return tgt, j, shift.round().long()


def _vesin_search(pos: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, r: float):
    periodic = bool(pbc.any())
    box = _complete_cell(cell, pbc) if periodic else torch.zeros(3, 3, dtype=pos.dtype, device=pos.device)
    if _vesin_torch is not None:
        nl = _vesin_torch.NeighborList(cutoff=r + SKIN, full_list=True)
        i, j, s = nl.compute(pos, box, pbc if periodic else False, "ijS")
        return i.long(), j.long(), s.long()
    nl = _vesin.NeighborList(cutoff=r + SKIN, full_list=True)
    i, j, s = nl.compute(pos.cpu().numpy(), box.cpu().numpy(), pbc.cpu().numpy().tolist() if periodic else False,
                         "ijS")
    dev = pos.device
    return (torch.as_tensor(i.astype("int64"), device=dev), torch.as_tensor(j.astype("int64"), device=dev),
            torch.as_tensor(s.astype("int64"), device=dev))


def periodic_radius_graph(pos: torch.Tensor, r: float, batch: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                          backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """All edges within ``r`` with cell shifts, for a batch of (partly) periodic structures.

    Args:
        pos: [N, 3] Å (any float dtype; searched in float64). batch: [N] sorted structure index.
        cell: [B, 3, 3] Å (rows = lattice vectors). pbc: [B, 3] bool.
        backend: ``"auto"`` (vesin if importable, else torch_cluster, else torch), ``"vesin"``,
            ``"torch_cluster"`` or ``"torch"``.
    Returns:
        edge_index [2, E] (source j, target i) and shifts [E, 3] long, sorted by (target, source,
        shift) so that every backend returns identical tensors.
    """
    if backend == "auto":
        backend = "vesin" if has_vesin() else ("torch_cluster" if _torch_cluster is not None else "torch")
    if backend == "vesin" and not has_vesin():
        raise RuntimeError("backend 'vesin' requested but neither vesin-torch nor vesin is installed")
    if backend == "torch_cluster" and _torch_cluster is None:
        raise RuntimeError("backend 'torch_cluster' requested but torch_cluster is not installed")
    pos64 = pos.detach().double()
    cell64 = cell.detach().double().reshape(-1, 3, 3)
    pbc = pbc.bool().reshape(-1, 3)
    counts = torch.bincount(batch, minlength=cell64.shape[0]).tolist()
    parts_e, parts_s, start = [], [], 0
    for b, n in enumerate(counts):
        if n == 0:
            continue
        check_cell(cell64[b], pbc[b], b)
        p = pos64[start:start + n]
        p = p - p[0]  # translation-invariant search, exact in float64 far from the origin
        if backend == "vesin":
            i, j, s = _vesin_search(p, cell64[b], pbc[b], r)
        elif bool(pbc[b].any()):
            i, j, s = _images_search(p, cell64[b], pbc[b], r, backend == "torch_cluster")
        else:
            from .graph import radius_graph
            ei = radius_graph(p, r + SKIN, backend=backend)
            j, i, s = ei[0], ei[1], torch.zeros(ei.shape[1], 3, dtype=torch.long, device=p.device)
        vec = p[j] - p[i] + s.double() @ cell64[b]
        keep = (torch.linalg.vector_norm(vec, dim=-1) <= r) & ((i != j) | (s != 0).any(-1))
        parts_e.append(torch.stack([j[keep], i[keep]]) + start)
        parts_s.append(s[keep])
        start += n
    if not parts_e:
        return (torch.zeros(2, 0, dtype=torch.long, device=pos.device),
                torch.zeros(0, 3, dtype=torch.long, device=pos.device))
    edge_index, shifts = torch.cat(parts_e, 1).to(pos.device), torch.cat(parts_s).to(pos.device)
    order = torch.arange(edge_index.shape[1], device=pos.device)
    for key in (shifts[:, 2], shifts[:, 1], shifts[:, 0], edge_index[0], edge_index[1]):  # least significant first
        order = order[torch.argsort(key[order], stable=True)]
    return edge_index[:, order], shifts[order]
