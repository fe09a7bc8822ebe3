"""``phizoo data``: convert MD22 / OE62 / QM9 into phizoo LMDB databases and inspect them.

    phizoo data convert md22 md22_DHA.npz -o dha.lmdb
    phizoo data convert oe62 df_62k.json -o oe62.lmdb
    phizoo data convert qm9 -o qm9.lmdb --train-subsets 1000,10000     # from the installed qm9pack
    phizoo data convert ase mine.extxyz more.traj -o mine.lmdb --energy-unit kcal/mol   # your own data
    phizoo data info oe62.lmdb [--verify]
    phizoo data xtb-md --molecule Ac-Ala3-NHMe -o data/xtb/ac_ala3.npz   # GFN2-xTB MD, MD22 format
    phizoo data generate point-charges -o data/lr/point_charges.lmdb     # long-range benchmarks (cli/generate.py)
"""
from __future__ import annotations

import argparse
import json
import sys


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _int_list(text: str) -> list[int]:
    return [_positive(t) for t in text.replace(" ", "").split(",") if t]


def register(sub) -> None:
    p = sub.add_parser("data", help="convert datasets (MD22, OE62, QM9) to LMDB and inspect databases",
                       description="Convert datasets into phizoo's LMDB store and inspect them.")
    dsub = p.add_subparsers(dest="data_command", required=True)

    c = dsub.add_parser("convert", help="convert a dataset into an LMDB database (atomic, resumable)",
                        description="Convert MD22 (.npz), OE62 (df_62k.json) or QM9 (qm9pack CSVs) into a "
                                    "phizoo LMDB database. Energies in eV (float64), positions in Å, forces "
                                    "in eV/Å, charges in e. The file appears only when the conversion is "
                                    "complete; an interrupted run resumes when started again.")
    c.add_argument("dataset", choices=["md22", "oe62", "qm9", "ase"])
    c.add_argument("src", nargs="*", default=None,
                   help="source: md22 .npz file, OE62 df_*.json, or for qm9 a qm9_part*.csv file/folder "
                        "(omit or 'qm9pack' for the installed qm9pack package); ase: one or more files "
                        "that ase.io.read reads (extxyz, ASE db, traj, ...)")
    c.add_argument("-o", "--output", required=True, help="database file to write (e.g. data/oe62.lmdb)")
    c.add_argument("--limit", type=_positive, help="convert only the first N structures of the source "
                                                    "(split sizes are scaled proportionally)")
    c.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    c.add_argument("--train-size", type=_positive,
                   help="md22: training budget B (train + val; required for unknown molecules); "
                        "oe62/qm9: number of training structures")
    c.add_argument("--val-size", type=int, help="oe62/qm9: number of validation structures")
    c.add_argument("--test-size", type=int, help="oe62/qm9: number of test structures (default: all the rest)")
    c.add_argument("--val-fraction", type=float, default=0.05, help="md22: validation share of the budget (0.05)")
    c.add_argument("--molecule", help="md22: molecule name when the file name does not tell")
    c.add_argument("--target", default="total_energy_pbe0_vac_tier2", help="oe62: energy column (eV)")
    c.add_argument("--charges", default="hirshfeld_pbe", help="oe62: charge column, or 'none'")
    for q, default in (("energy", "energy"), ("forces", "forces"), ("stress", "stress"), ("charges", "charges"),
                       ("total-charge", "charge"), ("spin", "spin")):
        c.add_argument(f"--{q}-key", help=f"ase: atoms.info / atoms.arrays / calculator key of the {q} "
                                          f"(default {default!r}; given = required in every frame)")
    c.add_argument("--energy-unit", default="eV", choices=["eV", "kcal/mol", "kJ/mol", "Hartree"],
                   help="ase: unit of the energies in the files (forces: energy/length, stress: energy/length^3)")
    c.add_argument("--length-unit", default="Ang", choices=["Ang", "Bohr"], help="ase: unit of positions and cell")
    c.add_argument("--theory", help="ase: level of theory recorded in the metadata")
    c.add_argument("--format", help="ase: ase.io format when the file extension does not tell")
    c.add_argument("--train-subsets", type=_int_list, default=[],
                   help="comma-separated sizes of nested training subsets stored as splits train_<k>")
    c.add_argument("--test-only", action="store_true",
                   help="every structure in the test split (an independent test set, e.g. a second trajectory, "
                        "for 'phizoo eval'); no train/val split, budget or element references")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--restart", action="store_true", help="discard an interrupted conversion instead of resuming")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_convert)

    i = dsub.add_parser("info", help="counts, elements, units, statistics and splits of a database")
    i.add_argument("path", help="database file")
    i.add_argument("--json", action="store_true", help="print the stored metadata as JSON")
    i.add_argument("--verify", action="store_true",
                   help="read and check every record, the index and the splits (sha256, keys, shapes, physics, "
                        "split overlap); exit status 2 naming the first problem")
    i.set_defaults(func=run_info)

    x = dsub.add_parser("xtb-md", help="GFN2-xTB Langevin MD of a molecule, saved as an MD22-format (sGDML) .npz",
                        description="Run Langevin molecular dynamics with GFN2-xTB energies and forces (tblite) "
                                    "and save every STRIDE-th step as an sGDML .npz (R Å, z, E kcal/mol, "
                                    "F kcal/mol/Å, Q charges e; theory 'GFN2-xTB (tblite <version>)') that "
                                    "'phizoo data convert md22' reads. Reproducible (with OMP_NUM_THREADS=1 the "
                                    "same seed gives an identical file) and resumable (rerun the same command "
                                    "after an interruption or kill). Needs: pip install phizoo[xtb]")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--molecule", help="an MD22 molecule built here: Ac-Ala3-NHMe, DHA, stachyose, AT-AT, "
                                        "AT-AT-CG-CG, buckyball-catcher")
    src.add_argument("--smiles", help="SMILES (RDKit: hydrogens added, ETKDG embedding seeded with --seed, MMFF)")
    src.add_argument("--structure", help="structure file (anything ase.io.read reads; the first structure)")
    x.add_argument("-o", "--output", required=True, help="the .npz file to write (e.g. data/xtb/ac_ala3.npz)")
    x.add_argument("--name", help="dataset name stored in the file (default: the molecule, formula or file stem)")
    x.add_argument("--temperature", type=float, default=500.0, help="K (default 500, as MD22)")
    x.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    x.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    x.add_argument("--frames", type=_positive, default=1000, help="frames to save (default 1000)")
    x.add_argument("--stride", type=_positive, default=10, help="MD steps between saved frames (default 10)")
    x.add_argument("--equilibration", type=int, default=1000, help="MD steps before the first frame (default 1000)")
    x.add_argument("--seed", type=int, default=0, help="seed of the velocities, the thermostat noise and the "
                                                      "RDKit embedding (default 0)")
    x.add_argument("--accuracy", type=float, default=1.0, help="tblite SCC accuracy (default 1.0; smaller is tighter)")
    x.add_argument("--checkpoint-every", type=_positive, default=100,
                   help="frames between checkpoints (.<output>.partial; default 100)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    x.add_argument("--restart", action="store_true", help="discard an interrupted run's checkpoint instead of resuming")
    x.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=run_xtb_md)

    from .generate import add_parser as add_generate_parser  # phizoo data generate (long-range benchmarks)
    add_generate_parser(dsub)


