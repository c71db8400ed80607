"""How much two runs side by side gain over one at a time on this machine (issue 22's ceiling
for ``make reproduce``, whose sweeps compute two runs at once).

    .venv/bin/python results/bench/parallel_ceiling.py [--pairs 3] [--profile quick]

Per pair, interleaved: run A alone, run B alone, then A and B started together (two processes,
each one torch thread and no client workers, as a sweep worker computes a run). Each run is
``tinyproto run --profile P --algorithm fedproto --seed s --client-workers 1`` into a fresh
temporary folder. The ceiling is (A alone + B alone) / (A and B together): the speed-up two
cores give over one when nothing else differs. One CSV row per measurement,
``parallel_ceiling-<UTC time>.csv`` beside this file.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(profile: str, seed: int, out: str) -> list[str]:
    return [sys.executable, "-m", "tinyproto", "run", "--profile", profile, "--algorithm",
            "fedproto", "--seed", str(seed), "--client-workers", "1", "--no-progress",
            "--results", out]


def timed(cmds: list[list[str]]) -> float:
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"tinyproto run failed ({p.returncode}): {err[-1500:]}")
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--profile", default="quick")
    args = p.parse_args()
    rows = []
    for k in range(args.pairs):
        with tempfile.TemporaryDirectory() as tmp:
            def a(seed=100 + 2 * k, tmp=tmp):
                return command(args.profile, seed, f"{tmp}/{time.monotonic()}")

            def b(seed=101 + 2 * k, tmp=tmp):
                return command(args.profile, seed, f"{tmp}/{time.monotonic()}")

            load = os.getloadavg()[0]
            alone_a, alone_b = timed([a()]), timed([b()])
            both = timed([a(), b()])
        row = dict(pair=k, profile=args.profile, load_1min=round(load, 2),
                   a_alone_s=round(alone_a, 2), b_alone_s=round(alone_b, 2),
                   together_s=round(both, 2), ceiling=round((alone_a + alone_b) / both, 3))
        rows.append(row)
        print(row, flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path(__file__).with_name(f"parallel_ceiling-{stamp}.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"median ceiling {statistics.median(r['ceiling'] for r in rows):.2f}x; wrote {path}")


if __name__ == "__main__":
    main()
