"""Builders of the MD22 non-covalent complexes: stacked Watson-Crick base pairs (AT-AT,
AT-AT-CG-CG) and C60 in the buckyball catcher."""
from __future__ import annotations

import functools

import numpy as np

from ..data.errors import DataError
from .optional import _import
from .structure import Molecule

# The nucleobases carry H where DNA has its sugar (9H-adenine/guanine, 1H-thymine/cytosine), as
# in MD22. Atom map numbers label the atoms used below: 9 the glycosidic N, the others the
# Watson-Crick donors/acceptors (ring numbering: A N1 = 11, N6 = 6; T N3 = 3, O4 = 4, O2 = 2;
# G N1 = 11, N2 = 2, O6 = 6; C N3 = 3, N4 = 4, O2 = 2).
_BASES = {
    "A": "[NH2:6]c1[n:11]c[n:3]c2[nH:9]c[n:7]c12",
    "T": "Cc1c[nH:9]c(=[O:2])[nH:3]c1=[O:4]",
    "G": "[NH2:2]c1[nH:11]c(=[O:6])c2[n:7]c[nH:9]c2[n:3]1",
    "C": "[NH2:4]c1cc[nH:9]c(=[O:2])[n:3]1",
}
# Watson-Crick hydrogen bonds: (donor base, donor label, acceptor label, donor-acceptor distance Å)
_WATSON_CRICK = {"AT": [("A", 6, 4, 2.95), ("T", 3, 11, 2.85)],
                 "CG": [("C", 4, 6, 2.91), ("G", 11, 3, 2.95), ("G", 2, 2, 2.86)]}
_MAJOR_GROOVE = {"A": 6, "T": 4, "G": 6, "C": 4}  # N6/O4/O6/N4 face the major groove
RISE, TWIST = 3.38, 36.0  # B-DNA step (Å, degrees)


