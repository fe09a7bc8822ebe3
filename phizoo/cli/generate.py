"""``phizoo data generate``: the long-range benchmark data sets (:mod:`phizoo.generate.lr`).

    phizoo data generate point-charges -o data/lr/point_charges.lmdb --frames 1000 --seed 0
    phizoo data generate dimers        -o data/lr/dimers.lmdb --curves 8 --points 12
    phizoo data generate ag3           -o data/lr/ag3.lmdb --geometries 500
    phizoo data generate carbon-chains -o data/lr/carbon_chains.lmdb --frames 1000
    phizoo data generate nacl          -o data/lr/nacl.lmdb --geometries 500

Added to ``phizoo data`` by :func:`add_parser` (this module has no ``register``: it is not a
top-level command).
"""
from __future__ import annotations

import argparse
import os
import sys

from .data import _positive


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or positive, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _common(p, default_output: str) -> None:
    p.add_argument("-o", "--output", required=True, help=f"database file to write (e.g. {default_output})")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the sampling and of the split (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--restart", action="store_true", help="discard an interrupted run instead of continuing it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_parser(dsub) -> None:
    """Add ``generate`` and its subcommands to the ``phizoo data`` subparsers ``dsub``."""
    g = dsub.add_parser("generate", help="generate the long-range benchmark data sets (LMDB)",
                        description="Generate the long-range benchmark data sets as phizoo LMDB databases (eV, Å, "
                                    "eV/Å, e; splits, level of theory and settings in the metadata). Reproducible "
                                    "by seed; an interrupted run (Ctrl-C, kill) continues when the same command is "
                                    "run again. See docs/datasets/long-range.md.")
    gsub = g.add_subparsers(dest="generate_command", required=True)

    p = gsub.add_parser("point-charges", help="64+64 ±1 e point charges in a periodic box: Ewald + Born-Mayer, "
                                              "Langevin MD frames",
                        description="Random point charges (the LES benchmark): cations +1 e (stored as Na) and "
                                    "anions -1 e (Cl) in a periodic cubic box; exact energies and forces of Ewald "
                                    "Coulomb (torch-pme, k_e = 14.399645 eV·Å/e²) plus a shifted-force Born-Mayer "
                                    "repulsion (A = 1200 eV, rho = 0.317 Å, cutoff 4.5 Å); frames every STRIDE "
                                    "steps of Langevin MD of the same model.")
    _common(p, "data/lr/point_charges.lmdb")
    p.add_argument("--frames", type=_positive, default=1000, help="frames (default 1000)")
    p.add_argument("--cations", type=_positive, default=64, help="number of +1 e charges (default 64)")
    p.add_argument("--anions", type=_positive, default=64, help="number of -1 e charges (default 64)")
    box = p.add_mutually_exclusive_group()
    box.add_argument("--box", type=_positive_float, help="cubic box length in Å (default: from --density)")
    box.add_argument("--density", type=_positive_float, default=0.0319,
                     help="ions per Å³ (default 0.0319, molten NaCl: 15.89 Å for 128 ions)")
    p.add_argument("--temperature", type=_positive_float, default=1500.0, help="K (default 1500)")
    p.add_argument("--timestep", type=_positive_float, default=2.0, help="fs (default 2)")
    p.add_argument("--friction", type=_positive_float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    p.add_argument("--stride", type=_positive, default=100, help="MD steps between frames (default 100 = 200 fs)")
    p.add_argument("--equilibration", type=int, default=5000, help="MD steps before the first frame (default 5000)")
    p.add_argument("--checkpoint-every", type=_positive, default=10,
                   help="frames between MD-state checkpoints (.<output>.md-state.npz; default 10)")
    p.set_defaults(func=run_point_charges)

    from ..generate.lr.dimers import ALL_PAIRS, PAIRS

    d = gsub.add_parser("dimers", help="charged and polar dimers along dissociation curves, GFN2-xTB",
                        description="Ion-molecule, ion-ion and polar dimers along dissociation curves from contact "
                                    "to MAX_DISTANCE (closest inter-monomer distance), random orientations, GFN2-xTB "
                                    "(tblite) with the total charge. Needs: pip install phizoo[xtb]")
    _common(d, "data/lr/dimers.lmdb")
    d.add_argument("--curves", type=_positive, default=8, help="random orientations per pair (default 8)")
    d.add_argument("--points", type=_positive, default=12, help="distances per curve (default 12)")
    d.add_argument("--pairs", help=f"comma-separated pairs (default: {','.join(PAIRS)}; also: "
                                   f"{','.join(k for k in ALL_PAIRS if k not in PAIRS)})")
    d.add_argument("--contact", type=_positive_float, default=0.7,
                   help="start of a curve, in units of the van der Waals contact distance (default 0.7)")
    d.add_argument("--max-distance", type=_positive_float, default=15.0, help="end of a curve, Å (default 15)")
    d.add_argument("--split-by", choices=["curve", "frame"], default="curve",
                   help="keep each curve in one split (default) or split frames at random")
    d.add_argument("--accuracy", type=_positive_float, default=1.0, help="tblite accuracy (default 1.0)")
    d.set_defaults(func=run_dimers)

    a = gsub.add_parser("ag3", help="Ag3+ and Ag3- at identical geometries, GFN2-xTB",
                        description="Random silver trimers, each computed with total charge +1 and -1 (identical "
                                    "positions), GFN2-xTB (tblite). Needs: pip install phizoo[xtb]")
    _common(a, "data/lr/ag3.lmdb")
    a.add_argument("--geometries", type=_positive, default=500, help="trimers; frames = 2 x this (default 500)")
    a.add_argument("--accuracy", type=_positive_float, default=1.0, help="tblite accuracy (default 1.0)")
    a.add_argument("--electronic-temperature", type=_positive_float, default=2000.0,
                   help="K, Fermi smearing (default 2000: at 300 K the SCC of near-equilateral Ag3- can fail)")
    a.set_defaults(func=run_ag3)

    c = gsub.add_parser("carbon-chains", help="C10H2 and C10H3+ chains (distorted), GFN2-xTB",
                        description="The polyyne C10H2 and its terminally protonated cation C10H3+, optimised and "
                                    "randomly distorted (noise and bends), GFN2-xTB (tblite). Needs: pip install "
                                    "phizoo[xtb]")
    _common(c, "data/lr/carbon_chains.lmdb")
    c.add_argument("--frames", type=_positive, default=1000, help="frames, alternating C10H2 / C10H3+ (default 1000)")
    c.add_argument("--noise", type=float, default=0.02, help="Gaussian noise per coordinate, Å (default 0.02)")
    c.add_argument("--bend", type=float, default=0.2, help="bend amplitude, Å (default 0.2)")
    c.add_argument("--accuracy", type=_positive_float, default=1.0, help="tblite accuracy (default 1.0)")
    c.set_defaults(func=run_carbon_chains)

    n = gsub.add_parser("nacl", help="Na9Cl8+ and Na8Cl8 clusters (same positions but one Na), GFN2-xTB",
                        description="A 3x3x2 rock-salt block without one corner Cl (Na9Cl8+, GFN2-xTB optimised), "
                                    "randomly distorted; each geometry computed as Na9Cl8+ (charge +1) and without "
                                    "the opposite-corner Na as Na8Cl8 (charge 0), GFN2-xTB (tblite). Needs: pip "
                                    "install phizoo[xtb]")
    _common(n, "data/lr/nacl.lmdb")
    n.add_argument("--geometries", type=_positive, default=500, help="distorted clusters; frames = 2 x this "
                                                                      "(default 500)")
    n.add_argument("--noise", type=float, default=0.1, help="Gaussian noise per coordinate, Å (default 0.1)")
    n.add_argument("--accuracy", type=_positive_float, default=1.0, help="tblite accuracy (default 1.0)")
    n.set_defaults(func=run_nacl)


def _run(args, make, unit: str = "frame") -> int:
    import signal
    import time

    from .data import describe

    def _term(signum, frame):  # `kill` (SIGTERM) keeps the work done, like Ctrl-C
        raise KeyboardInterrupt

    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: OMP_NUM_THREADS is not 1: multi-threaded tblite/torch may change the last digits from run to "
              "run (set OMP_NUM_THREADS=1 for bit-identical databases)", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _term)
    start = time.perf_counter()
    try:
        path, n = make()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.output} was not written; the frames so far are kept and the same command "
              f"continues (--restart discards them)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.perf_counter() - start
    print(describe(path))
    print(f"wall time {wall:.1f} s for {n} {unit}s ({wall / max(n, 1):.3g} s per {unit}; frames written by an "
          f"earlier, interrupted run included in the count)")
    return 0


