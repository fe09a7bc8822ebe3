"""``phizoo train`` and ``phizoo finetune``.

Both run unchanged under ``torchrun --nproc_per_node N -m phizoo.cli.main train ...``
(DDP; gloo on CPU, nccl on GPU; ``batch_size`` is the global batch).
"""
from __future__ import annotations

import json
from pathlib import Path


def _common(p) -> None:
    p.add_argument("--data", required=True, help="LMDB store written by phizoo.data (holds the splits)")
    p.add_argument("-o", "--output", help="run directory (checkpoints, trainer state, metrics.csv)")
    p.add_argument("--epochs", type=int, help="override epochs")
    p.add_argument("--batch-size", type=int, help="override batch_size (global, over all DDP ranks)")
    p.add_argument("--lr", type=float, help="override optimizer.lr")
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config entry, e.g. --set optimizer.lr=1e-3 --set loss.forces=10")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--resume", action="store_true", help="continue from <output>/trainer_state.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a training config on an LMDB store")
    p.add_argument("--config", required=True, help="training config, e.g. zoo_configs/painn-qm9.yaml")
    _common(p)
    p.set_defaults(func=run_train)

    f = sub.add_parser("finetune", help="fine-tune a checkpoint or pretrained model on an LMDB store")
    f.add_argument("--from", dest="source", required=True, help="checkpoint (path/stem) or pretrained id")
    f.add_argument("--config", help="optional training config for loss weights etc. (model section ignored)")
    f.add_argument("--freeze-backbone", action="store_true", help="train only the energy (and Φ) heads")
    f.add_argument("--refit-references", action="store_true",
                   help="refit per-element reference energies on the new training split")
    f.add_argument("--reset-head", action="store_true", help="re-initialise the energy head")
    f.add_argument("--charge-spin", action="store_true",
                   help="make a model trained on neutral data charge-aware (total charge + spin input) first")
    _common(f)
    f.set_defaults(func=run_finetune)


def _overrides(args) -> dict:
    from ..train.config import parse_override

    upd: dict = {}
    for item in args.set:
        o = parse_override(item)
        _deep_update(upd, o)
    flat = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "max_steps": args.max_steps}
    for k, v in flat.items():
        if v is not None:
            upd[k] = v
    if args.lr is not None:
        upd.setdefault("optimizer", {})["lr"] = args.lr
    if args.no_progress:
        upd["progress"] = False
    return upd


def _deep_update(a: dict, b: dict) -> None:
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _deep_update(a[k], v)
        else:
            a[k] = v


def _check_output(out: Path, resume: bool, device: str) -> None:
    """Before any work: the device exists, ``out`` is writable and holds no other run."""
    from ..train.state import STATE_FILE
    from .main import check_device, check_output_dir

    check_device(device)
    if (out / STATE_FILE).exists() and not resume:
        raise RuntimeError(f"{out} already holds a run ({STATE_FILE}); pass --resume to continue it "
                           "or choose another --output")
    check_output_dir(out)


def _print_summary(summary: dict, out: Path) -> None:
    val, test = summary.get("val", {}), summary.get("test")
    monitor, value = summary["monitor"], summary["best_value"]
    shown = f"{value:.6g}"
    if monitor.endswith(("_mae", "_rmse")) and "energy" in monitor:
        shown = f"{1000 * value:.4g} meV" + ("/atom" if "per_atom" in monitor else "")
    elif monitor.endswith(("_mae", "_rmse")) and "forces" in monitor:
        shown = f"{1000 * value:.4g} meV/Å"
    print(f"best epoch {summary['best_epoch']} ({monitor} = {shown}); checkpoint {out / 'best'}")
    for name, m in (("val", val), ("test", test)):
        if m:
            keys = [k for k in ("energy_mae_meV", "energy_mae_meV_per_atom", "forces_mae_meV_per_A") if k in m]
            print(f"  {name}: " + ", ".join(f"{k}={m[k]:.4g}" for k in keys))


def run_train(args) -> int:
    from ..train import train_from_config
    from ..train.config import load_config
    from ..train.data import describe_dataset, named_splits, open_dataset

    cfg = load_config(args.config, _overrides(args))
    out = Path(args.output or cfg["output"] or Path("runs") / Path(args.config).stem)
    cfg["output"] = str(out)
    _check_output(out, args.resume, args.device)
    dataset = open_dataset(args.data)
    info = describe_dataset(dataset, path=args.data, name=cfg["data"].get("dataset"))
    trainer, summary = train_from_config(cfg, dataset, named_splits(dataset, cfg["data"]), output_dir=out,
                                         resume=args.resume, device=args.device, dataset_info=info)
    if trainer.is_main:
        _print_summary(summary, out)
    _shutdown()
    return 0


def run_finetune(args) -> int:
    from ..eval.leaderboard import resolve_checkpoint
    from ..train.config import load_config, make_config
    from ..train.data import describe_dataset, named_splits, open_dataset
    from ..train.finetune import FINETUNE_DEFAULTS, finetune

    base = load_config(args.config) if args.config else make_config(FINETUNE_DEFAULTS)
    if args.config:
        base = make_config(base, {"model": {"name": None}})  # the model comes from --from
    cfg = make_config(base, _overrides(args))
    out = Path(args.output or cfg["output"] or Path("runs") / f"finetune-{Path(args.source).stem}")
    cfg["output"] = str(out)
    _check_output(out, args.resume, args.device)
    model = resolve_checkpoint(args.source)
    dataset = open_dataset(args.data)
    info = describe_dataset(dataset, path=args.data, name=cfg["data"].get("dataset"))
    tuned, summary = finetune(model, dataset, named_splits(dataset, cfg["data"]), config=cfg, output_dir=out,
                              device=args.device, resume=args.resume, freeze_backbone=args.freeze_backbone,
                              refit_references=args.refit_references, reset_head=args.reset_head,
                              charge_spin=args.charge_spin, dataset_info=info)
    if _rank() == 0:
        _print_summary(summary, out)
        print(json.dumps(summary["finetune"]))
    _shutdown()
    return 0


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
