"""Figures (PNG) drawn with matplotlib's Agg canvas directly: no global backend switch, no display."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _num(v: float) -> str:
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.3g}"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path, title: str) -> Path:
    """Title, layout and PNG of ``fig`` at ``path`` (folders created)."""
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _parity(ax, true: np.ndarray, pred: np.ndarray, label: str, unit: str, scale: float,
            groups: Sequence[tuple[str, np.ndarray]] | None = None, extra: str = "") -> None:
    """Predicted vs reference with the diagonal, MAE and RMSE (× ``scale``, in ``unit``) and ``extra``
    text lines. ``groups``: (legend label, boolean mask) pairs, one colour each (else one colour)."""
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    err = pred - true
    if groups:
        for name, mask in groups:
            ax.scatter(true[mask], pred[mask], s=6, alpha=0.6, edgecolors="none", label=name)
        ax.legend(fontsize=7, loc="lower right", markerscale=2.5, frameon=False)
    else:
        ax.scatter(true, pred, s=6, alpha=0.6, edgecolors="none")
    if true.size:
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        mae = float(np.abs(err).mean()) * scale
        rmse = float(np.sqrt((err ** 2).mean())) * scale
        ax.text(0.04, 0.96, f"MAE {_num(mae)}\nRMSE {_num(rmse)}" + (f"\n{extra}" if extra else ""),
                transform=ax.transAxes, va="top", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(f"{label} (errors in {unit})", fontsize=10)
    ax.set_aspect("equal", adjustable="box")


def parity_plot(predictions: dict, path: str | Path, title: str = "") -> Path:
    """Energy (per atom, element references removed) and force-component parity plots.

    ``predictions`` as returned by ``phizoo.eval.metrics.evaluate(..., return_predictions=True)``.
    """
    has_f = len(predictions.get("forces_true", [])) > 0
    fig = _figure(10 if has_f else 5.2, 4.8)
    axes = fig.subplots(1, 2 if has_f else 1, squeeze=False)[0]
    nat = np.maximum(predictions["natoms"], 1)
    ref = predictions["energy_ref"]
    _parity(axes[0], (predictions["energy_true"] - ref) / nat, (predictions["energy_pred"] - ref) / nat,
            "(E − ΣE_ref)/N [eV/atom]", "meV/atom", 1000.0)
    if has_f:
        _parity(axes[1], np.ravel(predictions["forces_true"]), np.ravel(predictions["forces_pred"]),
                "force component [eV/Å]", "meV/Å", 1000.0)
    return _save(fig, path, title)


def _r(v: float | None) -> str:
    return "r n/a" if v is None else f"r {v:.3f}"


def _with_training(title: str, training: str | None) -> str:
    if not training:
        return title
    return f"{title} ({training})" if title else training


def charge_parity_plot(predictions: dict, path: str | Path, title: str = "",
                       training: str | None = None) -> Path | None:
    """Parity plot of the Coulomb head's per-atom charges (e) against reference charges, one colour
    per element (legend: symbol, atom count, Pearson r), with MAE/RMSE (e) and the overall r.

    ``predictions`` from ``evaluate(..., return_predictions=True)``; ``training`` ("latent",
    "supervised", ...; :func:`phizoo.eval.metrics.charge_training`) is added to the title when known.
    Returns the PNG path, or ``None`` (nothing written) when there are no charges to compare.
    """
    from ase.data import chemical_symbols

    from .metrics import pearson_r

    pred = np.asarray(predictions.get("charges_pred", []), dtype=np.float64).reshape(-1)
    if pred.size == 0:
        return None
    true = np.asarray(predictions["charges_true"], dtype=np.float64).reshape(-1)
    z = np.asarray(predictions["charges_z"]).reshape(-1)
    groups = []
    for e in np.unique(z):
        m = z == e
        groups.append((f"{chemical_symbols[int(e)]} ({int(m.sum())}, {_r(pearson_r(pred[m], true[m]))})", m))
    fig = _figure(5.6, 5.2)
    ax = fig.subplots(1, 1)
    _parity(ax, true, pred, "charge [e]", "e", 1.0, groups=groups, extra=_r(pearson_r(pred, true)))
    return _save(fig, path, _with_training(title, f"{training} charges" if training else None))


def dipole_parity_plot(predictions: dict, path: str | Path, title: str = "",
                       training: str | None = None) -> Path | None:
    """Parity plot of the predicted dipoles (e·Å) against reference dipoles: the Cartesian components
    (x, y, z in three colours; vector references) next to |μ|, or |μ| alone for magnitude
    references (QM9). Returns the PNG path, or ``None`` (nothing written) without dipoles.
    """
    pred = np.asarray(predictions.get("dipole_pred", []), dtype=np.float64)
    if pred.size == 0:
        return None
    pred = pred.reshape(-1, 3)
    true = np.asarray(predictions["dipole_true"], dtype=np.float64).reshape(pred.shape[0], -1)
    vector = true.shape[1] == 3
    fig = _figure(10 if vector else 5.2, 4.8)
    axes = fig.subplots(1, 2 if vector else 1, squeeze=False)[0]
    if vector:
        comp = np.broadcast_to(np.arange(3), pred.shape).reshape(-1)
        _parity(axes[0], true.reshape(-1), pred.reshape(-1), "dipole component [e·Å]", "e·Å", 1.0,
                groups=[(c, comp == i) for i, c in enumerate("xyz")])
    norm_true = np.linalg.norm(true, axis=1) if vector else true[:, 0]
    _parity(axes[-1], norm_true, np.linalg.norm(pred, axis=1), "|μ| [e·Å]", "e·Å", 1.0)
    return _save(fig, path, _with_training(title, f"{training} charges" if training else None))


def leaderboard_chart(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Bar chart of energy MAE (meV) and, where available, force MAE (meV/Å) per model."""
    names = [r["model"] for r in rows]
    colors = ["tab:orange" if r.get("phi") else "tab:blue" for r in rows]
    panels = [("energy_mae_meV", "energy MAE [meV]")]
    if any(r.get("forces_mae_meV_per_A") is not None for r in rows):
        panels.append(("forces_mae_meV_per_A", "force MAE [meV/Å]"))
    fig = _figure(max(4.0, 1.2 * len(rows) + 2.0) * len(panels), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    x = np.arange(len(rows))
    for ax, (key, label) in zip(axes, panels):
        vals = [r.get(key) if r.get(key) is not None else np.nan for r in rows]
        bars = ax.bar(x, vals, color=colors)
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(_num(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        finite = [v for v in vals if np.isfinite(v)]
        if finite:
            ax.set_ylim(0, 1.12 * max(finite))
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color="tab:blue", label="base"), Patch(color="tab:orange", label="Φ")],
               fontsize=8, loc="upper right", ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
