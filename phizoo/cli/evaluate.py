"""``phizoo eval`` (metrics + parity plots of one checkpoint) and ``phizoo leaderboard``."""
from __future__ import annotations

import json
import re
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="plain MAE/RMSE of a checkpoint on a split, with parity plots",
                       description="Plain MAE/RMSE of a checkpoint on a split (energy, forces) and parity "
                                   "plots. Models with a Coulomb head on data with reference charges / "
                                   "dipoles also get charge MAE/RMSE (e) and Pearson r (overall, per "
                                   "element), dipole MAE (e·Å, per component and of |μ|) and charge / "
                                   "dipole parity plots.")
    p.add_argument("checkpoint", help="checkpoint (path/stem) or pretrained id")
    p.add_argument("--data", required=True, help="LMDB store written by phizoo.data")
    p.add_argument("--split", default="test", help="stored split to evaluate (default: test)")
    p.add_argument("-o", "--output", default=".",
                   help="directory for <name>-<split>.json, -parity.png and (Coulomb head with reference "
                        "data) -charges.png, -dipole.png")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=run_eval)

    lb = sub.add_parser("leaderboard", help="evaluate several checkpoints on the same split: table, CSV, chart")
    lb.add_argument("--data", required=True, help="LMDB store written by phizoo.data")
    lb.add_argument("--models", nargs="+", required=True, help="checkpoints (paths/stems) or pretrained ids")
    lb.add_argument("--names", nargs="+", help="display names (same order as --models)")
    lb.add_argument("--split", default="test")
    lb.add_argument("--limit", type=int, help="only the first N structures of the split")
    lb.add_argument("-o", "--output", required=True, help="directory for leaderboard.{md,csv,json,png}")
    lb.add_argument("--batch-size", type=int, default=32)
    lb.add_argument("--device", default="cpu")
    lb.add_argument("--repeats", type=int, default=1, help="timed passes over the split per model")
    lb.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    lb.set_defaults(func=run_leaderboard)


def _positive(option: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{option} must be at least 1, got {value}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


CHARGE_ROWS = [("charge MAE", "charges_mae_e", "e"), ("charge RMSE", "charges_rmse_e", "e"),
               ("charge Pearson r", "charges_pearson_r", ""),
               ("dipole MAE (component)", "dipole_mae_eA", "e·Å"),
               ("dipole RMSE (component)", "dipole_rmse_eA", "e·Å"),
               ("|μ| MAE", "dipole_norm_mae_eA", "e·Å"), ("|μ| RMSE", "dipole_norm_rmse_eA", "e·Å")]


def _print_charges(metrics: dict, training: str | None) -> None:
    """The charge / dipole lines of ``phizoo eval`` (only those the metrics hold)."""
    if "charges_mae_e" in metrics or "n_dipoles" in metrics:
        print(f"  Coulomb head{f' ({training} charges)' if training else ''}:")
    for label, key, unit in CHARGE_ROWS:
        if key in metrics:
            v = metrics[key]
            print(f"  {label:22s} {'n/a' if v is None else f'{v:12.4f}':>12s} {unit}".rstrip())
    per = metrics.get("charges_per_element") or {}
    if per:
        cells = ", ".join(f"{s} {'n/a' if v['pearson_r'] is None else format(v['pearson_r'], '.3f')}"
                          for s, v in per.items())
        print(f"  {'charge r per element':22s} {cells}")


def run_eval(args) -> int:
    from ..eval.leaderboard import model_label, resolve_checkpoint
    from ..eval.metrics import charge_training, evaluate
    from ..eval.plots import charge_parity_plot, dipole_parity_plot, parity_plot
    from ..io import atomic_write
    from ..train.data import open_dataset, split_indices
    from .main import check_device, check_output_dir

    _positive("--batch-size", args.batch_size)
    check_device(args.device)
    check_output_dir(args.output)
    model = resolve_checkpoint(args.checkpoint, device=args.device)
    dataset = open_dataset(args.data)
    idx = split_indices(dataset, args.split)
    if not idx:
        raise ValueError(f"split {args.split!r} of {args.data} is empty")
    metrics, preds = evaluate(model, dataset, idx, batch_size=args.batch_size, device=args.device,
                              return_predictions=True)
    name = model_label(model, args.checkpoint)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{_safe(name)}-{args.split}"
    training = charge_training(model) if getattr(model, "coulomb", None) is not None else None
    report = {"checkpoint": str(args.checkpoint), "model": name, "split": args.split, "data": str(args.data),
              "spec": model.spec, **metrics}
    if training and ("charges_mae_e" in metrics or "n_dipoles" in metrics):
        report["charges_training"] = training
    atomic_write(stem.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    print(f"{name} on {args.split} ({metrics['n_structures']} structures):")
    rows = [("energy MAE", "energy_mae_meV", "meV"), ("energy RMSE", "energy_rmse_meV", "meV"),
            ("energy MAE per atom", "energy_mae_meV_per_atom", "meV/atom"),
            ("energy RMSE per atom", "energy_rmse_meV_per_atom", "meV/atom"),
            ("force MAE", "forces_mae_meV_per_A", "meV/Å"), ("force RMSE", "forces_rmse_meV_per_A", "meV/Å")]
    for label, key, unit in rows:
        if key in metrics:
            print(f"  {label:22s} {metrics[key]:12.4f} {unit}")
    _print_charges(metrics, training)
    print(f"metrics: {stem.with_suffix('.json')}")
    if not args.no_plot:
        title = f"{name} — {args.split}"
        png = parity_plot(preds, f"{stem}-parity.png", title=title)
        print(f"parity plot: {png}")
        for what, plot in (("charges", charge_parity_plot), ("dipole", dipole_parity_plot)):
            png = plot(preds, f"{stem}-{what}.png", title=title, training=training)
            if png is not None:  # None: the model or the data has no charges / dipoles
                print(f"{what} parity plot: {png}")
    return 0


def run_leaderboard(args) -> int:
    from ..eval.leaderboard import leaderboard, markdown_table
    from ..train.data import open_dataset, split_indices
    from .main import check_device, check_output_dir

    _positive("--batch-size", args.batch_size)
    _positive("--repeats", args.repeats)
    check_device(args.device)
    check_output_dir(args.output)
    if args.names and len(args.names) != len(args.models):
        raise ValueError(f"--names has {len(args.names)} entries for {len(args.models)} models")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    dataset = open_dataset(args.data)
    indices = split_indices(dataset, args.split)[:args.limit] if args.limit else None
    rows = leaderboard(args.models, dataset, indices=indices, split=args.split, batch_size=args.batch_size,
                       device=args.device, output_dir=args.output, names=args.names, repeats=args.repeats,
                       memory=not args.no_memory)
    print(markdown_table(rows), end="")
    print(f"written: {Path(args.output) / 'leaderboard.md'}, .csv, .json, .png")
    return 0
