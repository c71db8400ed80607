"""Ablation (Fig. 5), CPS vs a smaller layer (Fig. 6), grouped bars (Table 3)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tinyproto.plots.style import COLORS, LABELS, _color, _label, _styled  # noqa: F401


@_styled
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


@_styled
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


@_styled
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
