"""``tinyproto comm-table``: paper Table 1's Comm column from the real partitions
(``scorecard.comm_table``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tinyproto.cli.flags import (
    Once,
    int_at_least,
    new_output,
    param_type,
)  # the same checks as `tinyproto run`'s
from tinyproto.config import ConfigError
from tinyproto.scorecard.comm_table import CLASS_COUNTS, PAPER_DATASETS, write_comm_table


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``comm-table`` subcommand to ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "comm-table", help="paper Table 1's Comm column from the real partitions (no images)"
    )
    p.add_argument(
        "--datasets",
        action=Once,
        default=None,
        help=f"comma list from {', '.join(CLASS_COUNTS)} "
        f"(default {','.join(PAPER_DATASETS)}, or none with --classes)",
    )
    p.add_argument(
        "--classes",
        action=Once,
        default=None,
        help="extra label vectors with these class counts, e.g. 10,100",
    )
    p.add_argument(
        "--per-class",
        action=Once,
        type=int_at_least("per_class", 1),
        default=600,
        help="samples per class for --classes (default 600)",
    )
    p.add_argument("--num-clients", action=Once, type=param_type("num_clients"), default=20)
    p.add_argument("--alpha", action=Once, type=param_type("alpha"), default=0.1)
    p.add_argument(
        "--seed",
        action=Once,
        type=param_type("partition_seed"),
        default=1,
        help="partition seed (HtFLlib: 1)",
    )
    p.add_argument(
        "--dim",
        action=Once,
        type=param_type("feature_dim"),
        default=500,
        help="prototype dimension d",
    )
    p.add_argument(
        "--cps-dim",
        action=Once,
        type=param_type("cps_dim"),
        default=50,
        help="TinyProto's CPS dim s",
    )
    p.add_argument(
        "--least-samples",
        action=Once,
        type=param_type("least_samples"),
        default=1,
        help="Dirichlet redraw rule (METHOD.md 1; HtFLlib 40: same partitions here)",
    )
    p.add_argument(
        "--out",
        action=Once,
        default=None,
        metavar="CSV",
        help="CSV to write. Default: results/table1_comm.csv for the paper's setting (the "
        "defaults), else results/comm-table/<the parameters given>.csv, so that no other "
        "setting overwrites the committed table",
    )
    return p


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 2 for v in values):
        raise ConfigError(f"invalid {name}={text!r}: a comma list of integers >= 2, e.g. 10,100")
    return values


DEFAULTS = dict(
    datasets=None,
    classes=None,
    per_class=600,
    num_clients=20,
    alpha=0.1,
    seed=1,
    dim=500,
    cps_dim=50,
    least_samples=1,
)


def default_out(args) -> Path:
    """results/table1_comm.csv for the paper's setting; for any other, a file named after the
    parameters that differ (the committed table is never overwritten by another setting)."""
    from tinyproto.store import results_root

    changed = [(k, getattr(args, k)) for k, v in DEFAULTS.items() if getattr(args, k) != v]
    if not changed:
        return results_root() / "table1_comm.csv"
    slug = "-".join(f"{k.replace('_', '')}{str(v).replace(',', '_')}" for k, v in changed)
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in slug)[:120]
    return results_root() / "comm-table" / f"comm-{slug}.csv"


def cmd(args) -> int:
    """``tinyproto comm-table``: write the CSV and print the table."""
    class_counts = {}
    if args.classes is not None:
        if args.per_class is None or args.per_class < 1:
            raise ConfigError(f"invalid per_class={args.per_class!r}: an integer >= 1")
        for K in _int_list(args.classes, "classes"):
            class_counts[f"K{K}x{args.per_class}"] = [args.per_class] * K
    if args.datasets is None:
        datasets = [] if class_counts else list(PAPER_DATASETS)
    else:
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        if not datasets and not class_counts:
            raise ConfigError(
                f"invalid datasets={args.datasets!r}: a comma list from {', '.join(CLASS_COUNTS)}"
            )
    if args.cps_dim is None or args.cps_dim == "auto" or args.cps_dim > args.dim:
        raise ConfigError(f"invalid cps_dim={args.cps_dim!r}: an integer in [1, dim={args.dim}]")
    out = new_output(args.out) if args.out else default_out(args)
    df = write_comm_table(
        out,
        datasets=datasets,
        num_clients=args.num_clients,
        alpha=args.alpha,
        seed=args.seed,
        dim=args.dim,
        cps_dim=args.cps_dim,
        least_samples=args.least_samples,
        class_counts=class_counts,
    )
    cols = ["dataset", "algorithm", "paper_M", "convention_M", "measured_M", "matches_paper"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        "U_full / U_train per dataset: "
        + ", ".join(
            f"{n} {g.U_full.iloc[0]}/{g.U_train.iloc[0]}"
            for n, g in df.groupby("dataset", sort=False)
        )
    )
    print(f"saved    {out}")
    return 0
