"""Figure helpers the notebooks call. Every figure is saved as PNG and PDF under the profile's
figures folder (see tinyproto.sweep.outputs) and names the profile/dataset/seeds it came from.

Importing this module changes nothing global: every helper draws and saves inside
``style()`` (a ``matplotlib.rc_context`` with :data:`STYLE`); ``use_style()`` applies the same
style to the session, for figures a notebook draws itself.

May import: nothing of tinyproto outside this package (matplotlib only).
"""

from tinyproto.plots.ablation import plot_ablation, plot_cps_vs_dim, plot_grouped_bars
from tinyproto.plots.curves import comm_curves, plot_acc_vs_comm, plot_round_curves
from tinyproto.plots.prototypes import prototype_heatmaps
from tinyproto.plots.style import COLORS, LABELS, STYLE, save_figure, style, use_style

__all__ = [
    "COLORS",
    "LABELS",
    "STYLE",
    "comm_curves",
    "plot_ablation",
    "plot_acc_vs_comm",
    "plot_cps_vs_dim",
    "plot_grouped_bars",
    "plot_round_curves",
    "prototype_heatmaps",
    "save_figure",
    "style",
    "use_style",
]
