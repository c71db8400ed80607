"""``sweep`` computes missing runs in worker processes: same numbers, errors kept to one line."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from tinyproto.config import ConfigError
from tinyproto.data import DataError
from tinyproto.sweep import grid, resolve_workers, sweep

SMALL = dict(
    profile="smoke",
    dataset="synthetic",
    num_classes=4,
    num_clients=3,
    alpha=0.5,
    rounds=2,
    max_samples=120,
    feature_dim=8,
    save_prototypes=False,
)


def test_workers_give_the_numbers_of_one_process(tmp_path):
    configs = grid(algorithm=["fedproto", "tinyproto-fp", "fml"], **SMALL)
    par = sweep(configs, root=tmp_path / "par", progress=False, workers=3)
    seq = sweep(configs, root=tmp_path / "seq", progress=False, workers=1)
    pd.testing.assert_frame_equal(
        par.drop(columns=["wall_seconds", "data_source"]),
        seq.drop(columns=["wall_seconds", "data_source"]),
    )
    for cfg in configs:  # per-round metrics too, not only the summaries
        a = pd.read_csv(tmp_path / "par" / cfg.run_id() / "metrics.csv").drop(columns="seconds")
        b = pd.read_csv(tmp_path / "seq" / cfg.run_id() / "metrics.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)


def test_a_failing_worker_is_one_line_and_keeps_finished_runs(tmp_path):
    good = grid(algorithm="fedproto", **SMALL)[0]
    fmnist = {k: v for k, v in SMALL.items() if k != "num_classes"}
    fmnist.update(dataset="fmnist", max_samples=600, data_dir=str(tmp_path / "no-such-folder"))
    bad = grid(algorithm="fedproto", **fmnist)[0]
    with pytest.raises(ConfigError) as e:
        sweep([good, bad], root=tmp_path / "runs", progress=False, workers=2)
    text = str(e.value)
    assert "\n" not in text and bad.run_id() in text and "no-such-folder" in text
    assert (tmp_path / "runs" / good.run_id() / "summary.json").exists()


def test_worker_count_rules(monkeypatch):
    configs = grid(algorithm="fedproto", seed=[0, 1, 2], **SMALL)
    assert resolve_workers(8, configs) == 3  # never more processes than missing runs
    assert resolve_workers(2, configs[:1]) == 1
    monkeypatch.delenv("TINYPROTO_WORKERS", raising=False)
    assert resolve_workers(None, configs) == 1  # smoke runs: not worth a process each
    monkeypatch.setenv("TINYPROTO_WORKERS", "2")
    assert resolve_workers(None, configs) == 2
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("TINYPROTO_WORKERS", bad)
        with pytest.raises(ConfigError, match="TINYPROTO_WORKERS"):
            resolve_workers(None, configs)
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ConfigError, match="workers"):
            resolve_workers(bad, configs)


def test_a_runs_numbers_do_not_depend_on_what_is_missing(tmp_path, monkeypatch):
    """A run computed alone (in this process) gets the numbers it gets beside others in worker
    processes: every run computes with one torch thread (runtime.clients.RUN_THREADS), and its
    share of the cores (its budget for client workers) does not depend on what is missing."""
    import json

    import torch

    from tinyproto.sweep import run_threads

    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    monkeypatch.delenv("TINYPROTO_WORKERS", raising=False)
    configs = grid(algorithm=["fedproto", "tinyproto-fp"], **SMALL)
    expected = max(1, torch.get_num_threads() // 2)
    assert run_threads(2, configs) == run_threads(2, configs[:1]) == expected
    before = torch.get_num_threads()
    together = sweep(configs, root=tmp_path / "both", progress=False, workers=2)
    alone = sweep(configs[:1], root=tmp_path / "alone", progress=False, workers=2)  # in-process
    assert torch.get_num_threads() == before  # restored after the in-process run
    for root in ("both", "alone"):
        summary = json.loads((tmp_path / root / configs[0].run_id() / "summary.json").read_text())
        assert summary["torch_threads"] == 1, root
    a = pd.read_csv(tmp_path / "both" / configs[0].run_id() / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "alone" / configs[0].run_id() / "metrics.csv").drop(
        columns="seconds"
    )
    pd.testing.assert_frame_equal(a, b)
    assert together["best_acc"].iloc[0] == alone["best_acc"].iloc[0]


def _small_fmnist_missing(tmp_path):
    fmnist = {k: v for k, v in SMALL.items() if k != "num_classes"}
    fmnist.update(dataset="fmnist", max_samples=600, data_dir=str(tmp_path / "no-such-folder"))
    return grid(algorithm="fedproto", **fmnist)[0]


def test_a_failure_with_runs_still_queued_ends_the_sweep(tmp_path):
    """Regression: after a failure the queue is not started, and the sweep returns (raising)
    instead of waiting forever for the queued runs."""
    import threading

    bad = _small_fmnist_missing(tmp_path)
    good = grid(algorithm="fedproto", seed=[0, 1, 2], **SMALL)
    box = {}

    def target():
        try:
            sweep([bad, *good], root=tmp_path / "runs", progress=False, workers=2)
        except ConfigError as e:
            box["error"] = str(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout=240)
    assert not t.is_alive(), "sweep hung after a failing run with runs still queued"
    assert bad.run_id() in box["error"]
    started = [c for c in good if (tmp_path / "runs" / c.run_id()).exists()]
    assert len(started) <= 1  # only the run already under way beside the failing one


def test_keep_going_records_the_failure_and_finishes_the_others(tmp_path):
    from tinyproto.store.failures import failure

    bad = _small_fmnist_missing(tmp_path)
    good = grid(algorithm="fedproto", seed=[0, 1], **SMALL)
    for workers in (2, 1):  # in worker processes, and in-process
        root = tmp_path / f"runs{workers}"
        (root / bad.run_id()).mkdir(parents=True)  # a run folder to record into
        df = sweep([bad, *good], root=root, progress=False, workers=workers, keep_going=True)
        assert list(df["run_id"]) == [c.run_id() for c in good]
        line = df.attrs["failed"][bad.run_id()]
        assert "no-such-folder" in line and "\n" not in line
        assert failure(bad, root) == line  # recorded in the run folder for the scorecard
        assert failure(good[0], root) is None


def test_a_recorded_failure_is_not_computed_again_unless_asked(tmp_path):
    """keep_going sweeps skip a run recorded as failed (it would fail the same way) and report
    its recorded line; retry_failed computes it again; without keep_going it is computed (and
    raises)."""
    from tinyproto.store.failures import FAILED

    bad = _small_fmnist_missing(tmp_path)
    root = tmp_path / "runs"
    (root / bad.run_id()).mkdir(parents=True)
    first = sweep([bad], root=root, progress=False, workers=1, keep_going=True)
    assert "no-such-folder" in first.attrs["failed"][bad.run_id()]
    marker = "round 3 of 3: recorded earlier"  # what only the record says, not a new attempt
    (root / bad.run_id() / FAILED).write_text(json.dumps({"error": marker}))
    for workers in (1, 2):
        again = sweep([bad], root=root, progress=False, workers=workers, keep_going=True)
        assert again.attrs["failed"] == {bad.run_id(): marker} and again.empty
    retried = sweep([bad], root=root, progress=False, workers=1, keep_going=True, retry_failed=True)
    assert "no-such-folder" in retried.attrs["failed"][bad.run_id()]
    with pytest.raises(DataError, match="no-such-folder"):
        sweep([bad], root=root, progress=False, workers=1)


def test_worker_protocol_serves_runs_until_stdin_closes(tmp_path):
    """One worker process computes several runs: one answer frame per request (runtime.procs),
    a user error is an "error" answer and the worker goes on, garbage is a crash (exit 1,
    traceback on stderr)."""
    import subprocess
    import sys

    from tinyproto.runtime import procs

    good = grid(algorithm="fedproto", seed=[0, 1], **SMALL)
    bad = _small_fmnist_missing(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyproto.sweep.worker", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    answers = []
    for cfg in (good[0], bad, good[1]):
        procs.send(proc.stdin, {"config": cfg.to_dict(), "root": str(tmp_path)})
        answers.append(procs.receive(proc.stdout))
    assert [a[0] for a in answers] == ["ok", "error", "ok"]
    assert [answers[0][1], answers[2][1]] == [good[0].run_id(), good[1].run_id()]
    kind, line = answers[1][1]
    assert kind == "DataError" and "no-such-folder" in line and "\n" not in line
    for cfg in good:
        summary = json.loads((tmp_path / cfg.run_id() / "summary.json").read_text())
        assert summary["torch_threads"] == 1
    proc.stdin.write(b"not a frame\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == b""
    assert "UnpicklingError" in err.decode().strip().splitlines()[-1]
    quiet = subprocess.run(
        [sys.executable, "-m", "tinyproto.sweep.worker", "1"], input="", capture_output=True, text=True
    )
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_a_killed_worker_is_a_failure_naming_its_run(tmp_path):
    """A worker that dies mid-run (killed, out of memory) ends the sweep with RunFailed naming
    the run, after the other worker's run finished; nothing hangs."""
    import os
    import signal
    import threading
    import time

    from tinyproto.sweep import RunFailed

    slow = dict(SMALL, rounds=40, max_samples=400)
    configs = grid(algorithm="fml", seed=[0, 1, 2, 3], **slow)
    box = {}

    def target():
        try:
            sweep(configs, root=tmp_path, progress=False, workers=2)
        except RunFailed as e:
            box["error"] = str(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()

    def workers():  # this process's worker children
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = open(f"/proc/{pid}/stat").read()
                cmd = open(f"/proc/{pid}/cmdline").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and "tinyproto.sweep.worker" in cmd:
                found.append(int(pid))
        return found

    victims = []
    for _ in range(600):
        victims = workers()
        if victims:
            break
        time.sleep(0.05)
    assert victims
    time.sleep(0.5)
    os.kill(victims[0], signal.SIGKILL)
    t.join(timeout=240)
    assert not t.is_alive(), "sweep hung after a worker was killed"
    assert "failed in a worker (exit -9)" in box["error"]
    assert any(c.run_id() in box["error"] for c in configs)


def _gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie its new parent has not reaped yet)."""
    from pathlib import Path

    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_worker_exits_mid_run_when_the_sweep_that_started_it_is_killed(tmp_path):
    """Regression: killing a sweep left its workers computing their current (long) runs as
    orphans, racing a later sweep that computed the same runs into the same folders."""
    import subprocess
    import time

    cfg = grid(algorithm="fedproto", **{**SMALL, "rounds": 5000})[0]  # minutes of rounds
    parent = (
        "import os, subprocess, sys, time\n"
        "from tinyproto.runtime import procs\n"
        "p = subprocess.Popen([sys.executable, '-m', 'tinyproto.sweep.worker', '1'],\n"
        "    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        f"procs.send(p.stdin, {{'config': {cfg.to_dict()!r}, 'root': {str(tmp_path)!r}}})\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"  # killed long before
    )
    sweeper = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    worker = int(sweeper.stdout.readline())
    folder = tmp_path / cfg.run_id()
    deadline = time.monotonic() + 120
    while not (folder / "config.json").exists():  # the worker is computing the run
        assert time.monotonic() < deadline and not _gone(worker), "the worker never started"
        time.sleep(0.2)
    sweeper.kill()
    sweeper.wait()
    killed = time.monotonic()
    while not _gone(worker) and time.monotonic() - killed < 20:
        time.sleep(0.2)
    assert _gone(worker), "the worker outlived the sweep that started it"
    assert not (folder / "summary.json").exists()  # it stopped mid-run, not after finishing
