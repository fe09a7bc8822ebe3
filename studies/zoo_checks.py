"""The shipped zoo against issue 14's accuracy targets, on the test splits and on an independent
trajectory. Used by ``studies/report.py`` (``python studies/phi_vs_baseline.py report``).

* **Targets** (:data:`TARGETS`): the best QM9 model's energy MAE and the best MD22-xTB
  Ac-Ala3-NHMe model's force MAE on their test splits, each ≤ 30 (meV, meV/Å).
* **Independent trajectory** (:data:`studies.plan.INDEPENDENT`): a second GFN2-xTB Langevin run of
  the same molecule at 500 K with another seed (another RDKit conformer, velocities and thermostat
  noise), every frame in ``test`` (``phizoo data convert md22 --test-only``). Test frames of the
  training trajectory are correlated with its training frames; this trajectory is not.
"""
from __future__ import annotations

from studies.plan import DATASET_IDS, INDEPENDENT, checkpoint_id, plan, weights

# dataset -> (card metric, target, unit)
TARGETS = {"qm9": ("energy_mae_meV", 30.0, "meV"), "md22": ("forces_mae_meV_per_A", 30.0, "meV/Å")}


def independent_errors() -> list[dict]:
    """Energy and force MAE of every finished seed-0 MD22-xTB run on the independent trajectory."""
    import torch

    from phizoo.eval.metrics import evaluate
    from phizoo.pretrained import load_checkpoint
    from phizoo.train.data import open_dataset, split_indices

    if not INDEPENDENT["md22"].exists():
        return []
    torch.set_num_threads(1)
    ds = open_dataset(INDEPENDENT["md22"])
    idx = split_indices(ds, "test")
    rows = []
    for dataset, model, phi, seed in plan():
        stem = weights(dataset, model, phi, seed) if dataset == "md22" and seed == 0 else None
        if stem is None:
            continue
        net = load_checkpoint(stem).eval()
        m = evaluate(net, ds, idx)
        rows.append({"model": checkpoint_id(dataset, model, phi), "frames": len(idx),
                     "energy_mae_meV": m["energy_mae_meV"], "forces_mae_meV_per_A": m["forces_mae_meV_per_A"],
                     "test_split_forces_mae_meV_per_A": net.card["metrics"]["test"]["forces_mae_meV_per_A"]})
    return rows


def target_rows(runs: list[dict], independent: list[dict]) -> list[dict]:
    """Per dataset: the best seed-0 model on its test split against the target (and, for MD22,
    the same model on the independent trajectory)."""
    out = []
    for dataset, (key, target, unit) in TARGETS.items():
        cands = [r for r in runs if r["dataset"] == dataset and r["seed"] == 0 and r.get(key) is not None]
        if not cands:
            continue
        best = min(cands, key=lambda r: r[key])
        name = checkpoint_id(dataset, best["model"], best["phi"])
        row = {"dataset": dataset, "model": name, "metric": key, "unit": unit, "target": target, "test": best[key],
               "epochs": best["epochs"], "stopped": best.get("stopped"), "met": best[key] <= target}
        ind = next((r for r in independent if r["model"] == name), None)
        if ind is not None:
            row["independent"] = ind[key]
            row["met"] = row["met"] and ind[key] <= target
        out.append(row)
    return out


def markdown(targets: list[dict], independent: list[dict]) -> list[str]:
    L = []
    if targets:
        L += ["", "## Accuracy targets (issue 14)", "",
              "The best seed-0 model per dataset on its test split (and, for MD22-xTB, on an independent "
              "trajectory) against the target.", "",
              "| dataset | best model | metric | test | independent trajectory | target | epochs (stopped) | met |",
              "|---|---|---|---:|---:|---:|---|---|"]
        for t in targets:
            ind = f"{t['independent']:.1f}" if "independent" in t else "–"
            L.append(f"| {DATASET_IDS[t['dataset']]} | {t['model']} | {t['metric']} ({t['unit']}) | {t['test']:.1f} | "
                     f"{ind} | ≤ {t['target']:g} | {t['epochs']} ({t['stopped'] or '–'}) | "
                     f"{'yes' if t['met'] else '**no**'} |")
    if independent:
        L += ["", f"## MD22-xTB models on an independent trajectory ({independent[0]['frames']} frames)", "",
              "A second GFN2-xTB Langevin run of Ac-Ala3-NHMe at 500 K with seed 1 (another starting conformer, "
              "velocities and thermostat noise; `phizoo data convert md22 --test-only`). The test split of the "
              "training trajectory shares its trajectory with the training frames; this one does not.", "",
              "| model | energy MAE (meV) | force MAE (meV/Å) | force MAE on the test split (meV/Å) |",
              "|---|---:|---:|---:|"]
        for r in independent:
            L.append(f"| {r['model']} | {r['energy_mae_meV']:.1f} | {r['forces_mae_meV_per_A']:.1f} | "
                     f"{r['test_split_forces_mae_meV_per_A']:.1f} |")
    return L
