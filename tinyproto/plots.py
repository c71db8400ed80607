"""Figure helpers the notebooks call. Every figure is saved as PNG and PDF under the profile's
figures folder (see tinyproto.sweep.outputs) and names the profile/dataset/seeds it came from."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
}
plt.rcParams.update(STYLE)

# One colour per algorithm, shared by every figure.
COLORS = {
    "local": "#7f7f7f",
    "fedproto": "#1f77b4",
    "fedtgp": "#2ca02c",
    "tinyproto-fp": "#ff7f0e",
    "tinyproto-ft": "#d62728",
    "feddistill": "#9467bd",
    "lg-fedavg": "#8c564b",
    "fml": "#e377c2",
    "fedkd": "#bcbd22",
}
LABELS = {
    "local": "Local",
    "fedproto": "FedProto",
    "fedtgp": "FedTGP",
    "tinyproto-fp": "TinyProto-FP",
    "tinyproto-ft": "TinyProto-FT",
    "feddistill": "FedDistill",
    "lg-fedavg": "LG-FedAvg",
    "fml": "FML",
    "fedkd": "FedKD",
}


def save_figure(fig, name: str, figures_dir: str | Path, caption: str | None = None) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` and ``.pdf`` (deterministic metadata).

    ``caption`` (e.g. tinyproto.sweep.provenance(df)) is written under the axes.
    """
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, color="0.35")
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.14))
    paths = [figures_dir / f"{name}.png", figures_dir / f"{name}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None}, bbox_inches="tight")
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None}, bbox_inches="tight")
    return paths


