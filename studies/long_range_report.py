"""The long-range study's report: tables and plots from the finished runs' ``eval.json``.

Writes ``studies/results/long_range.json`` (every run's test errors and NVE measures), ``studies/results/long_range.md``
(per task: test energy and force MAE of every variant, mean ± sample std over seeds; learning
curves; latent-charge agreement of the Coulomb variants) and the plots ``long_range_<task>.png``
(learning curves) and ``long_range_dimers_separation.png`` (dimer energy error against the closest
inter-monomer distance: where a short-range model stops seeing the partner); the NVE stability of
the cluster and periodic tasks from each run's ``nve.json``. The same tables go into the block
between the ``long-range-study`` markers of ``LEADERBOARD.md``, the verdict table into the README's.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from studies.ledger import LEDGER, read_json
from studies.long_range import BASELINE, RESULTS, TASKS, VARIANTS

RECORDS = LEDGER / "long_range"

ROOT = Path(__file__).resolve().parents[1]


def collect() -> list[dict]:
    """Every finished run's ``eval.json``, from the ledger."""
    return [read_json(p) for p in sorted(RECORDS.glob("*/*.json")) if not p.name.endswith(".nve.json")]


def _mean_std(values) -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return "–"
    return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if v.size > 1 else "")


def table(rows: list[dict], task: str) -> list[str]:
    """Largest training set: every (model, variant), seeds pooled."""
    sel = [r for r in rows if r["task"] == task]
    if not sel:
        return []
    n_full = max(r["n_train"] for r in sel)
    groups = defaultdict(list)
    for r in sel:
        if r["n_train"] == n_full:
            groups[(r["model"], r["variant"])].append(r)
    out = [f"Training set: {n_full} structures; test split of the data set; mean ± sample std over seeds.", "",
           "| model | variant | seeds | energy MAE (meV) | force MAE (meV/Å) | latent charges vs reference: MAE (e), r |",
           "|---|---|---:|---:|---:|---|"]
    for (model, variant), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], list(VARIANTS).index(kv[0][1]))):
        q = [r["charges"] for r in rs if r.get("charges")]
        qs = f"{np.mean([c['mae_e'] for c in q]):.3f}, {np.mean([c['pearson_r'] for c in q]):.2f}" if q else "–"
        out.append(f"| {model} | {variant} | {len(rs)} | {_mean_std(r['energy_mae_meV'] for r in rs)} | "
                   f"{_mean_std(r['forces_mae_meV_per_A'] for r in rs)} | {qs} |")
    if any("sign" in (r.get("charges") or {}) for r in sel):
        out += ["", "Every structure here is neutral, so the energy is even in the charges and cannot fix their "
                "global sign: the MAE is taken after aligning it (r keeps the sign the model chose)."]
    return out


def collect_nve() -> list[dict]:
    return [read_json(p) for p in sorted(RECORDS.glob("*/*.nve.json"))]