def run_convert(args) -> int:
    from ..data import convert_md22, convert_oe62, convert_qm9

    if args.test_only:
        given = [opt for opt, v in (("--train-size", args.train_size), ("--val-size", args.val_size),
                                    ("--test-size", args.test_size), ("--train-subsets", args.train_subsets)) if v]
        if given:
            raise ValueError(f"--test-only puts every structure in the test split; it cannot be combined with "
                             f"{', '.join(given)}")
    common = dict(limit=args.limit, seed=args.seed, train_subsets=args.train_subsets, test_only=args.test_only,
                  overwrite=args.overwrite, resume=not args.restart, progress=not args.quiet)
    sources = list(args.src or [])
    if args.dataset != "qm9" and not sources:
        raise ValueError(f"{args.dataset}: give the source file (SRC)")
    if args.dataset != "ase" and len(sources) > 1:
        raise ValueError(f"{args.dataset}: one source at a time (got {len(sources)})")
    args.src = sources[0] if args.dataset != "ase" and sources else (sources or None)
    try:
        if args.dataset == "ase":
            from ..data.ase_convert import convert_ase

            keys = {q: getattr(args, f"{q}_key") for q in ("energy", "forces", "stress", "charges",
                                                           "total_charge", "spin")}
            path = convert_ase(args.src, args.output, keys=keys, energy_unit=args.energy_unit,
                               length_unit=args.length_unit, theory=args.theory, format=args.format,
                               train_size=args.train_size, val_size=args.val_size, test_size=args.test_size,
                               **common)
        elif args.dataset == "md22":
            path = convert_md22(args.src, args.output, train_size=args.train_size, val_fraction=args.val_fraction,
                                molecule=args.molecule, **common)
        elif args.dataset == "oe62":
            charges = None if str(args.charges).lower() == "none" else args.charges
            path = convert_oe62(args.src, args.output, target=args.target, charges=charges,
                                train_size=args.train_size, val_size=args.val_size, test_size=args.test_size, **common)
        else:
            path = convert_qm9(args.src, args.output, train_size=args.train_size, val_size=args.val_size, test_size=args.test_size, **common)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.output} was not written; the records converted so far are kept and the "
              f"same command resumes (--restart discards them)", file=sys.stderr)
        return 130
    print(describe(path))
    return 0


