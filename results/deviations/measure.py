"""The measured effect of the disclosed deviations from the reference code (docs/differences.md
quotes this script's tables; tests/test_docs.py checks the quotes against them).

1. Option switches, quick profile, seeds 0 and 1, each pair of runs differing in one option:
   --proto-pass train/eval (FedProto, TinyProto-FP), --lg-head-init own/shared (LG-FedAvg),
   --fml-weighting samples/uniform (FML). Missing runs are computed into results/runs/
   (finished ones are reused). -> switches.csv: last- and best-round accuracy (%) of both
   settings and the difference (the default minus the alternative), per seed.
2. FedKD's SVD codec: the floats it sends per round over what the dense mentee would cost
   (2 N x its parameters), for the committed FedKD runs of the quick and long profiles (the
   scorecard's FedKD arm: the profile's defaults, seeds 0-2).
   -> fedkd_svd.csv.

    .venv/bin/python results/deviations/measure.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tinyproto import Config
from tinyproto.store import runs_root, write_csv
from tinyproto.sweep import sweep

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1)
# (algorithm, option, the default, the alternative)
SWITCHES = (
    ("fedproto", "proto_pass", "train", "eval"),
    ("tinyproto-fp", "proto_pass", "train", "eval"),
    ("lg-fedavg", "lg_head_init", "shared", "own"),
    ("fml", "fml_weighting", "uniform", "samples"),
)


def switches() -> pd.DataFrame:
    configs = {
        (a, opt, value, seed): Config(a, profile="quick", seed=seed, **{opt: value})
        for a, opt, default, other in SWITCHES
        for value in (default, other)
        for seed in SEEDS
    }
    sweep(list(configs.values()), desc="deviation runs")
    root = runs_root("quick")
    rows = []
    for a, opt, default, other in SWITCHES:
        for seed in SEEDS:
            s = {
                v: json.loads((root / configs[(a, opt, v, seed)].run_id() / "summary.json").read_text())
                for v in (default, other)
            }
            rows.append(
                dict(
                    algorithm=a,
                    option=opt,
                    default=default,
                    alternative=other,
                    seed=seed,
                    profile="quick",
                    dataset="fmnist",
                    last_default=100 * s[default]["last_acc"],
                    last_alternative=100 * s[other]["last_acc"],
                    last_default_minus_alternative=100 * (s[default]["last_acc"] - s[other]["last_acc"]),
                    best_default=100 * s[default]["best_acc"],
                    best_alternative=100 * s[other]["best_acc"],
                    best_default_minus_alternative=100 * (s[default]["best_acc"] - s[other]["best_acc"]),
                    run_default=s[default]["run_id"],
                    run_alternative=s[other]["run_id"],
                )
            )
    return pd.DataFrame(rows).round(2)


def fedkd_svd() -> pd.DataFrame:
    from tinyproto.runtime.setup import setup

    rows = []
    for profile in ("quick", "long"):
        root = runs_root(profile)
        dense = None
        # the profile's own FedKD runs (the scorecard's arm), not other settings' runs
        wanted = {Config("fedkd", profile=profile, seed=seed).run_id() for seed in (0, 1, 2)}
        for folder in sorted(root.glob("fedkd-*")):
            if folder.name not in wanted or not (folder / "summary.json").is_file():
                continue
            s = json.loads((folder / "summary.json").read_text())
            if dense is None:  # the mentee's parameter count, from the run's own setup
                cfg = Config(**{**json.loads((folder / "config.json").read_text())})
                S = setup(cfg, clients=[])
                n_params = sum(math.prod(shape) for shape in S.algo.shapes.values())
                dense = 2 * cfg.num_clients * n_params
            rows.append(
                dict(
                    profile=profile,
                    seed=s["seed"],
                    run_id=s["run_id"],
                    floats_per_round=s["comm_floats_per_round"],
                    dense_floats_per_round=dense,
                    saved_percent=100 * (1 - s["comm_floats_per_round"] / dense),
                )
            )
    return pd.DataFrame(rows).round(3)


if __name__ == "__main__":
    a = switches()
    write_csv(HERE / "switches.csv", a)
    print(a.drop(columns=["run_default", "run_alternative"]).to_string(index=False))
    b = fedkd_svd()
    write_csv(HERE / "fedkd_svd.csv", b)
    print(b.to_string(index=False))
