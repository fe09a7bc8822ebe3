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
    if batch is None and isinstance(pos, np.ndarray) and len(pos) <= _DENSE_MAX:
        return _closest_pair_dense(np.asarray(pos, dtype=np.float64), min_dist)
    import torch  # lazy: numpy callers (the converters) stay torch-free for small structures

    from .nn.graph import radius_graph

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


def check_distances(pos: Any, where: str, error: type[Exception] = GeometryError) -> str | None:
    """One search for a structure at conversion: raise ``error`` below :data:`MIN_DISTANCE`;
    return a warning line for a contact below :data:`SHORT_BOND` (kept, but shorter than any
    chemical bond); ``None`` otherwise."""
    hit = closest_pair(pos, None, SHORT_BOND)
    if hit is None:
        return None
    if hit[3] <= MIN_DISTANCE:
        check_min_distance(pos, None, MIN_DISTANCE, where, error)
    return (f"{where}: atoms {hit[1]} and {hit[2]} are only {hit[3]:.3g} Å apart (< {SHORT_BOND} Å, shorter than "
            f"any chemical bond): check the length unit")


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


def check_edge_distances(edge_index: Any, dist: Any, batch: Any, min_dist: float = MIN_DISTANCE,
                         error: type[Exception] = GeometryError) -> None:
    """``check_min_distance`` on a neighbour list the caller already has (a model's radius graph,
    periodic images included): O(E), no extra neighbour search. Tensors: edge_index [2, E],
    dist [E] Å, batch [N]."""
    close = dist.detach() < min_dist
    if not bool(close.any()):
        return
    e = int(close.nonzero()[0, 0])
    j, i = (int(v) for v in edge_index[:, e])
    mol = int(batch[i])
    first = int((batch == mol).nonzero()[0, 0]) if batch.numel() else 0
    a, b = sorted((i - first, j - first))
    where = f"structure {mol} of the batch" if bool((batch != 0).any()) else "structure"
    raise error(f"{where}: atoms {a} and {b} are {float(dist[e]):.4g} Å apart, closer than the minimum "
                f"{min_dist:g} Å (coincident or duplicated atoms, or positions in the wrong unit?)")


# ------------------------------------------------------------------ plausibility (warnings only)

K_B = 8.617333262e-5
"""Boltzmann constant, eV/K."""

BOND_RATIO = (0.75, 1.35)
"""Plausible range of the median (over atoms) of nearest-neighbour distance / sum of covalent
radii. Real molecules give ≈ 0.9-1.1; positions in Bohr read as Å give ≈ 1.9, Å read as Bohr
≈ 0.53."""


def geometry_warning(z: Any, pos: Any, where: str) -> str | None:
    """A one-line warning when a structure's interatomic distances look like a unit mix-up, else ``None``.

    Checks the median over atoms of (nearest-neighbour distance) / (sum of the two covalent
    radii, ``ase.data.covalent_radii``) against :data:`BOND_RATIO`. O(N log N) (a k-d tree).
    Structures of one atom pass. (Single short contacts: :func:`check_distances`.)
    """
    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    z = np.asarray(z, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    if len(z) < 2:
        return None
    d, j = cKDTree(pos).query(pos, k=2)
    d, j = d[:, 1], j[:, 1]
    ratio = float(np.median(d / (covalent_radii[z] + covalent_radii[z[j]])))
    if not BOND_RATIO[0] <= ratio <= BOND_RATIO[1]:
        return (f"{where}: nearest-neighbour distances are {ratio:.2f}x the covalent bond lengths (expected "
                f"{BOND_RATIO[0]}-{BOND_RATIO[1]}): positions in the wrong length unit (Bohr vs Å)?")
    return None


T_RANGE = (50.0, 5000.0)
"""K: plausible effective temperatures of the energy fluctuations of MD data."""

FORCE_RMS_RANGE = (0.1, 15.0)
"""eV/Å: plausible RMS force components of MD data."""


def md_energy_warning(energies: Any, forces: Any, natoms: int, where: str) -> str | None:
    """A one-line warning when the energies/forces (eV, eV/Å) of an MD trajectory have an
    implausible scale, else ``None``.

    Thermal fluctuations of the potential energy of N atoms at temperature T are about
    sqrt(3N/2)·k_B·T, so ``T_eff = std(E) / (sqrt(1.5 N) k_B)``; MD data sets are sampled at
    ~100-1500 K, and a factor 23 (eV read as kcal/mol or back), 27 (Hartree as eV) or 627 off
    lands outside :data:`T_RANGE`. Force RMS of molecular MD is ~0.3-3 eV/Å; outside
    :data:`FORCE_RMS_RANGE` the energy unit is almost certainly wrong (eV read as kcal/mol
    turns 1 eV/Å into 0.04). Needs at least 10 frames for the energy test.
    """
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if forces is not None:
        rms = float(np.sqrt(np.mean(np.square(np.asarray(forces, dtype=np.float64)))))
        if not FORCE_RMS_RANGE[0] <= rms <= FORCE_RMS_RANGE[1]:
            return (f"{where}: force RMS is {rms:.3g} eV/Å (molecular MD: ~0.3-3 eV/Å): "
                    f"check the declared energy unit")
    if len(e) >= 10 and natoms > 0:
        t_eff = float(np.std(e)) / (np.sqrt(1.5 * natoms) * K_B)
        if not T_RANGE[0] <= t_eff <= T_RANGE[1]:
            return (f"{where}: energy fluctuations correspond to {t_eff:.3g} K (MD data: ~100-2000 K; "
                    f"std {np.std(e):.3g} eV over {len(e)} frames of {natoms} atoms): check the declared energy unit")
    return None