def run_xtb_md(args) -> int:
    import os
    import signal
    import time

    import numpy as np

    from ..generate.xtb_md import checkpoint_path, xtb_md

    def _term(signum, frame):  # `kill` (SIGTERM) checkpoints like Ctrl-C
        raise KeyboardInterrupt

    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: OMP_NUM_THREADS is not 1: multi-threaded tblite changes the last digits from run to run, so "
              "the trajectory is valid but not bit-reproducible (set OMP_NUM_THREADS=1 for identical files)",
              file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _term)
    start = time.perf_counter()
    try:
        path = xtb_md(args.output, molecule_name=args.molecule, smiles=args.smiles, structure=args.structure,
                      name=args.name, seed=args.seed, temperature=args.temperature, timestep=args.timestep,
                      friction=args.friction, frames=args.frames, stride=args.stride,
                      equilibration=args.equilibration, accuracy=args.accuracy,
                      checkpoint_every=args.checkpoint_every, overwrite=args.overwrite, resume=not args.restart,
                      progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.output} was not written; the run so far is in "
              f"{checkpoint_path(args.output)} and the same command continues it (--restart discards it)",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    wall = time.perf_counter() - start
    with np.load(path, allow_pickle=False) as d:
        meta = json.loads(str(d["xtb_md"]))
        n, N = d["R"].shape[:2]
        print(f"wrote {path}: {n} frames of {d['name']} ({N} atoms), theory {d['theory']}, md5 {d['md5']}")
        t = meta["kinetic_temperature_K"]
        print(f"kinetic temperature of the frames: mean {t['mean']:.1f} K, std {t['std']:.1f} K "
              f"(target {meta['temperature_K']:g} K); E {float(d['E_min']):.2f} .. {float(d['E_max']):.2f} kcal/mol")
    print(f"wall time {wall:.1f} s (this session's steps, resumed ones excluded)")
    return 0


