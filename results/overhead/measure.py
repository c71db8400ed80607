"""Client-side compute time of TinyProto-FP against FedProto ("no client-side computational
overhead", Abstract arXiv v1), measured with ``tinyproto.runtime.bench``.

    .venv/bin/python results/overhead/measure.py [--profiles quick hard] [--reps 5] [--replace]

For each profile and repetition r (seed r), the two algorithms are benched back to back, their
order alternating (ABBA...), in this process with one client worker: ``bench`` times 2 rounds
after 1 warm-up round, and right after each round the same models and batches in a bare PyTorch
loop. The client's time is the bench's "train" and "prototypes" components (every client's
local steps, prototype pass included). The scorecard judges the ratio of the two algorithms'
client seconds per repetition (measured back to back, which the scorecard's runs, sharing two
cores, are not); the bare loop's seconds are kept for reference (they run on every core, the
clients on one, so they are no normaliser on a loaded machine). One CSV row per (profile,
algorithm, repetition):
results/overhead/client_time.csv, which the scorecard's overhead row reads. An existing file is
never overwritten without --replace (a new file beside it is written instead).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from tinyproto import Config
from tinyproto.runtime.bench import bench

ALGORITHMS = ("fedproto", "tinyproto-fp")
OUT = Path(__file__).with_name("client_time.csv")


def measure(profile: str, reps: int) -> pd.DataFrame:
    rows = []
    for r in range(reps):
        order = ALGORITHMS if r % 2 == 0 else ALGORITHMS[::-1]
        for algorithm in order:
            cfg = Config(algorithm=algorithm, profile=profile, seed=r, client_workers=1)
            df = bench(cfg, rounds=2, warmup=1)
            part = df[df["arch"] == "all"].set_index("component")["seconds_per_round"]
            client = float(part["train"] + part["prototypes"])
            rows.append(
                dict(
                    profile=profile,
                    algorithm=algorithm,
                    rep=r,
                    seed=r,
                    config_id=cfg.run_id(),
                    client_seconds_per_round=client,
                    bare_seconds_per_round=float(part["bare"]),
                    client_over_bare=client / float(part["bare"]),
                    device=str(df["device"].iloc[0]),
                )
            )
            print(profile, r, algorithm, f"{client:.3f} s, bare {part['bare']:.3f} s", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profiles", nargs="+", default=["quick", "hard"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--replace", action="store_true", help=f"overwrite {OUT.name} if it exists")
    a = p.parse_args()
    if a.reps < 1:
        p.error(f"invalid --reps={a.reps}: at least 1 (the scorecard judges 3 or more)")
    from tinyproto.config.profiles import PROFILE_DEFAULTS

    bad = [x for x in a.profiles if x not in PROFILE_DEFAULTS]
    if bad:
        p.error(f"invalid --profiles {' '.join(bad)}: choose from {', '.join(PROFILE_DEFAULTS)}")
    out = pd.concat([measure(x, a.reps) for x in a.profiles], ignore_index=True)
    path = OUT
    if path.exists() and not a.replace:
        path = OUT.with_name(f"client_time-{time.strftime('%Y%m%dT%H%M%S')}.csv")
    out.to_csv(path, index=False)
    wide = out.pivot_table(index=["profile", "rep"], columns="algorithm", values="client_seconds_per_round")
    print((wide["tinyproto-fp"] / wide["fedproto"]).groupby("profile").describe().round(3))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