def _common_kwargs(args) -> dict:
    return dict(seed=args.seed, overwrite=args.overwrite, resume=not args.restart, progress=not args.quiet)


def run_point_charges(args) -> int:
    from ..generate.lr.point_charges import generate_point_charges

    def make():
        path = generate_point_charges(args.output, args.frames, n_cations=args.cations, n_anions=args.anions,
                                      box=args.box, density=args.density, temperature=args.temperature,
                                      timestep=args.timestep, friction=args.friction, stride=args.stride,
                                      equilibration=args.equilibration, checkpoint_every=args.checkpoint_every,
                                      **_common_kwargs(args))
        return path, args.frames

    return _run(args, make)


def run_dimers(args) -> int:
    from ..generate.lr.dimers import PAIRS, generate_dimers

    pairs = args.pairs.split(",") if args.pairs is not None else None

    def make():
        path = generate_dimers(args.output, curves=args.curves, points=args.points, pairs=pairs,
                               contact=args.contact, max_distance=args.max_distance, split_by=args.split_by,
                               accuracy=args.accuracy, **_common_kwargs(args))
        return path, args.curves * args.points * len(pairs or PAIRS)

    return _run(args, make)


def run_ag3(args) -> int:
    from ..generate.lr.clusters import generate_ag3

    def make():
        return generate_ag3(args.output, args.geometries, accuracy=args.accuracy,
                            electronic_temperature=args.electronic_temperature, **_common_kwargs(args)), \
            2 * args.geometries

    return _run(args, make)


def run_carbon_chains(args) -> int:
    from ..generate.lr.clusters import generate_carbon_chains

    def make():
        return generate_carbon_chains(args.output, args.frames, noise=args.noise, bend=args.bend,
                                      accuracy=args.accuracy, **_common_kwargs(args)), args.frames

    return _run(args, make)


def run_nacl(args) -> int:
    from ..generate.lr.nacl import generate_nacl

    def make():
        return generate_nacl(args.output, args.geometries, noise=args.noise, accuracy=args.accuracy,
                             **_common_kwargs(args)), 2 * args.geometries

    return _run(args, make)