def nve_table(runs: list[dict], task: str) -> list[str]:
    sel = sorted((r for r in runs if r["task"] == task), key=lambda r: (r["model"], list(VARIANTS).index(r["variant"])))
    if not sel:
        return []
    r0 = sel[0]
    out = [f"NVE: velocity Verlet, {r0['timestep_fs']:g} fs, {r0['steps'] * r0['timestep_fs'] / 1000:g} ps, float64 "
           f"weights, from the first test frame ({r0['atoms']} atoms) with {r0['temperature_K']:.0f} K "
           "Maxwell–Boltzmann velocities; drift = slope of a line fitted to the total energy.", "",
           "| model | variant | status | drift (meV/ps) | largest excursion (meV) | mean T (K) | ms/step |",
           "|---|---|---|---:|---:|---:|---:|"]
    for r in sel:  # drift, excursion and temperature of a run that blew up mean nothing
        done = r["status"] == "completed"
        drift = f"{r['drift_meV_per_ps']:+.2f}" if done else "–"
        excursion = f"{r['max_abs_dE_meV']:.1f}" if done else "–"
        temperature = f"{r['mean_temperature_K']:.0f}" if done else "–"
        out.append(f"| {r['model']} | {r['variant']} | {r['status'].replace('|', '')} | {drift} | {excursion} | "
                   f"{temperature} | {r['ms_per_step']:.1f} |")
    return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(rows: list[dict], task: str) -> Path | None:
    sel = [r for r in rows if r["task"] == task and r["model"] == "painn" and r["seed"] == 0]
    if len({r["n_train"] for r in sel}) < 2:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i, variant in enumerate(VARIANTS):
        rs = sorted((r for r in sel if r["variant"] == variant), key=lambda r: r["n_train"])
        if not rs:
            continue
        n = [r["n_train"] for r in rs]
        axes[0].loglog(n, [r["energy_mae_meV"] for r in rs], "-o", color=f"C{i}", label=variant)
        if rs[0]["forces_mae_meV_per_A"] is not None:
            axes[1].loglog(n, [r["forces_mae_meV_per_A"] for r in rs], "-o", color=f"C{i}", label=variant)
    for ax, label in zip(axes, ("test energy MAE (meV)", "test force MAE (meV/Å)")):
        ax.set_xlabel("training structures")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: PaiNN, seed 0", fontsize=10)
    fig.tight_layout()
    path = RESULTS / f"long_range_{task}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def dimer_separation(rows: list[dict]) -> Path | None:
    """|energy error| against the closest inter-monomer distance, binned, PaiNN at the full size."""
    sel = [r for r in rows if r["task"] == "dimers" and r["model"] == "painn"]
    if not sel:
        return None
    n_full = max(r["n_train"] for r in sel)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    edges = np.geomspace(1.5, 16.0, 9)
    for i, variant in enumerate(VARIANTS):
        frames = [f for r in sel if r["variant"] == variant and r["n_train"] == n_full for f in r.get("frames", ())]
        if not frames:
            continue
        d = np.array([f["meta"]["min_distance_A"] for f in frames])
        e = np.abs([f["energy_error_meV"] for f in frames])
        k = np.digitize(d, edges)
        centres = [np.sqrt(edges[j - 1] * edges[j]) for j in range(1, len(edges)) if (k == j).any()]
        means = [e[k == j].mean() for j in range(1, len(edges)) if (k == j).any()]
        ax.loglog(centres, means, "-o", color=f"C{i}", label=variant)
    ax.axvline(5.0, color="k", lw=0.8, ls="--")
    ax.text(5.1, ax.get_ylim()[1] * 0.7, "cutoff", fontsize=8)
    ax.set_xlabel("closest inter-monomer distance d (Å)")
    ax.set_ylabel("mean |energy error| (meV)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Dimers, PaiNN, {n_full} training structures, test curves", fontsize=10)
    fig.tight_layout()
    path = RESULTS / "long_range_dimers_separation.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def verdicts(rows: list[dict]) -> list[str]:
    """README table: each head against its short-range base (``BASELINE``, default ``base``), PaiNN
    at the full training set.

    "wins"/"loses" when the mean MAE differs from the base's by more than the larger seed standard
    deviation and by more than 10 %; otherwise "ties"."""
    out = ["| task | variant | energy MAE vs base (meV) | force MAE vs base (meV/Å) | verdict |",
           "|---|---|---:|---:|---|"]
    for task in TASKS:
        sel = [r for r in rows if r["task"] == task and r["model"] == "painn"]
        if not sel:
            continue
        n_full = max(r["n_train"] for r in sel)
        by = {v: [r for r in sel if r["variant"] == v and r["n_train"] == n_full] for v in VARIANTS}
        for v in VARIANTS:
            base = BASELINE.get(v, "base")
            if v in ("base", *BASELINE.values()) or not by[v] or not by[base]:
                continue
            cells, calls = [], []
            for key in ("energy_mae_meV", "forces_mae_meV_per_A"):
                a = np.array([r[key] for r in by[base]], float)
                b = np.array([r[key] for r in by[v]], float)
                spread = max(a.std(ddof=1) if a.size > 1 else 0.0, b.std(ddof=1) if b.size > 1 else 0.0)
                diff = b.mean() - a.mean()
                cells.append(f"{b.mean():.1f} vs {a.mean():.1f}")
                calls.append("ties" if abs(diff) <= max(spread, 0.1 * a.mean()) else ("wins" if diff < 0 else "loses"))
            verdict = calls[0] if calls[0] == calls[1] else f"energy {calls[0]}, forces {calls[1]}"
            seeds = min(len(by[base]), len(by[v]))
            against = "" if base == "base" else f" against {base}"
            out.append(f"| {task} | {v} | {cells[0]} | {cells[1]} | {verdict} ({seeds} seed{'s' if seeds > 1 else ''}"
                       f"{against}) |")
    return out


BLOCK_START, BLOCK_END = "<!-- long-range-study:start -->", "<!-- long-range-study:end -->"


def replace_block(path: Path, lines: list[str]) -> bool:
    """Replace the block between the markers in ``path`` (README.md: the verdict table;
    LEADERBOARD.md: every table), written atomically; a file without both markers is left alone."""
    text = path.read_text()
    if BLOCK_START not in text or BLOCK_END not in text:
        return False
    head, rest = text.split(BLOCK_START, 1)
    tail = rest.split(BLOCK_END, 1)[1]
    tmp = path.with_suffix(".md.partial")
    tmp.write_text(head + BLOCK_START + "\n" + "\n".join(lines) + "\n" + BLOCK_END + tail)
    tmp.replace(path)
    return True


