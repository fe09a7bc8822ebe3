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
        from ..pretrained import manifest_path, read_card

        entries = available_pretrained()
        if not entries:
            print("no pretrained checkpoints are shipped (pretrained/manifest.json is empty)")
            return 0
        print(f"{'id':30s} {'model':7s} {'phi':5s} {'coulomb':7s} {'dataset':17s} {'test E MAE':>12s} "
              f"{'test F MAE':>13s}  theory")
        for e in entries:
            card = read_card(manifest_path().parent / e["card"])
            test = card.get("metrics", {}).get("test", {})
            fmae = test.get("forces_mae_meV_per_A")
            print(f"{e['id']:30s} {e['model']:7s} {str(e['phi']).lower():5s} "
                  f"{str(e.get('coulomb', False)).lower():7s} {e['dataset']:17s} "
                  f"{test.get('energy_mae_meV', float('nan')):8.1f} meV "
                  f"{'–' if fmae is None else f'{fmae:.1f}':>7s} meV/Å  "
                  f"{card.get('dataset', {}).get('level_of_theory', '?')}{'  (default)' if e.get('default') else ''}"
                  f"{'  STALE: retrain' if e.get('stale') else ''}")
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