def run_info(args) -> int:
    from ..data.store_reader import read_metadata

    meta = read_metadata(args.path)
    if args.json:
        print(json.dumps(meta, indent=1, sort_keys=True))
    else:
        print(describe(args.path, meta))
    if args.verify:
        from ..data.verify import verify_database

        result = verify_database(args.path, progress=sys.stderr.isatty())
        print(f"verified    all {result['records']} records, the index and {len(result['splits'])} splits: OK",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _stat(d: dict, unit: str) -> str:
    if not d:
        return "-"
    return f"mean {d['mean']:.6g} std {d['std']:.4g} min {d['min']:.6g} max {d['max']:.6g} {unit}"


def describe(path, meta: dict | None = None) -> str:
    """Human-readable summary of a database (what ``phizoo data info`` prints)."""
    from pathlib import Path

    from ase.data import chemical_symbols

    from ..data.store_reader import read_metadata

    meta = meta or read_metadata(path)
    st = meta.get("statistics", {})
    na = st.get("num_atoms", {})
    lines = [
        ("path", f"{path} ({_size(Path(path).stat().st_size)})"),
        ("dataset", f"{meta.get('dataset')}: {meta.get('name')}"),
        ("schema", f"{meta.get('schema')} v{meta.get('schema_version')}, created {meta.get('created')} "
                   f"by phizoo {meta.get('phizoo_version')}"),
        ("records", f"{meta.get('num_records')} structures, {na.get('total')} atoms "
                    f"({na.get('min')}-{na.get('max')} per structure, mean {na.get('mean', 0):.1f})"),
        ("fields", ", ".join(meta.get("fields", []))),
        ("elements", ", ".join(f"{s} {c}" for s, c in st.get("element_counts", {}).items())),
        ("units", ", ".join(f"{k} {v}" for k, v in meta.get("units", {}).items())),
        ("theory", str(meta.get("level_of_theory"))),
        ("target", str(meta.get("target"))),
    ]
    for f in meta.get("source", {}).get("files", []):
        lines.append(("source", f"{f['path']} ({_size(f['size'])}) sha256 {f['sha256']}"))
    conv = meta.get("conversion", {})
    if meta.get("source_units"):
        lines.append(("converted", ", ".join(f"{k}: {v} x {conv.get(k, 1.0):.10g}"
                                           for k, v in meta["source_units"].items())))
    for w in meta.get("plausibility_warnings", []):
        lines.append(("WARNING", w))
    lines.append(("energy", _stat(st.get("energy", {}), "eV")))
    lines.append(("energy/atom", _stat(st.get("energy_per_atom", {}), "eV")))
    if "forces" in st:
        lines.append(("forces", f"rms {st['forces']['rms']:.4g} max |F| {st['forces']['max_abs']:.4g} eV/angstrom"))
    if "charges" in st:
        q = st["charges"]
        lines.append(("charges", f"mean {q['mean']:.3g} std {q['std']:.3g} min {q['min']:.3g} max {q['max']:.3g} e; "
                                 f"max |sum q - Q| {q['max_abs_net_minus_total_charge']:.2g} e"))
    sp = meta.get("splits", {})
    order = {"train": 0, "val": 1, "test": 2}
    sizes = ", ".join(f"{k} {v}" for k, v in sorted(sp.get("sizes", {}).items(),
                                                     key=lambda kv: (order.get(kv[0], 3), len(kv[0]), kv[0])))
    lines.append(("splits", f"{sizes} (seed {sp.get('seed')})"))
    lines.append(("", str(sp.get("policy", ""))))
    extra = sp.get("sizes_source") or sp.get("budget_source")
    if extra:
        lines.append(("", extra + (f"; budget {sp['budget']}" if "budget" in sp else "")))
    refs = meta.get("element_references")
    if refs:
        e = ", ".join(f"{chemical_symbols[int(z)]} {v:.6f}" for z, v in refs["energies"].items())
        lines.append(("references", f"fitted on {refs['fitted_on']} ({refs['num_structures']} structures): {e} eV"))
        res = refs.get("train_residual", {})
        if res:
            lines.append(("", f"train residual MAE {res['mae']:.4g} eV, RMSE {res['rmse']:.4g} eV"))
    else:
        lines.append(("references", meta.get("element_references_note", "none")))
    return "\n".join(f"{k:12s}{v}" for k, v in lines)
