"""``phizoo models``: the registry, with parameter counts per preset."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models (base and Φ-variant) with parameter counts")
    p.add_argument("--preset", action="append", help="presets to count parameters for (default: all)")
    p.add_argument("--pretrained", action="store_true", help="list shipped pretrained checkpoints instead")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pretrained import available_pretrained
    from ..registry import build_model, list_models, model_config

    if args.pretrained:
        entries = available_pretrained()
        if not entries:
            print("no pretrained checkpoints are shipped yet (pretrained/manifest.json is empty)")
        for e in entries:
            print(f"{e['id']:32s} model={e['model']:8s} phi={str(e['phi']).lower():5s} dataset={e['dataset']}"
                  f"{'  (default)' if e.get('default') else ''}")
        return 0
    print(f"{'model':8s} {'phi':5s} {'preset':8s} {'parameters':>12s}  reference")
    for name in list_models():
        cfg = model_config(name)
        presets = args.preset or list(cfg["presets"])
        for preset in presets:
            for phi in (False, True):
                n = build_model(name, phi=phi, preset=preset).num_parameters()
                print(f"{name:8s} {str(phi).lower():5s} {preset:8s} {n:12,d}  {cfg.get('reference', '')[:60]}")
    return 0
