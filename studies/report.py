"""Report of the Φ-versus-baseline study: ``LEADERBOARD.md``, plots and ``studies/results/*.json``.

Reads the finished runs of :mod:`studies.phi_vs_baseline` and adds three measurements:

* **test errors**: the test metrics in each run's model card (best validation epoch, EMA
  weights), as mean ± sample std over seeds;
* **charges**: the Φ charges of each seed-0 Φ model against the reference charges stored in
  the data (QM9: Mulliken, B3LYP; MD22-xTB: GFN2-xTB), on the test split: Pearson r over all
  atoms, per element, and the MAE;
* **NVE**: 10 ps of velocity-Verlet MD (0.5 fs, float64 weights, ASE) with each MD22-xTB
  model from a test frame with 300 K Maxwell–Boltzmann velocities: total-energy drift (slope
  of a linear fit, meV/ps) and the largest excursion from the start. A model whose weights
  (sha256 in its card) and step count match an entry of the last ``study.json`` keeps that run.

The per-dataset leaderboards (accuracy, inference time, peak memory of the published seed-0
checkpoints) come from :func:`phizoo.eval.leaderboard.leaderboard`, the function behind
``phizoo leaderboard``.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from studies import zoo_checks
from studies.plan import DATA, DATASET_IDS, MODELS, RESULTS, ROOT, ZOO, card, checkpoint_id, plan, weights

NVE_STEPS = 20000          # 10 ps at 0.5 fs
NVE_TIMESTEP_FS = 0.5
NVE_TEMPERATURE_K = 300.0
NVE_RECORD_EVERY = 20
CHARGE_STRUCTURES = {"qm9": 2000, "md22": 500}
LEADERBOARD_STRUCTURES = {"qm9": 2000, "md22": 1000}  # first structures of the test split (timing, memory)
THEORY = {"qm9": "QM9: B3LYP/6-31G(2df,p) U0, Mulliken charges",
          "md22": "Ac-Ala3-NHMe, MD22-format, GFN2-xTB (tblite) energies/forces/charges at 500 K — "
                  "not the PBE+MBD of the real MD22"}
ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}


# ----------------------------------------------------------------------------- test errors

def collect_runs() -> list[dict]:
    rows = []
    for dataset, model, phi, seed in plan():
        final = card(dataset, model, phi, seed)
        if final is None:
            continue
        test = final["metrics"]["test"]
        rows.append({"dataset": dataset, "model": model, "phi": phi, "seed": seed,
                     "energy_mae_meV": test.get("energy_mae_meV"), "forces_mae_meV_per_A": test.get("forces_mae_meV_per_A"),
                     "epochs": final["training"]["epochs_completed"], "best_epoch": final["training"]["best_epoch"],
                     "stopped": final["training"].get("stopped"),
                     "train_time_s": final["training"]["time_s"], "parameters": final["num_parameters"]})
    return rows


def _stats(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for dataset in ("qm9", "md22"):
        for model in ZOO:
            entry = {"dataset": dataset, "model": model}
            for phi in (False, True):
                sel = [r for r in rows if r["dataset"] == dataset and r["model"] == model and r["phi"] == phi]
                tag = "phi" if phi else "base"
                entry[f"{tag}_energy"] = _stats([r["energy_mae_meV"] for r in sel])
                entry[f"{tag}_forces"] = _stats([r["forces_mae_meV_per_A"] for r in sel])
                entry[f"{tag}_seeds"] = [r["seed"] for r in sel]
                entry[f"{tag}_time_s"] = _stats([r["train_time_s"] for r in sel])["mean"]
            if entry["base_energy"]["n"] or entry["phi_energy"]["n"]:
                out.append(entry)
    return out


# ----------------------------------------------------------------------------- charges

def charge_agreement(dataset: str, model_name: str) -> dict | None:
    import torch

    from phizoo.pretrained import load_checkpoint
    from phizoo.train.data import chunk, collate, open_dataset, split_indices

    stem = weights(dataset, model_name, True, 0)
    if stem is None:
        return None
    torch.set_num_threads(1)
    model = load_checkpoint(stem).eval()
    ds = open_dataset(DATA[dataset])
    idx = split_indices(ds, "test")[:CHARGE_STRUCTURES[dataset]]
    pred, ref, z = [], [], []
    for b in chunk(idx, 64):
        batch = collate([ds[i] for i in b])
        with torch.no_grad():
            out = model(batch, compute_forces=False)
        pred.append(out["charges"].double().numpy())
        ref.append(batch.charges.double().numpy())
        z.append(batch.z.numpy())
    pred, ref, z = np.concatenate(pred), np.concatenate(ref), np.concatenate(z)
    res = {"dataset": dataset, "model": model_name, "structures": len(idx), "atoms": int(z.size),
           "pearson_r": float(np.corrcoef(pred, ref)[0, 1]), "mae_e": float(np.abs(pred - ref).mean()),
           "pred_std_e": float(pred.std()), "ref_std_e": float(ref.std()), "per_element": {}}
    for el in np.unique(z):
        m = z == el
        r = float(np.corrcoef(pred[m], ref[m])[0, 1]) if m.sum() > 2 and pred[m].std() > 0 else None
        res["per_element"][ELEMENTS.get(int(el), str(el))] = {
            "atoms": int(m.sum()), "pearson_r": r, "mae_e": float(np.abs(pred[m] - ref[m]).mean()),
            "pred_mean_e": float(pred[m].mean()), "ref_mean_e": float(ref[m].mean())}
    sample = np.random.default_rng(0).choice(z.size, size=min(z.size, 4000), replace=False)
    res["_scatter"] = {"pred": pred[sample].tolist(), "ref": ref[sample].tolist(), "z": z[sample].tolist()}
    return res


# ----------------------------------------------------------------------------- NVE

def nve(model_name: str, phi: bool, steps: int = NVE_STEPS) -> dict | None:
    """10 ps NVE of the seed-0 MD22-xTB run (:func:`phizoo.eval.nve_stability`) from the first test frame."""
    import torch
    from ase import Atoms

    from phizoo.eval import nve_stability
    from phizoo.pretrained import load_checkpoint
    from phizoo.train.data import open_dataset, split_indices

    stem = weights("md22", model_name, phi, 0)
    if stem is None:
        return None
    torch.set_num_threads(1)
    model = load_checkpoint(stem, dtype=torch.float64).eval()
    ds = open_dataset(DATA["md22"])
    frame = ds[split_indices(ds, "test")[0]]
    atoms = Atoms(numbers=frame.z.numpy(), positions=frame.pos.double().numpy())
    result = nve_stability(model, atoms, steps=steps, timestep_fs=NVE_TIMESTEP_FS, temperature_K=NVE_TEMPERATURE_K,
                           record_every=NVE_RECORD_EVERY)
    return {"model": model_name, "phi": phi, "weights_sha256": _weights_sha256(model_name, phi), **result}


def _nve_job(args):
    return nve(*args)


def _weights_sha256(model_name: str, phi: bool) -> str:
    return card("md22", model_name, phi, 0)["integrity"]["weights_sha256"]


def previous_nve(model_name: str, phi: bool, steps: int) -> dict | None:
    """The NVE result of the last report for exactly these weights (same sha256) and length, if any:
    10 ps of MD per model is the longest part of the report, and unchanged weights give the same run."""
    path = RESULTS / "study.json"
    if not path.exists() or card("md22", model_name, phi, 0) is None:
        return None
    sha = _weights_sha256(model_name, phi)
    for r in json.loads(path.read_text()).get("nve", []):
        if (r["model"], r["phi"], r.get("weights_sha256"), r.get("steps")) == (model_name, phi, sha, steps):
            return r
    return None


# ----------------------------------------------------------------------------- leaderboards

def leaderboards() -> dict[str, list[dict]]:
    from phizoo.eval.leaderboard import leaderboard
    from phizoo.train.data import open_dataset, split_indices

    boards = {}
    for dataset in ("qm9", "md22"):
        refs, names = [], []
        for _, model, phi, _ in [r for r in plan() if r[0] == dataset and r[3] == 0]:
            stem = weights(dataset, model, phi, 0)
            if stem is not None:
                refs.append(str(stem))
                names.append(checkpoint_id(dataset, model, phi))
        if refs:
            ds = open_dataset(DATA[dataset])
            idx = split_indices(ds, "test")[:LEADERBOARD_STRUCTURES[dataset]]
            boards[dataset] = leaderboard(refs, ds, indices=idx, split="test", names=names, repeats=3,
                                          output_dir=RESULTS / f"leaderboard-{dataset}",
                                          title=f"{DATASET_IDS[dataset]}: first {len(idx)} test structures")
    return boards


# ----------------------------------------------------------------------------- plots

def _save(fig, name: str) -> str:
    """Write ``fig`` to ``RESULTS/name`` and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def _plots(summary: list[dict], charges: list[dict], nves: list[dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    panels = [("qm9", "energy", "QM9 test energy MAE (meV)"), ("md22", "energy", "MD22-xTB test energy MAE (meV)"),
              ("md22", "forces", "MD22-xTB test force MAE (meV/Å)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rows = collect_runs()
    for ax, (dataset, what, title) in zip(axes, panels):
        entries = [e for e in summary if e["dataset"] == dataset]
        for j, e in enumerate(entries):
            for k, phi in enumerate((False, True)):
                s = e[f"{'phi' if phi else 'base'}_{what}"]
                if not s["n"]:
                    continue
                x = j + (0.2 if phi else -0.2)
                ax.bar(x, s["mean"], width=0.38, color="C1" if phi else "C0", yerr=s["std"] or 0, capsize=3,
                       label=("Φ" if phi else "base") if j == 0 else None)
                pts = [r[f"{what}_mae_meV" if what == "energy" else "forces_mae_meV_per_A"] for r in rows
                       if r["dataset"] == dataset and r["model"] == e["model"] and r["phi"] == phi]
                ax.plot([x] * len(pts), pts, "k.", ms=4)
        ax.set_xticks(range(len(entries)), [e["model"] for e in entries])
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    paths["errors"] = _save(fig, "study_errors.png")

    if charges:
        datasets = sorted({c["dataset"] for c in charges}, key=("qm9", "md22").index)
        fig, axes = plt.subplots(len(datasets), len(MODELS), figsize=(3.2 * len(MODELS), 3.2 * len(datasets)),
                                 squeeze=False)
        for ax in axes.ravel():
            ax.set_visible(False)
        for c in charges:
            ax = axes[datasets.index(c["dataset"]), MODELS.index(c["model"])]
            ax.set_visible(True)
            sc = c["_scatter"]
            for el in sorted(set(sc["z"])):
                m = np.asarray(sc["z"]) == el
                ax.plot(np.asarray(sc["ref"])[m], np.asarray(sc["pred"])[m], ".", ms=2, label=ELEMENTS.get(el, el))
            ax.set_title(f"{c['model']} Φ, {DATASET_IDS[c['dataset']]}\nr = {c['pearson_r']:.2f}", fontsize=9)
            ax.set_xlabel("reference charge (e)", fontsize=8)
            ax.set_ylabel("Φ charge (e)", fontsize=8)
            ax.legend(fontsize=6, markerscale=3)
        paths["charges"] = _save(fig, "study_charges.png")

    if nves:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for i, r in enumerate(nves):
            ax.plot(r["_trace"]["t_ps"], r["_trace"]["dE_meV"], color=f"C{i // 2}", ls="-" if r["phi"] else "--",
                    lw=1, label=f"{r['model']}{' Φ' if r['phi'] else ''}")
        ax.set_xlabel("time (ps)")
        ax.set_yscale("symlog", linthresh=10.0)  # meV-scale drift and eV-scale blow-ups on one axis
        ax.set_ylabel("E_total(t) − E_total(0) (meV, symlog)")
        ax.set_title("NVE, Ac-Ala3-NHMe, MD22-xTB models, 0.5 fs, float64", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        paths["nve"] = _save(fig, "study_nve.png")
    return paths


# ----------------------------------------------------------------------------- markdown

def _pm(s: dict, digits: int = 1) -> str:
    if not s["n"]:
        return "–"
    txt = f"{s['mean']:.{digits}f}"
    if s["std"] is not None:
        txt += f" ± {s['std']:.{digits}f}"
    return txt + f" (n={s['n']})"


def _delta(base: dict, phi: dict) -> str:
    if not base["n"] or not phi["n"]:
        return "–"
    d = 100.0 * (phi["mean"] - base["mean"]) / base["mean"]
    spread = max(base["std"] or 0.0, phi["std"] or 0.0)
    verdict = ""
    if base["n"] > 1 and phi["n"] > 1:
        verdict = " (within seed spread)" if abs(phi["mean"] - base["mean"]) <= spread else ""
    return f"{d:+.0f} %{verdict}"


def markdown(summary, charges, nves, boards, plots, hardware, checks=()) -> str:
    from phizoo.eval.leaderboard import markdown_table

    L = ["# phizoo leaderboard and the Φ-versus-baseline study", "",
         "Generated by `python studies/phi_vs_baseline.py report` (leaderboards: `phizoo.eval.leaderboard`, the "
         f"code behind `phizoo leaderboard`) on {time.strftime('%Y-%m-%d')}; {hardware}. Every number below "
         "comes from the committed scripts and configs; nothing is typed in by hand.", "",
         "Data and theory levels:", ""]
    L += [f"* **{DATASET_IDS[d]}**: {THEORY[d]}." for d in ("qm9", "md22")]
    L += ["", "Training: `zoo_configs/<model>-<dataset>.yaml`, `cpu` presets, one CPU thread per run, the same "
          "config, split and budget for base and Φ (only `model.phi` differs): the learning rate is halved on "
          "each validation plateau and training stops at the floor (`schedule.type: plateau`), within the "
          "epoch cap each config's header states (PaiNN: uncapped in practice; the slower backbones ~2 h of "
          "one thread). `painn-coulomb` is PaiNN with the Coulomb head, trained on energies, Mulliken charges "
          "and |μ| (no Φ variant). Small models on a 2-core machine: far from the paper's converged numbers.",
          "",
          "## Test errors, base vs Φ (mean ± sample std over seeds)", "",
          "| dataset | backbone | base energy MAE (meV) | Φ energy MAE (meV) | Φ vs base | base force MAE (meV/Å) "
          "| Φ force MAE (meV/Å) | Φ vs base (forces) | train time base / Φ (min) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for e in summary:
        forces = e["dataset"] == "md22"
        tb, tp = e["base_time_s"], e["phi_time_s"]
        L.append(f"| {DATASET_IDS[e['dataset']]} | {e['model']} | {_pm(e['base_energy'])} | {_pm(e['phi_energy'])} | "
                 f"{_delta(e['base_energy'], e['phi_energy'])} | "
                 f"{_pm(e['base_forces']) if forces else '–'} | {_pm(e['phi_forces']) if forces else '–'} | "
                 f"{_delta(e['base_forces'], e['phi_forces']) if forces else '–'} | "
                 f"{(tb or 0) / 60:.1f} / {(tp or 0) / 60:.1f} |")
    if "errors" in plots:
        L += ["", f"![test errors]({os.path.relpath(plots['errors'], ROOT)})"]
    L += list(checks)
    for dataset, rows in boards.items():
        L += ["", f"## Leaderboard: {DATASET_IDS[dataset]} (published seed-0 checkpoints, first "
                  f"{LEADERBOARD_STRUCTURES[dataset]:,} test structures)", "",
              markdown_table(rows),
              "Errors on this subset differ slightly from the full-test numbers above and in the model cards. "
              "Inference: energy (+ forces on MD22-xTB), median of timed passes, batches of 32, one thread. "
              "Memory: peak CPU tensor memory of a pass (torch profiler).", "",
              f"![leaderboard {dataset}]({os.path.relpath(RESULTS / f'leaderboard-{dataset}' / 'leaderboard.png', ROOT)})"]
    if charges:
        L += ["", "## Φ charges against reference charges (test split)", "",
              "The Φ charges are latent: no loss term ever sees a reference charge (tied ρ = Lφ, net charge "
              "constrained). Pearson r over all atoms and per element; MAE in e.", "",
              "| data | Φ model | atoms | r (all) | MAE (e) | " + " | ".join(f"r {el}" for el in ELEMENTS.values()) + " |",
              "|---|---|---:|---:|---:|" + "---:|" * len(ELEMENTS)]
        for c in charges:
            per = [c["per_element"].get(el, {}).get("pearson_r") for el in ELEMENTS.values()]
            L.append(f"| {DATASET_IDS[c['dataset']]} | {c['model']} | {c['atoms']:,} | {c['pearson_r']:+.2f} | "
                     f"{c['mae_e']:.3f} | " + " | ".join("–" if v is None else f"{v:+.2f}" for v in per) + " |")
        if "charges" in plots:
            L += ["", f"![charges]({os.path.relpath(plots['charges'], ROOT)})"]
    if nves:
        L += ["", "## NVE energy conservation (MD22-xTB models, Ac-Ala3-NHMe, 42 atoms)", "",
              f"Velocity Verlet, {NVE_TIMESTEP_FS} fs, {nves[0]['steps'] * NVE_TIMESTEP_FS / 1000:g} ps, float64 weights, "
              f"start: first test frame, {NVE_TEMPERATURE_K:.0f} K Maxwell–Boltzmann velocities (no net momentum "
              "or rotation). Drift: slope of a linear fit to E_total(t).", "",
              "| model | Φ | status | simulated (ps) | drift (meV/ps) | drift (meV/ps/atom) | max abs ΔE (meV) | "
              "mean T (K) | ms/step |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in nves:
            L.append(f"| {r['model']} | {'yes' if r['phi'] else 'no'} | {r['status']} | {r['simulated_ps']:.2f} | "
                     f"{r['drift_meV_per_ps']:+.3f} | {r['drift_meV_per_ps_per_atom']:+.4f} | "
                     f"{r['max_abs_dE_meV']:.2f} | {r['mean_temperature_K']:.0f} | {r['ms_per_step']:.1f} |")
        if "nve" in plots:
            L += ["", f"![NVE]({os.path.relpath(plots['nve'], ROOT)})"]
    return "\n".join(L) + "\n"


def long_range_block(leaderboard: Path) -> str:
    """The long-range study's block of ``leaderboard`` (written by ``studies/long_range.py report``),
    kept as it is; empty markers when there is none yet."""
    from studies.long_range_report import BLOCK_END, BLOCK_START

    text = leaderboard.read_text() if leaderboard.exists() else ""
    if BLOCK_START in text and BLOCK_END in text.split(BLOCK_START, 1)[1]:
        return "\n" + BLOCK_START + text.split(BLOCK_START, 1)[1].split(BLOCK_END, 1)[0] + BLOCK_END + "\n"
    return f"\n{BLOCK_START}\n(run `python studies/long_range.py report`)\n{BLOCK_END}\n"


def report(nve_models: tuple[str, ...] = MODELS, jobs: int = 2, nve_steps: int = NVE_STEPS,
           output: Path | None = None) -> Path:
    from phizoo.train.outputs import hardware

    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = collect_runs()
    summary = summarise(rows)
    jobs_charges = [(d, m) for d in ("qm9", "md22") for m in MODELS]
    reused, jobs_nve = [], []
    for job in [(m, phi, nve_steps) for m in nve_models for phi in (False, True)]:
        previous = previous_nve(*job)
        if previous:
            reused.append(previous)
        else:
            jobs_nve.append(job)
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_single_thread) as pool:
        charges = [c for c in pool.map(_charges_job, jobs_charges) if c]
        nves = reused + [r for r in pool.map(_nve_job, jobs_nve) if r]
    nves.sort(key=lambda r: (nve_models.index(r["model"]), r["phi"]))
    _single_thread()
    load = os.getloadavg()[0]  # the leaderboards' timings are only as clean as the machine is idle
    boards = leaderboards()
    independent = zoo_checks.independent_errors()
    targets = zoo_checks.target_rows(rows, independent)
    plots = _plots(summary, charges, nves)
    hw = hardware()
    hw_text = (f"{hw.get('cpu', 'CPU')}, {hw.get('cpu_count')} cores, torch {hw.get('torch')}; 1-minute load average "
               f"{load:.1f} when the leaderboards were timed")
    strip = lambda items: [{k: v for k, v in x.items() if k != "_scatter"} for x in items]  # noqa: E731
    (RESULTS / "study.json").write_text(json.dumps({"runs": rows, "summary": summary, "charges": strip(charges),
                                                    "nve": strip(nves), "independent": independent,
                                                    "targets": targets, "hardware": hw}, indent=2) + "\n")
    out = output or ROOT / "LEADERBOARD.md"
    checks = zoo_checks.markdown(targets, independent)
    out.write_text(markdown(summary, charges, nves, boards, plots, hw_text, checks) + long_range_block(out))
    print(f"wrote {out} and {RESULTS}/")
    return out


def _single_thread():
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _charges_job(args):
    return charge_agreement(*args)