def _embed(smiles: str, seed: int):
    Chem = _import("rdkit.Chem", "rdkit", "building a molecule")
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise DataError(f"RDKit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=5000)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    x = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    labels = {a.GetAtomMapNum(): a.GetIdx() for a in mol.GetAtoms() if a.GetAtomMapNum()}
    return mol, z, x, labels


def _hydrogen_toward(mol, x: np.ndarray, i: int, point: np.ndarray) -> int:
    hs = [n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetAtomicNum() == 1]
    return min(hs, key=lambda h: float(np.linalg.norm(x[h] - point)))


@functools.lru_cache(maxsize=16)
def _base_pair(code: str, seed: int):
    """A Watson-Crick pair ``code`` (strand-I base first: AT, TA, CG, GC) as (z, x, frame): the
    strand-II base is placed as a rigid body (RDKit/MMFF geometry) so that the Watson-Crick
    donor-acceptor distances, near-linear N-H...X and coplanarity hold (least squares, 24 seeded
    starts). ``frame`` = (origin, 3x3 axes) of the pair in the spirit of the standard base-pair
    reference frame (Olson et al., J. Mol. Biol. 313, 229 (2001)): y from strand II to strand I
    along C1'...C1' (virtual C1' atoms 1.47 Å out along the glycosidic N-H), x toward the major
    groove, z = x × y; origin 2.6 Å from the C1'...C1' midpoint toward the major groove, where a
    B-DNA helix axis passes."""
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation

    b1, b2 = code[0], code[1]
    hbonds = _WATSON_CRICK.get(code) or _WATSON_CRICK[code[::-1]]
    m1, z1, x1, l1 = _embed(_BASES[b1], seed)
    m2, z2, x2, l2 = _embed(_BASES[b2], seed)
    heavy = x1[z1 > 1]
    c1 = heavy.mean(0)
    normal = np.linalg.svd(heavy - c1)[2][2]
    x2c = x2 - x2.mean(0)

    def place(p):
        return Rotation.from_rotvec(p[:3]).apply(x2c) + p[3:]

    def loss(p):
        y = place(p)
        total = 0.0
        for donor, dlab, alab, d0 in hbonds:
            if donor == b1:
                D, X = x1[l1[dlab]], y[l2[alab]]
                H = x1[_hydrogen_toward(m1, x1, l1[dlab], X)]
            else:
                D, X = y[l2[dlab]], x1[l1[alab]]
                H = y[_hydrogen_toward(m2, y, l2[dlab], X)]
            dh = np.linalg.norm(H - D)
            total += (np.linalg.norm(D - X) - d0) ** 2 + (np.linalg.norm(H - X) - (d0 - dh)) ** 2
        total += 0.1 * np.sum(((y[z2 > 1] - c1) @ normal) ** 2)
        dist = np.linalg.norm(y[:, None] - x1[None], axis=-1)
        return total + 10.0 * np.sum(np.clip(1.7 - dist, 0.0, None) ** 2)

    hb = np.mean([x1[l1[k]] for k in l1 if k != 9], axis=0)
    away = hb - c1
    away -= (away @ normal) * normal
    away /= np.linalg.norm(away)
    best = None
    for k in range(24):
        p0 = np.concatenate([Rotation.random(random_state=k).as_rotvec(), c1 + 7.0 * away])
        r = minimize(loss, p0, method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    y = place(best.x)

    def c1prime(mol, x, lab):
        n = lab[9]
        h = _hydrogen_toward(mol, x, n, x[n])
        return x[n] + 1.47 * (x[h] - x[n]) / np.linalg.norm(x[h] - x[n])

    p1, p2 = c1prime(m1, x1, l1), c1prime(m2, y, l2)
    ey = (p1 - p2) / np.linalg.norm(p1 - p2)
    groove = 0.5 * (x1[l1[_MAJOR_GROOVE[b1]]] + y[l2[_MAJOR_GROOVE[b2]]]) - 0.5 * (p1 + p2)
    ex = groove - (groove @ ey) * ey
    ex /= np.linalg.norm(ex)
    ez = np.cross(ex, ey)
    origin = 0.5 * (p1 + p2) + 2.6 * ex
    z, x = np.concatenate([z1, z2]), np.concatenate([x1, y])
    for arr in (z, x, origin):
        arr.flags.writeable = False  # cached: shared between calls
    return z, x, (origin, np.stack([ex, ey, ez], axis=1)), float(best.fun)


def base_pair_stack(pairs: list[str], seed: int = 42, name: str | None = None) -> Molecule:
    """Watson-Crick pairs stacked as a B-DNA fragment without backbone: pair k is rotated by
    k·36° about the helix axis (z of its base-pair frame) and raised by k·3.38 Å."""
    zs, xs, fits = [], [], []
    for k, code in enumerate(pairs):
        z, x, (origin, axes), fit = _base_pair(code, seed)
        local = (x - origin) @ axes  # coordinates in the pair's frame
        a = np.radians(TWIST * k)
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        zs.append(z)
        xs.append(local @ rot.T + np.array([0.0, 0.0, RISE * k]))
        fits.append(fit)
    x = np.concatenate(xs)
    return Molecule(name or "-".join(pairs), np.concatenate(zs), x - x.mean(0), {
        "construction": f"Watson-Crick pairs {'-'.join(pairs)} (strand-I base first) stacked as B-DNA without "
                        f"backbone: rise {RISE} Å, twist {TWIST}°; bases RDKit ETKDG + MMFF94, each pair a "
                        f"rigid-body least-squares fit of its Watson-Crick hydrogen bonds",
        "embed_seed": int(seed), "pair_fit_residual": fits})


def _catcher_mol():
    """Sygula's buckycatcher C60H28 (J. Am. Chem. Soc. 129, 3842 (2007)) as an RDKit molecule:
    a cyclooctatetraene whose four bonds 1-2, 3-4, 5-6, 7-8 are benzo-fused; the benzo rings on
    bonds 1-2 and 5-6 are in turn fused to a rim C-C bond of a corannulene (the two pincers)."""
    Chem = _import("rdkit.Chem", "rdkit", "building the buckyball catcher")
    cor = Chem.MolFromSmiles("c1cc2ccc3ccc4ccc5ccc1c1c2c3c4c51")
    rw = Chem.RWMol()
    aromatic, single = Chem.BondType.AROMATIC, Chem.BondType.SINGLE

    def carbons(n):
        out = []
        for _ in range(n):
            a = Chem.Atom(6)
            a.SetIsAromatic(True)
            out.append(rw.AddAtom(a))
        return out

    pincers = []
    rim = next(b for b in cor.GetBonds() if b.GetBeginAtom().GetTotalNumHs() == 1 and b.GetEndAtom().GetTotalNumHs() == 1)
    for _ in range(2):
        off = rw.GetNumAtoms()
        carbons(cor.GetNumAtoms())
        for b in cor.GetBonds():
            rw.AddBond(b.GetBeginAtomIdx() + off, b.GetEndAtomIdx() + off, aromatic)
        i, j = rim.GetBeginAtomIdx() + off, rim.GetEndAtomIdx() + off
        b1, b2, b3, b4 = carbons(4)
        for p, q in ((i, b1), (b1, b2), (b2, b3), (b3, b4), (b4, j)):
            rw.AddBond(p, q, aromatic)
        pincers.append((b2, b3))
    benzo = []
    for _ in range(2):
        r = carbons(6)
        for t in range(6):
            rw.AddBond(r[t], r[(t + 1) % 6], aromatic)
        benzo.append((r[0], r[1]))
    (u1a, u1b), (u2a, u2b) = pincers
    (z1a, z1b), (z2a, z2b) = benzo
    for p, q in ((u1b, z1a), (z1b, u2a), (u2b, z2a), (z2b, u1a)):  # the cyclooctatetraene ring
        rw.AddBond(p, q, single)
    mol = rw.GetMol()
    Chem.SanitizeMol(mol)
    return mol


def buckyball_catcher(seed: int = 42, name: str | None = None, attempts: int = 20) -> Molecule:
    """C60 in the buckycatcher C60H28 (148 atoms): ETKDG embedding of the catcher, both corannulene
    bowls pre-bent toward each other (their concave faces form the cleft), C60 (ase) moved along
    the cleft from the tether outward until no contact is below 3 Å, then UFF optimisation of
    the whole complex (MMFF94 flattens corannulene; UFF keeps its bowl, depth ~0.9 Å).

    Accepted when C60 ends up inside the cleft: its centre 6.3-7.5 Å from both corannulene hub
    (five-ring) centroids and no C60-catcher contact below 3.0 Å. Some ETKDG conformers of the
    tether leave the ball outside; then the embedding seed is increased (up to ``attempts``
    times; the seed used is recorded)."""
    for k in range(attempts):
        mol = _buckyball_catcher_once(seed + k, name)
        s = mol.source
        if all(6.3 < d < 7.5 for d in s["c60_centre_to_corannulene_hub_A"]) and s["closest_c60_catcher_contact_A"] > 3.0:
            s["embed_seed_requested"] = int(seed)
            return mol
    raise DataError(f"buckyball-catcher: no embedding with C60 inside the cleft for seeds {seed}..{seed + attempts - 1}")


def _buckyball_catcher_once(seed: int, name: str | None) -> Molecule:
    Chem = _import("rdkit.Chem", "rdkit", "building the buckyball catcher")
    from ase.build import molecule as ase_molecule
    from rdkit.Chem import AllChem

    catcher = Chem.AddHs(_catcher_mol())
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed) & 0x7FFFFFFF
    params.numThreads = 1
    if AllChem.EmbedMolecule(catcher, params) != 0:
        raise DataError("buckyball-catcher: RDKit could not embed the catcher")
    x = np.asarray(catcher.GetConformer().GetPositions(), dtype=np.float64)
    rings = catcher.GetRingInfo().AtomRings()
    hubs = [x[list(r)].mean(0) for r in rings if len(r) == 5]
    cot = x[list(next(r for r in rings if len(r) == 8))].mean(0)
    for k, hub in enumerate(hubs):  # bend each corannulene into a bowl opening toward the other
        axis = (hubs[1 - k] - hub) / np.linalg.norm(hubs[1 - k] - hub)
        d = np.linalg.norm(x - hub, axis=1)
        bowl = (d > 1.3) & (d < 4.6)
        x[bowl] += axis * (0.45 * (d[bowl] - 1.2) / 2.4)[:, None]
    c60 = ase_molecule("C60").positions
    c60 = c60 - c60.mean(0)
    mid = 0.5 * (hubs[0] + hubs[1])
    out = (mid - cot) / np.linalg.norm(mid - cot)
    for shift in np.arange(-3.0, 12.0, 0.25):
        ball = c60 + mid + shift * out
        if np.linalg.norm(ball[:, None] - x[None], axis=-1).min() > 3.0:
            break
    ball_mol = Chem.RWMol()
    for _ in range(60):
        a = Chem.Atom(6)
        a.SetIsAromatic(True)
        a.SetNoImplicit(True)
        ball_mol.AddAtom(a)
    dist = np.linalg.norm(c60[:, None] - c60[None], axis=-1)
    for i, j in zip(*np.nonzero(np.triu(dist < 1.6, 1))):
        ball_mol.AddBond(int(i), int(j), Chem.BondType.AROMATIC)
    complex_ = Chem.CombineMols(catcher, ball_mol.GetMol())
    Chem.SanitizeMol(complex_)
    conf = Chem.Conformer(complex_.GetNumAtoms())
    for i, p in enumerate(np.concatenate([x, ball])):
        conf.SetAtomPosition(i, p.tolist())
    complex_.RemoveAllConformers()
    complex_.AddConformer(conf, assignId=True)
    ff = AllChem.UFFGetMoleculeForceField(complex_, ignoreInterfragInteractions=False)
    ff.Initialize()
    converged = ff.Minimize(maxIts=20000) == 0
    pos = np.asarray(ff.Positions(), dtype=np.float64).reshape(-1, 3)
    z = np.array([a.GetAtomicNum() for a in complex_.GetAtoms()], dtype=np.int64)
    n = catcher.GetNumAtoms()
    centre = pos[n:].mean(0)
    hub_d = [float(np.linalg.norm(centre - pos[list(r)].mean(0))) for r in rings if len(r) == 5]
    return Molecule(name or "buckyball-catcher", z, pos - pos.mean(0), {
        "construction": "C60 (ase.build.molecule) in the buckycatcher C60H28 (RDKit ETKDG, corannulene bowls bent "
                        "toward each other), UFF-optimised complex",
        "catcher_smiles": Chem.MolToSmiles(_catcher_mol()), "embed_seed": int(seed),
        "uff_converged": bool(converged), "c60_centre_to_corannulene_hub_A": hub_d,
        "closest_c60_catcher_contact_A": float(np.linalg.norm(pos[n:, None] - pos[None, :n], axis=-1).min())})