def leaderboard_dir(task: str) -> Path:
    return RESULTS / f"long_range_leaderboard-{task}"


def task_leaderboard(task: str) -> list[dict]:
    """``phizoo.eval.leaderboard`` (the code of ``phizoo leaderboard``) of the task's full-size
    seed-0 PaiNN runs on its test split: errors, inference time and peak memory of each head side by
    side (rows; also ``long_range_leaderboard-<task>/leaderboard.{md,csv,json,png}``)."""
    from phizoo.eval.leaderboard import leaderboard
    from phizoo.train.data import open_dataset, split_indices
    from studies.long_range import ledger_path, run_dir, variants_for

    if not TASKS[task].path.exists():  # data not made yet: no runs either
        return []
    done = [v for v in variants_for(task) if ledger_path(task, "painn", v, 1.0, 0).exists()]
    refs = [(v, run_dir(task, "painn", v, 1.0, 0) / "best") for v in done]
    if not refs:
        return []
    if not all(stem.with_suffix(".safetensors").exists() for _, stem in refs):
        # finished in an earlier checkout whose runs/ is gone: keep the committed board
        return read_json(leaderboard_dir(task) / "leaderboard.json") or []
    ds = open_dataset(TASKS[task].path)
    test = split_indices(ds, "test")
    return leaderboard([str(stem) for _, stem in refs], ds, indices=test, split="test",
                       names=[f"painn-{v}" for v, _ in refs], output_dir=leaderboard_dir(task), repeats=3,
                       title=f"{task}: PaiNN variants, {len(test)} test structures")


def sections(rows: list[dict], nves: list[dict], base: Path, level: int, boards: dict | None = None) -> list[str]:
    """Per task: the table, the leaderboard of ``boards`` (task -> rows), learning curves, NVE, the
    dimer plot; then the verdicts. Image links relative to ``base``; headings at ``level``."""
    from phizoo.eval.leaderboard import markdown_table

    h = "#" * level
    L = []
    for task in TASKS:
        lines = table(rows, task)
        if not lines:
            L += ["", f"{h} {task}", "", "No finished runs."]
            continue
        L += ["", f"{h} {task}", ""] + lines
        if (boards or {}).get(task):
            png = leaderboard_dir(task) / "leaderboard.png"
            L += ["", "Cost of each head (`phizoo.eval.leaderboard`, seed 0, one thread; timings as clean as the "
                  "machine was idle; the charge MAE here is against the raw latent charges, not sign-aligned):", "",
                  markdown_table(boards[task]).rstrip(),
                  "", f"![{task} leaderboard]({os.path.relpath(png, base)})"]
        curve = learning_curves(rows, task)
        if curve:
            L += ["", f"![{task} learning curves]({os.path.relpath(curve, base)})"]
        stability = nve_table(nves, task)
        if stability:
            L += [""] + stability
        if task == "dimers":
            sep = dimer_separation(rows)
            if sep:
                L += ["", f"![dimer error vs separation]({os.path.relpath(sep, base)})"]
    return L + ["", f"{h} Each head against the short-range base (PaiNN, full training set)", ""] + verdicts(rows)


def report(readme: Path = ROOT / "README.md", leaderboard: Path = ROOT / "LEADERBOARD.md",
           leaderboards: bool = True) -> Path:
    """Write long_range.{md,json} and the plots; refresh the blocks in ``readme`` and ``leaderboard``;
    ``leaderboards``: time every task's full-size seed-0 variants (``task_leaderboard``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = collect()
    nves = collect_nve()
    boards = {task: task_leaderboard(task) for task in TASKS} if leaderboards else {}
    intro = ("Every number below comes from `python studies/long_range.py report`, from the finished runs "
             f"recorded under `{os.path.relpath(RECORDS, ROOT)}/`. Variants: " + ", ".join(f"`{v}`" for v in VARIANTS) + ".")
    L = ["# When does long range help? (studies/long_range.py)", "", intro] + sections(rows, nves, RESULTS, 2, boards)
    if readme.exists():
        replace_block(readme, verdicts(rows))
    if leaderboard.exists():
        replace_block(leaderboard, ["## When does long range help? (studies/long_range.py)", "", intro]
                      + sections(rows, nves, leaderboard.parent, 3, boards))
    slim = [{k: v for k, v in r.items() if k != "frames"} for r in rows]
    nve_slim = [{k: v for k, v in r.items() if k != "_trace"} for r in nves]
    (RESULTS / "long_range.json").write_text(json.dumps({"runs": slim, "nve": nve_slim}, indent=1) + "\n")
    out = RESULTS / "long_range.md"
    out.write_text("\n".join(L) + "\n")
    print(f"wrote {out}")
    return out
