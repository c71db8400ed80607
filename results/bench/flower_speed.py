"""A local Flower deployment against the in-process engine, interleaved in one sitting.

    .venv/bin/python results/bench/flower_speed.py [--pairs 3] [--settings smoke,quick1] \
        [--serverapps warm,subprocess]

Issue 22's Flower targets: a smoke run (3 rounds, 4 SuperNodes) within 3x the in-process wall
time after start-up, and a quick round (20 SuperNodes) within 2x. For each setting and pair,
in this order: ``tinyproto run`` of the config (in-process, a fresh process, as a user runs it;
its wall time includes Python's start, imports and the data) and ``python -m
tinyproto.flower.deploy`` of the same config (the default: TLS, node authentication, one
long-lived ClientApp process per SuperNode) once per ``--serverapps`` entry (``warm``: the
default, a ServerApp process started with the federation; ``subprocess``: Flower's own,
started when the run is submitted), each into a fresh temporary results folder. One
CSV row per run, written to ``flower_speed-<UTC time>.csv`` beside this file: the wall
seconds, for the deployment the launcher's start-up / run / total seconds (as it prints them)
and the server's round times summed, the best accuracy (the two must agree), and the 1-minute
load average before the run (the machine is shared). The summary printed at the end is the
ratio of medians: deployment *run* (from ``flwr run`` to the end, after start-up) / in-process
wall, per setting and ServerApp.

    smoke    profile smoke (4 clients, 3 rounds)
    quick1   profile quick, rounds=1 (20 clients)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {"smoke": ("smoke", None), "quick1": ("quick", 1)}
DONE = re.compile(
    r"completed in (\d+) s \(start-up (\d+) s, run (\d+) s\): best acc ([0-9.]+)"
    r"(?:.*counted (\d+) bytes in all)?"
)
ROUND = re.compile(r"round \d+/\d+: (?:acc [0-9.]+, )?([0-9.]+) s,")
ACC = re.compile(r"accuracy best ([0-9.]+)")


def in_process(profile: str, rounds: int | None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "tinyproto", "run", "--profile", profile, "--no-progress"]
        cmd += ["--results", out] + (["--rounds", str(rounds)] if rounds else [])
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
    m = ACC.search(p.stdout)
    if p.returncode != 0 or not m:
        raise SystemExit(f"tinyproto run failed ({p.returncode}): {(p.stdout + p.stderr)[-1500:]}")
    return dict(kind="in-process", load_1min=round(load, 2), wall_s=round(wall, 2),
                best_acc=float(m.group(1)))


def deployment(profile: str, rounds: int | None, flags: tuple[str, ...] = (),
               serverapp: str | None = None) -> dict:
    """One ``python -m tinyproto.flower.deploy [flags]`` run of the config, timed and parsed
    (also ``flower_tls.py``'s, with ``--insecure``)."""
    with tempfile.TemporaryDirectory() as out:
        rc = f"profile='{profile}' results-dir='{out}'" + (f" rounds={rounds}" if rounds else "")
        cmd = [sys.executable, "-m", "tinyproto.flower.deploy", *flags, "--run-config", rc]
        cmd += ["--serverapp", serverapp] if serverapp else []
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        record = sorted(Path(out).glob("*/flower.json"))  # the launcher's own seconds, unrounded
        exact = json.loads(record[0].read_text()) if record else {}
    lines = p.stdout.splitlines()
    done = [m for m in map(DONE.search, lines) if m]
    if p.returncode != 0 or not done:
        raise SystemExit(f"deploy failed ({p.returncode}): {(p.stdout + p.stderr)[-1500:]}")
    m = done[-1]
    return dict(
        kind="deployment",
        serverapp=serverapp or "default",
        load_1min=round(load, 2),
        wall_s=round(wall, 2),
        startup_s=round(exact["startup_seconds"], 1) if exact else int(m.group(2)),
        run_s=round(exact["run_seconds"], 2) if exact else int(m.group(3)),
        total_s=int(m.group(1)),
        rounds_s=round(sum(float(r.group(1)) for r in map(ROUND.search, lines) if r), 2),
        best_acc=float(m.group(4)),
        fleet_bytes=int(m.group(5)) if m.group(5) else None,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--settings", default="smoke,quick1")
    p.add_argument("--serverapps", default="warm",
                   help="comma list of deploy --serverapp values, each a deployment per pair")
    args = p.parse_args()
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown or args.pairs < 1:
        raise SystemExit(f"invalid --settings {unknown} or --pairs {args.pairs}: "
                         f"settings among {', '.join(SETTINGS)}, pairs >= 1")
    apps = [a for a in args.serverapps.split(",") if a]
    if not apps or any(a not in ("warm", "subprocess") for a in apps):
        raise SystemExit(f"invalid --serverapps {args.serverapps!r}: warm and/or subprocess")
    rows = []
    for name in names:
        profile, rounds = SETTINGS[name]
        for k in range(args.pairs):
            runs = [lambda p=profile, r=rounds: in_process(p, r)]
            runs += [lambda a=a, p=profile, r=rounds: deployment(p, r, serverapp=a) for a in apps]
            for fn in runs:
                row = dict(setting=name, pair=k, **fn())
                rows.append(row)
                print(row, flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path(__file__).with_name(f"flower_speed-{stamp}.csv")
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    for name, app in ((n, a) for n in names for a in apps):
        ins = statistics.median(r["wall_s"] for r in rows if r["setting"] == name
                                and r["kind"] == "in-process")
        dep = [r for r in rows if r["setting"] == name and r["kind"] == "deployment"
               and r["serverapp"] == app]
        run = statistics.median(r["run_s"] for r in dep)
        print(f"{name}: in-process {ins:.1f} s; deployment ({app} ServerApp) start-up "
              f"{statistics.median(r['startup_s'] for r in dep)} s, run {run} s, rounds "
              f"{statistics.median(r['rounds_s'] for r in dep):.1f} s; run / in-process "
              f"{run / ins:.2f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
