"""Communication curves (Fig. 1, 4), accuracy vs communication and per round (Table 1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tinyproto.plots.style import COLORS, LABELS, _color, _label, _styled  # noqa: F401


@_styled
def comm_curves(
    curves: pd.DataFrame,
    x: str,
    measured: pd.DataFrame | None = None,
    *,
    ax: plt.Axes | None = None,
    title: str | None = None,
    logx: bool = False,
) -> plt.Figure:
    """Closed-form communication cost curves with measured points on top.

    ``curves``: tidy DataFrame with columns ``x``, ``curve`` (an algorithm key of COLORS, used
    for the colour), ``label`` and ``floats`` (floats per round, both directions, all clients);
    a ``style`` column ("-" or "--") is optional. ``measured``: DataFrame with ``x``,
    ``algorithm`` and ``measured_floats``; each algorithm gets its own marker and the legend
    says "measured". The y axis is logarithmic (millions of floats). Returns the figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    for (key, label), g in curves.groupby(["curve", "label"], sort=False):
        g = g.sort_values(x)
        style = g["style"].iloc[0] if "style" in g else "-"
        ax.plot(g[x], g["floats"] / 1e6, style, color=COLORS.get(key, "0.5"), lw=1.6, label=label)
    if measured is not None and len(measured):
        markers = "osD^vP*Xh"
        for i, (algo, g) in enumerate(measured.groupby("algorithm", sort=False)):
            ax.plot(
                g[x],
                g["measured_floats"] / 1e6,
                markers[i % len(markers)],
                ms=6,
                mfc="none" if i % 2 else COLORS.get(algo, "k"),
                mec=COLORS.get(algo, "k"),
                mew=1.3,
                ls="none",
                label=f"measured: {LABELS.get(algo, algo)}",
            )
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("floats per round, both directions (millions)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="best")
    return fig


# -- results notebooks (03 main results, 04 ablation, 05 CPS vs dim, 06 robustness) ----------


@_styled
def plot_acc_vs_comm(
    table,
    *,
    ax=None,
    acc: str = "best_acc",
    comm: str = "comm_M",
    title: str | None = None,
):
    """Table 1 as a picture: accuracy (mean with std error bars) against measured
    communication per round (log x), one marker per algorithm.

    ``table`` has one row per algorithm with columns ``algorithm``, ``<acc>_mean``,
    ``<acc>_std`` and ``<comm>``. Algorithms that communicate nothing (Local) cannot sit on a
    log axis: they are drawn as a dashed horizontal line. Returns the axes.
    """

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))
    for _, row in table.iterrows():
        a = row["algorithm"]
        y, err = row[f"{acc}_mean"], row[f"{acc}_std"]
        err = err if np.isfinite(err) else 0.0
        if not row[comm] > 0:
            ax.axhline(y, color=_color(a), ls="--", lw=1, label=f"{_label(a)} (no communication)")
            continue
        ax.errorbar(
            row[comm], y, yerr=err, fmt="o", ms=7, capsize=3, color=_color(a), label=_label(a)
        )
        ax.annotate(
            _label(a),
            (row[comm], y),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
            color=_color(a),
        )
    ax.set_xscale("log")
    ax.margins(x=0.12)  # room for the labels of the outermost markers
    unit = "millions of floats" if comm == "comm_M" else comm.replace("_", " ")
    ax.set_xlabel(f"communication per round ({unit}, measured; log scale)")
    ax.set_ylabel(f"{acc.replace('_', ' ')} (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return ax


@_styled
def plot_round_curves(
    curves, *, ax=None, value: str = "test_acc", title: str | None = None, percent: bool = True
):
    """Accuracy against round, one line per algorithm: the mean over seeds, with a band from
    the lowest to the highest seed where there are several.

    ``curves`` is long: columns ``algorithm``, ``seed``, ``round`` and ``value`` (one row per
    run and round, e.g. the runs' metrics.csv stacked). Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))
    scale = 100.0 if percent else 1.0
    data = curves.dropna(subset=[value])
    for a, g in data.groupby("algorithm", sort=False):
        stats = g.groupby("round")[value].agg(["mean", "min", "max"]) * scale
        ax.plot(
            stats.index,
            stats["mean"],
            color=_color(a),
            lw=1.4,
            label=_label(a),
            marker="o" if len(stats) < 6 else None,
            ms=3,
        )
        if g["seed"].nunique() > 1:
            ax.fill_between(
                stats.index, stats["min"], stats["max"], color=_color(a), alpha=0.15, lw=0
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(value.replace("_", " ") + (" (%)" if percent else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return ax
