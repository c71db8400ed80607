"""The count-recovery attack (tinyproto.privacy) on the quick and hard profiles.

    .venv/bin/python results/privacy/measure.py    # writes results/privacy/count_attack.csv

For every method that sends class-wise vectors, seeds 0-2, the first ROUNDS rounds of the
profile's run (in this process), every upload the server receives is attacked; the CSV holds
one row per (profile, algorithm, seed, round, client) with the attack's TVD, the two guesses'
TVD and the Spearman rank correlation (tinyproto.privacy.judge). The table printed at the end is
the mean over clients and seeds at the last round attacked.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tinyproto import Config
from tinyproto.privacy import attack

ALGORITHMS = ("fedproto", "tinyproto-fp", "tinyproto-ft", "feddistill", "fedtgp")
PROFILES = ("quick", "hard")
SEEDS = (0, 1, 2)
ROUNDS = 3


def main() -> None:
    frames = []
    for profile in PROFILES:
        for algorithm in ALGORITHMS:
            for seed in SEEDS:
                cfg = Config(algorithm=algorithm, profile=profile, seed=seed, client_workers=1)
                df = attack(cfg, rounds=ROUNDS)
                df.insert(0, "profile", profile)
                df.insert(2, "seed", seed)
                df["run_id"] = cfg.run_id()
                frames.append(df)
                print(profile, algorithm, seed, flush=True)
    out = pd.concat(frames, ignore_index=True)
    path = Path(__file__).with_name("count_attack.csv")
    out.to_csv(path, index=False)
    last = out[out["round"] == ROUNDS]
    cols = ["tvd_attack", "tvd_presence", "tvd_blind", "spearman"]
    print(last.groupby(["profile", "algorithm"])[cols].mean().round(3).to_string())
    print(f"saved {path}")


if __name__ == "__main__":
    main()
