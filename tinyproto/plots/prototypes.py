"""Heatmaps of local and global prototypes (dead units, Fig. 2; masks, App. A)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from tinyproto.plots.style import COLORS, LABELS, _color, _label, _styled  # noqa: F401


@_styled
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
