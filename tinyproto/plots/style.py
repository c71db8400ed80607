"""The project's figure style (applied in a context, never on import), colours, labels, saving."""

from __future__ import annotations

import contextlib
import functools
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


@contextlib.contextmanager
def style():
    """The project's figure style for the figures made inside the block (nothing global)."""
    with plt.rc_context(STYLE):
        yield


def use_style() -> None:
    """Apply the project's figure style to this session (notebooks call it once)."""
    plt.rcParams.update(STYLE)


def _styled(fn):
    """Run a plotting helper inside ``style()``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)

    return wrapper


class _Default(dict):
    """A mapping that answers for a name it lacks (an algorithm added by a user's extension):
    ``fallback(name)`` instead of a KeyError halfway through a notebook."""

    def __init__(self, fallback, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fallback = fallback

    def __missing__(self, key):
        return self._fallback(key)


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
    "fedavg": "#17becf",
    "fedtiny": "#393b79",
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
    "fedavg": "FedAvg",
    "fedtiny": "FedTiny",
}
COLORS = _Default(lambda name: "#444444", COLORS)  # an extension's algorithm: dark grey
LABELS = _Default(str, LABELS)  # ... and its registered name


@_styled
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


def _color(algorithm: str) -> str:
    return COLORS.get(algorithm, "0.3")


def _label(algorithm: str) -> str:
    return LABELS.get(algorithm, algorithm)
