"""``tinyproto bench``: time a few rounds of a config against a bare PyTorch loop
(``runtime.bench``); writes one CSV."""

from __future__ import annotations

import argparse

from tinyproto.cli.flags import (
    Once,
    UserError,
    add_config_flags,
    config_from_args,
    int_at_least,
    new_output,
)
from tinyproto.config import ConfigError
from tinyproto.runtime.bench import bench, default_path, summary_lines


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand (every ``run`` flag, plus the bench's own) and return it."""
    p = subparsers.add_parser(
        "bench",
        help="time a few rounds of a config against a bare PyTorch loop (writes one CSV)",
        description="Time a few rounds of the config the flags describe (the same flags as "
        "`tinyproto run`), split into train (per architecture), prototypes, messages, server, "
        "eval and overhead, against a bare PyTorch training loop over the same models and "
        "batches. Writes results/bench/<profile>-<run-id>-<device>-<UTC time>.csv (a new file each time); no run folder.",
    )
    add_config_flags(p)
    b = p.add_argument_group("bench")
    b.add_argument(
        "--bench-rounds",
        action=Once,
        type=int_at_least("bench_rounds", 1),
        default=2,
        metavar="N",
        help="timed rounds (2)",
    )
    b.add_argument(
        "--warmup",
        action=Once,
        type=int_at_least("warmup", 0),
        default=1,
        metavar="N",
        help="untimed rounds before them (1)",
    )
    b.add_argument(
        "--out", action=Once, default=None, metavar="CSV", help="CSV path (default above)"
    )
    return p


def cmd(args) -> int:
    from tinyproto import store

    if "checkpoint_every" in vars(args):  # given (the flag's default is suppressed)
        raise UserError(
            "invalid --checkpoint-every for bench: it times rounds and never writes "
            "checkpoints; leave the flag out"
        )
    cfg = config_from_args(args)
    explicit = new_output(args.out) if args.out else None  # checked before the timing
    if cfg.join_ratio < 1.0:
        raise ConfigError(
            f"invalid join_ratio={cfg.join_ratio:g} for bench: it times whole rounds against a "
            "bare loop over every client; bench with --join-ratio 1"
        )
    if cfg.drop_rate > 0:
        raise ConfigError(
            f"invalid drop_rate={cfg.drop_rate:g} for bench: it times whole rounds of every "
            "client against a bare loop, and a lost upload is not a round's work; bench with "
            "--drop-rate 0"
        )
    df = bench(cfg, rounds=args.bench_rounds, warmup=args.warmup)
    workers = int(df.client_workers.iloc[0])
    out = explicit or default_path(cfg, str(df.device.iloc[0]), None, workers)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_csv(out, df)
    for line in summary_lines(df):
        print(line)
    print(f"saved    {out}")
    return 0
