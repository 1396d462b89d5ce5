"""Plots for run reports (matplotlib, Agg canvas; no pyplot global state, no display needed).

Every function takes plain data (per-face NMEs, metrics.json entries, a log.csv path)
and writes one PNG atomically, so a report never links a half-written image.
"""
import csv
import math
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from keras_flm.report_md import new_file_mode
from runtime import metrics as M
from runtime.landmarks import REGIONS


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".plot.", suffix=".png", dir=d)
    os.close(fd)
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def plot_ced(curves: Mapping[str, Sequence[float]], path: str, threshold: float = M.DEFAULT_THRESHOLD,
             title: str = "Cumulative error distribution") -> str:
    """CED of several artifacts on one axis; the legend carries NME, FR and AUC of each."""
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for name, nmes in curves.items():
        n = np.asarray(nmes, np.float64)
        if n.size == 0:
            continue
        xs, ys = M.ced(n, threshold)
        label = "%s: NME %.2f%%, FR %.1f%%, AUC %.3f" % (
            name, 100 * n.mean(), 100 * M.failure_rate(n, threshold), M.auc(n, threshold))
        ax.plot(100 * xs, ys, label=label, lw=1.6)
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("NME (inter-ocular, %)")
    ax.set_ylabel("share of faces with NME <= x")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _grouped_bars(ax, groups: List[str], series: Mapping[str, List[Optional[float]]], ylabel: str) -> None:
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for k, (name, vals) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in vals]
        bars = ax.bar(x + (k - (n - 1) / 2) * width, heights, width, label=name)
        for b, v in zip(bars, vals):
            if v is not None and len(groups) * n <= 40:
                ax.annotate("%.1f" % v, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                            va="bottom", fontsize=6, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)


def plot_attributes(entries: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """NME (%) on the full set and on each WFLW subset, one bar per artifact."""
    subsets = list(M.subset_order())
    first = next(iter(entries.values()), {})
    labels = ["full\n(n=%s)" % first.get("count", "?")]
    for s in subsets:
        c = first.get("attributes", {}).get(s, {}).get("count")
        labels.append("%s\n(n=%s)" % (s, "?" if c is None else c))
    series = {}
    for name, e in entries.items():
        attrs = e.get("attributes", {})
        vals = [None if e.get("nme") is None else 100 * e["nme"]]
        vals += [None if attrs.get(s, {}).get("nme") is None else 100 * attrs[s]["nme"] for s in subsets]
        series[name] = vals
    fig = _figure(max(6.4, 1.2 * len(labels)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    _grouped_bars(ax, labels, series, "NME (%)")
    ax.set_title("NME per WFLW subset (empty subsets are left blank)")
    return _save(fig, path)


def plot_regions(entries: Mapping[str, Mapping[str, Any]], path: str) -> str:
    """NME (%) per face region, one bar per artifact."""
    regions = list(REGIONS)
    series = {name: [None if e.get("regions", {}).get(r) is None else 100 * e["regions"][r] for r in regions]
              for name, e in entries.items()}
    fig = _figure(max(6.4, 1.0 * len(regions)), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    _grouped_bars(ax, [r.replace("_", "\n") for r in regions], series, "NME (%)")
    ax.set_title("NME per face region")
    return _save(fig, path)


def read_log(path: str) -> Dict[str, List[float]]:
    """Numeric columns of a Keras CSVLogger-style log (non-numeric cells become NaN)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError("%s has no rows" % path)
    cols: Dict[str, List[float]] = {}
    for key in rows[0]:
        if key is None:
            continue
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(key, "")))
            except (TypeError, ValueError):
                vals.append(math.nan)
        if any(not math.isnan(v) for v in vals):
            cols[key] = vals
    return cols


def _panel_of(column: str) -> str:
    c = column.lower()
    if c in ("lr", "learning_rate") or c.endswith("_lr"):
        return "learning rate"
    if "loss" in c:
        return "loss"
    if "nme" in c or "acc" in c or "fr" == c.split("_")[-1] or "auc" in c:
        return "accuracy metrics"
    return "other"


def plot_training(log_csv: str, path: str) -> str:
    """Training curves from log.csv, whatever its columns: losses, metrics, LR, the rest."""
    cols = read_log(log_csv)
    xkey = "epoch" if "epoch" in cols else None
    x = cols.pop(xkey) if xkey else list(range(len(next(iter(cols.values())))))
    panels: Dict[str, List[str]] = {}
    for c in cols:
        panels.setdefault(_panel_of(c), []).append(c)
    order = [p for p in ("loss", "accuracy metrics", "learning rate", "other") if p in panels]
    fig = _figure(5.0 * len(order), 3.8)
    for i, p in enumerate(order):
        ax = fig.add_subplot(1, len(order), i + 1)
        for c in panels[p]:
            ax.plot(x, cols[c], marker="." if len(x) < 30 else None, label=c)
        vals = [v for c in panels[p] for v in cols[c] if v > 0 and not math.isnan(v)]
        if p in ("learning rate", "loss") and vals and max(vals) / min(vals) > 50:
            ax.set_yscale("log")
        ax.set_xlabel(xkey or "row")
        ax.set_title(p)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
