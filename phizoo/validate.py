"""Physical sanity checks on structures, shared by the converters and the models.

The one check here refuses structures with two atoms closer than :data:`MIN_DISTANCE`.

Why 0.1 Å: the shortest chemical bond there is (H₂, 0.74 Å) is 7× longer, and even
high-temperature MD or deliberately compressed geometries stay above ~0.4 Å, where the
nuclear repulsion of two protons is already ~36 eV. Below 0.1 Å (Z₁Z₂·14.4 eV·Å / r ≥
144 eV for H–H) no training set of a molecular potential has data, so any prediction would
be an extrapolation without meaning; at 0 Å (coincident atoms, the usual symptom of a
duplicated row or a unit mix-up) edge unit vectors ``vec / |vec|`` are undefined and every
model returns NaN. The floor is deliberately far below any bond so that no physical
structure is refused; the converters additionally *warn* about bonds below 0.5 Å (see
:data:`SHORT_BOND`).

The check is O(N) per structure: it builds a radius graph with radius ``min_dist``
(:func:`phizoo.nn.graph.radius_graph`, cell lists in ``torch_cluster``, bounded blocks in
the pure-torch fallback), which for a physical structure has no edges at all.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

MIN_DISTANCE = 0.1
"""Å. Atoms closer than this are refused at conversion and at prediction."""

SHORT_BOND = 0.5
"""Å. Converters warn (but keep the structure) when two atoms are closer than this."""


_DENSE_MAX = 64  # up to this many atoms a dense numpy check is faster than building a graph


class GeometryError(ValueError):
    """Two atoms of a structure are closer than the minimum distance."""


class PlausibilityWarning(UserWarning):
    """Data that is valid but physically implausible (a unit mix-up?): converted, with a warning."""


def _closest_pair_dense(p: np.ndarray, min_dist: float) -> tuple[int, int, int, float] | None:
    if p.shape[0] < 2:
        return None
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    d[np.diag_indices(len(p))] = np.inf
    k = int(np.argmin(d))
    i, j = divmod(k, len(p))
    return None if d[i, j] > min_dist else (0, min(i, j), max(i, j), float(d[i, j]))


def closest_pair(pos: Any, batch: Any = None, min_dist: float = MIN_DISTANCE) -> tuple[int, int, int, float] | None:
    """The closest pair closer than ``min_dist``: (structure, atom i, atom j, distance Å) or ``None``.

    Args:
        pos: [N, 3] positions in Å (numpy array or tensor).
        batch: [N] structure index of every atom, sorted (PyG convention); ``None`` = one structure.
        min_dist: the radius (Å).
    Atom indices ``i < j`` count from the first atom of their structure (as in the source file).
    """
    from .nn.graph import radius_graph

    if batch is None and not isinstance(pos, torch.Tensor) and len(pos) <= _DENSE_MAX:
        return _closest_pair_dense(np.asarray(pos, dtype=np.float64), min_dist)
    p = torch.as_tensor(np.asarray(pos) if not isinstance(pos, torch.Tensor) else pos).detach()
    if p.shape[0] < 2:
        return None
    b = None if batch is None else torch.as_tensor(batch).detach().to(device=p.device, dtype=torch.long)
    edges = radius_graph(p, float(min_dist), b)
    if edges.shape[1] == 0:
        return None
    d = torch.linalg.vector_norm(p[edges[0]] - p[edges[1]], dim=-1)
    k = int(torch.argmin(d))
    i, j = sorted((int(edges[0, k]), int(edges[1, k])))
    mol = 0 if b is None else int(b[i])
    first = 0 if b is None else int((b == mol).nonzero()[0, 0])
    return mol, i - first, j - first, float(d[k])


def check_min_distance(pos: Any, batch: Any = None, min_dist: float = MIN_DISTANCE, where: str = "",
                       error: type[Exception] = GeometryError) -> None:
    """Raise ``error`` (one line) if two atoms of a structure are closer than ``min_dist`` Å.

    ``where`` names the structure in the message (a file and record); with a ``batch`` the
    message also gives the structure index within the batch.
    """
    hit = closest_pair(pos, batch, min_dist)
    if hit is None:
        return
    mol, i, j, d = hit
    if batch is None:
        loc = where or "structure"
    else:
        loc = f"{where} (structure {mol} of the batch)" if where else f"structure {mol} of the batch"
    raise error(f"{loc}: atoms {i} and {j} are {d:.4g} Å apart, closer than the minimum {min_dist:g} Å "
                f"(coincident or duplicated atoms, or positions in the wrong unit?)")
