"""``tinyproto bench``: the CSV it writes, and that it leaves no run behind (timings not checked)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tinyproto.cli import main
from tinyproto.runtime import bench

SMOKE = [
    "--profile",
    "smoke",
    "--dataset",
    "synthetic",
    "--algorithm",
    "fedproto",
    "--max-samples",
    "200",
    "--feature-dim",
    "8",
]


@pytest.fixture
def results(tmp_path, monkeypatch):
    root = tmp_path / "results"
    monkeypatch.setenv("TINYPROTO_RESULTS", str(root))
    return root


def test_bench_csv(tmp_path, results, capsys):
    out = tmp_path / "b.csv"
    argv = ["bench", *SMOKE, "--bench-rounds", "1", "--warmup", "0", "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == list(bench.COLUMNS)
    whole = df[df.arch == "all"].set_index("component")
    for c in (*bench.COMPONENTS, "total", "bare"):
        assert c in whole.index, c
    for c in ("train", "prototypes", "server", "eval", "total", "bare"):
        assert whole.loc[c, "seconds_per_round"] >= 0, c
    total = whole.loc["total", "seconds_per_round"]
    parts = sum(whole.loc[c, "seconds_per_round"] for c in bench.COMPONENTS)
    assert math.isclose(parts, total, rel_tol=0.05)
    bare = whole.loc["bare", "seconds_per_round"]
    assert bare > 0
    assert math.isclose(whole.loc["total", "ratio"], total / bare, rel_tol=1e-4)
    per_arch = df[(df.arch != "all") & (df.component == "train")]
    assert set(per_arch.arch) == {"cnn_a", "cnn_b", "cnn_c", "cnn_d"}  # smoke: 4 clients
    assert (per_arch.steps > 0).all() and (per_arch.bare_seconds > 0).all()
    assert per_arch.steps.sum() == whole.loc["train", "steps"]
    printed = capsys.readouterr().out
    assert "ratio" in printed and str(out) in printed
    assert not results.exists()  # no run folder, no results written


def test_bench_default_path(results, capsys):
    assert main(["bench", *SMOKE, "--bench-rounds", "1", "--warmup", "0"]) == 0
    files = list(results.rglob("*"))
    csvs = [f for f in files if f.is_file()]
    assert len(csvs) == 1 and csvs[0].parent == results / "bench"
    assert not (results / "runs").exists() and not (results / "smoke").exists()


@pytest.mark.parametrize(
    "extra",
    [["--bench-rounds", "0"], ["--warmup", "x"], ["--lr", "-1"], ["--no-such-flag"]],
)
def test_bench_bad_flag(extra, results, capsys):
    assert main(["bench", *SMOKE, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyproto: error:")
    assert not results.exists()


def test_rounds_are_interleaved_with_their_lower_bound(results):
    """Each timed round has its own bare round: the round ratio is their mediant, so it lies
    between the smallest and the largest per-round ratio."""
    from tinyproto.cli import build_parser, config_from_args

    args = build_parser().parse_args(["bench", *SMOKE, "--bench-rounds", "3", "--warmup", "0"])
    df = bench.bench(config_from_args(args), rounds=3, warmup=0)
    per_round = df.attrs["round_ratios"]
    assert len(per_round) == 3 and all(r > 0 for r in per_round)
    ratio = df[(df.arch == "all") & (df.component == "total")]["ratio"].iloc[0]
    assert min(per_round) - 1e-9 <= ratio <= max(per_round) + 1e-9
    assert any(line.startswith("per round ") for line in bench.summary_lines(df))


def test_bench_with_client_workers_says_so(results, capsys):
    """Timings with clients in worker processes are another measurement: the CSV records the
    workers and their threads, and the default file name keeps it apart from an in-process one."""
    import torch

    assert main(["bench", *SMOKE, "--bench-rounds", "1", "--warmup", "0"]) == 0
    assert (
        main(["bench", *SMOKE, "--bench-rounds", "1", "--warmup", "0", "--client-workers", "2"])
        == 0
    )
    csvs = sorted(p for p in (results / "bench").iterdir())
    assert len(csvs) == 2, csvs  # neither overwrote the other
    pooled = [p for p in csvs if "-clientworkers2-" in p.name]
    assert len(pooled) == 1
    df = pd.read_csv(pooled[0])
    assert (df.client_workers == 2).all()
    assert (df.worker_threads == 1).all() and (df.threads == torch.get_num_threads()).all()
    per_arch = df[(df.arch != "all") & (df.component == "train")]
    assert per_arch.seconds_per_round.isna().all()  # trained in the workers: no split per arch
    alone = pd.read_csv(next(p for p in csvs if p != pooled[0]))
    assert (alone.client_workers == 1).all() and (alone.worker_threads == 1).all()
    assert "in 2 worker processes" in capsys.readouterr().out


def test_a_bench_never_overwrites_an_earlier_measurement():
    """Timings are a record of one sitting: each bench gets its own file (UTC time in the
    name), so rerunning `tinyproto bench` never replaces a committed CSV."""
    from tinyproto import Config

    cfg = Config(profile="quick")
    a = bench.default_path(cfg, "cpu", when="20261204-040000")
    b = bench.default_path(cfg, "cpu", when="20261204-040001")
    assert a != b and a.parent == b.parent and a.name.endswith("-cpu-20261204-040000.csv")
    assert cfg.run_id() in a.name and a.name.startswith("quick-")