# -- prototype heatmaps (Fig. 2, Appendix A) and communication curves (Fig. 1, Fig. 4) ---------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def prototype_heatmaps(
    panels: list[tuple[str, np.ndarray, np.ndarray | None]],
    *,
    binary_only: bool = False,
    row_height: float = 2.2,
    width: float = 11.0,
) -> plt.Figure:
    """Heatmaps of one class's prototypes: a row of panels per entry of ``panels``.

    Each entry is ``(title, local, global_)`` with ``local`` [N, d] (the local prototypes of
    every client; all-zero rows for clients without the class) and ``global_`` [d] or None.
    The left panel shows the original values, each row divided by its own maximum (local and
    global prototypes live on different scales, e.g. under APS), the right panel the binary
    form (1 where the value is > 0). Zeros are left blank, as in the paper's Fig. 2, so dead
    units and masked-out dimensions show as white. Rows are labelled L1..LN and G.
    Returns the figure.
    """
    from matplotlib.colors import ListedColormap

    ncols = 1 if binary_only else 2
    fig, axes = plt.subplots(
        len(panels), ncols, figsize=(width, row_height * len(panels)), squeeze=False
    )
    cmap_val = plt.get_cmap("viridis").copy()
    cmap_val.set_bad("white")
    cmap_bin = ListedColormap(["#1f4e79"])
    cmap_bin.set_bad("white")
    for r, (title, local, glob) in enumerate(panels):
        local = np.asarray(local, dtype=np.float64)
        rows = [local] if glob is None else [local, np.asarray(glob, dtype=np.float64)[None]]
        M = np.concatenate(rows, axis=0)
        n, d = M.shape
        labels = [f"L{i + 1}" for i in range(local.shape[0])] + ([] if glob is None else ["G"])
        peak = np.abs(M).max(axis=1, keepdims=True)
        norm = np.divide(M, peak, out=np.zeros_like(M), where=peak > 0)
        kinds = [("binary (> 0)", np.where(M > 0, 1.0, np.nan), cmap_bin, 0, 1)]
        if not binary_only:
            kinds.insert(
                0, ("original (row / row max)", np.where(M != 0, norm, np.nan), cmap_val, 0, 1)
            )
        for c, (kind, img, cmap, lo, hi) in enumerate(kinds):
            ax = axes[r, c]
            im = ax.imshow(
                np.ma.masked_invalid(img),
                aspect="auto",
                interpolation="nearest",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
            )
            ax.grid(False)
            step = max(1, n // 10)
            ticks = sorted(set(range(0, n - (glob is not None), step)) | {n - 1})
            ax.set_yticks(ticks)
            ax.set_yticklabels([labels[t] for t in ticks], fontsize=6)
            if glob is not None:
                ax.axhline(n - 1.5, color="0.2", lw=0.8)
            ax.set_xlabel(f"prototype dimension (d = {d})")
            ax.set_title(f"{title}: {kind}", fontsize=8.5)
            if kind.startswith("original"):
                fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    fig.tight_layout()
    return fig


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


def _color(algorithm: str) -> str:
    return COLORS.get(algorithm, "0.3")


def _label(algorithm: str) -> str:
    return LABELS.get(algorithm, algorithm)


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
    import numpy as np

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


def plot_ablation(
    table,
    *,
    feature_dim: int,
    acc: str = "best_acc",
    bases: tuple[str, ...] = ("fedproto", "fedtgp"),
    tiny: dict[str, str] | None = None,
):
    """Fig. 5: accuracy against CPS dim, scaling on (solid) and off (dashed), one panel per
    base protocol; the base itself (no CPS, no scaling) is a dotted horizontal line and the
    no-CPS-with-scaling cell a hollow marker at x = feature_dim, labelled "no CPS".

    ``table`` has columns ``base``, ``cps_dim`` (an int, or NaN for no CPS), ``scaling``
    (bool), ``<acc>_mean`` and ``<acc>_std``. Returns the figure.
    """
    import pandas as pd

    tiny = tiny or {"fedproto": "tinyproto-fp", "fedtgp": "tinyproto-ft"}
    fig, axes = plt.subplots(1, len(bases), figsize=(4.4 * len(bases), 3.8), squeeze=False)
    for ax, base in zip(axes[0], bases):
        t = table[table["base"] == base]
        color = _color(tiny[base])
        no_cps = pd.isna(t["cps_dim"])
        for scaling, ls in ((True, "-"), (False, "--")):
            s = t[(t["scaling"] == scaling) & ~no_cps].sort_values("cps_dim")
            name = f"{_label(tiny[base])}, scaling {'on' if scaling else 'off'}"
            if len(s):
                ax.errorbar(
                    s["cps_dim"].astype(float),
                    s[f"{acc}_mean"],
                    yerr=s[f"{acc}_std"].fillna(0.0),
                    ls=ls,
                    marker="o" if scaling else "s",
                    ms=5,
                    capsize=3,
                    color=color,
                    alpha=1.0 if scaling else 0.6,
                    label=name,
                )
            full = t[(t["scaling"] == scaling) & no_cps]
            if len(full) and scaling:
                ax.errorbar(
                    [feature_dim],
                    full[f"{acc}_mean"],
                    yerr=full[f"{acc}_std"].fillna(0.0).to_numpy(),
                    marker="o",
                    ms=7,
                    mfc="white",
                    color=color,
                    capsize=3,
                    ls="none",
                    label=f"{_label(tiny[base])}, no CPS, scaling on",
                )
            elif len(full):
                ax.axhline(
                    float(full[f"{acc}_mean"].iloc[0]),
                    color=_color(base),
                    ls=":",
                    lw=1.8,
                    label=f"{_label(base)} (no CPS, no scaling)",
                )
        dims = sorted({int(v) for v in t["cps_dim"].dropna()} | {feature_dim})
        ax.set_xticks(dims)
        ax.set_xticklabels([f"{v}\n(no CPS)" if v == feature_dim else str(v) for v in dims])
        ax.set_ylabel(f"{acc.replace('_', ' ')} (%)")
        ax.set_xlabel(f"CPS dim s (prototype dim d = {feature_dim})")
        ax.set_title(f"{_label(tiny[base])} vs {_label(base)}")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_cps_vs_dim(
    table,
    *,
    acc: str = "best_acc",
    algorithms: tuple[str, ...] = ("tinyproto-fp", "tinyproto-ft"),
    full_dim: int | None = None,
):
    """Fig. 6: at equal communication, CPS keeping s of a full decision layer's dimensions
    against a model whose decision layer is only s wide; one panel per algorithm.

    ``table`` has columns ``algorithm``, ``arm`` ("cps" or "small_d"), ``s`` and
    ``<acc>_mean`` / ``<acc>_std``. Returns the figure.
    """
    fig, axes = plt.subplots(
        1, len(algorithms), figsize=(4.4 * len(algorithms), 3.8), squeeze=False
    )
    full = f"d = {full_dim}" if full_dim else "the full d"
    styles = {
        "cps": ("-", "o", f"CPS: s of {full} shared"),
        "small_d": ("--", "s", "decision layer d = s (no CPS)"),
    }
    for ax, a in zip(axes[0], algorithms):
        t = table[table["algorithm"] == a]
        for arm, (ls, marker, name) in styles.items():
            s = t[t["arm"] == arm].sort_values("s")
            if not len(s):
                continue
            ax.errorbar(
                s["s"],
                s[f"{acc}_mean"],
                yerr=s[f"{acc}_std"].fillna(0.0),
                ls=ls,
                marker=marker,
                ms=5,
                capsize=3,
                color=_color(a),
                alpha=1.0 if arm == "cps" else 0.6,
                label=name,
            )
        ticks = sorted({int(v) for v in t["s"]})
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(v) for v in ticks])
        ax.minorticks_off()
        ax.set_xlabel("s (CPS dim, or width of the small layer)")
        ax.set_ylabel(f"{acc.replace('_', ' ')} (%)")
        ax.set_title(f"{_label(a)} (scaling on in both)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_grouped_bars(
    table,
    *,
    group: str = "setting",
    hue: str = "algorithm",
    value: str = "best_acc",
    ax=None,
    title: str | None = None,
):
    """Grouped bars (Table 3): one group per ``group`` value, one bar per ``hue`` value,
    height ``<value>_mean`` with ``<value>_std`` error bars, both in the table's order.
    Returns the axes."""
    import numpy as np

    groups = list(dict.fromkeys(table[group]))
    hues = list(dict.fromkeys(table[hue]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(groups) * len(hues) + 2), 4.0))
    width = 0.8 / max(len(hues), 1)
    x = np.arange(len(groups))
    has_std = table[f"{value}_std"].notna().any()
    for i, h in enumerate(hues):
        t = table[table[hue] == h].set_index(group).reindex(groups)
        ax.bar(
            x + (i - (len(hues) - 1) / 2) * width,
            t[f"{value}_mean"],
            width,
            yerr=t[f"{value}_std"].fillna(0.0) if has_std else None,
            capsize=2,
            color=_color(h),
            label=_label(h),
            error_kw={"lw": 0.8},
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(f"{value.replace('_', ' ')} (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return ax
