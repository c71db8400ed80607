"""The time cost of TLS and SuperNode authentication in a local Flower deployment.

    .venv/bin/python results/bench/flower_tls.py [--pairs 3] [--rounds 3]

Runs ``python -m tinyproto.flower.deploy`` on the smoke profile (4 SuperNodes), secure (the
default: TLS, node authentication) and ``--insecure``, interleaved (secure, insecure, secure,
...), each into a fresh temporary results folder, and writes ``flower_tls-<time>.csv`` beside
this file: one row per run with the launcher's start-up, run and total seconds (as it prints
them), the server's round times summed, the best accuracy, the bytes Flower's Fleet API
counted, and the 1-minute load average before the run (the machine is shared). The ratio the
docs quote is computed from the CSV (median secure / median insecure).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from flower_speed import deployment  # noqa: E402  (the same timed, parsed deploy run)


def one(secure: bool, rounds: int) -> dict:
    row = deployment("smoke", rounds, () if secure else ("--insecure",))
    del row["kind"]
    return dict(mode="tls+auth" if secure else "insecure", **row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rows = []
    for k in range(args.pairs):
        for secure in (True, False):
            row = dict(pair=k, **one(secure, args.rounds))
            rows.append(row)
            print(row, flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(__file__).with_name(f"flower_tls-{stamp}.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    med = {}
    for mode in ("tls+auth", "insecure"):
        for key in ("startup_s", "run_s", "total_s"):
            vals = sorted(r[key] for r in rows if r["mode"] == mode)
            med[mode, key] = vals[len(vals) // 2]
    for key in ("startup_s", "run_s", "total_s"):
        print(f"{key}: median tls+auth {med['tls+auth', key]} s, insecure "
              f"{med['insecure', key]} s, ratio {med['tls+auth', key] / med['insecure', key]:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
