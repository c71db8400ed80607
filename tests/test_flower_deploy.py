"""tinyproto on real Flower runtimes: processes on 127.0.0.1 driven by ``flwr run``.

Slow (Flower processes, each importing torch): ``make test-flower``, which CI runs after
``make test``. A local deployment of one SuperLink with its warm ServerApp executor
(serverexec.py) and four SuperNodes, each with its long-lived ClientApp process
(tinyproto.flower.deploy, worker.py), serves the tests of this module in turn:

- smoke configs of tinyproto-fp and fedproto give, round by round, the in-process engine's
  numbers bit for bit (train loss, test accuracy per round and per client, floats and bytes),
  every message handled by the SuperNode's one ClientApp process, and the launcher sees each
  round's progress line as it comes;
- Flower's own count of the run's traffic covers the bytes we measure per message;
- a SuperNode killed with SIGKILL after round 1: the server finishes the remaining rounds with
  the other three and records the missing client; every wait is bounded, nothing hangs;
- payload codecs with local DP, and secure aggregation (masked uploads), give the engine's
  numbers too.

The simulation runtime (``flwr run`` on a SuperLink in simulation mode) gives the same numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

import tinyproto
from tinyproto import Config, store
from tinyproto.flower import server_app, settings
from tinyproto.flower.deploy import LocalFederation, alive, descendants

pytestmark = pytest.mark.slow
COLUMNS = ["round", "train_loss", "upload_floats", "download_floats", "upload_bytes"]
COLUMNS += ["download_bytes", "test_acc"]
RUN_TIMEOUT = 900.0  # seconds: a bound, not an expectation (a smoke run takes 15-30 s)


@pytest.fixture(scope="module")
def federation():
    with LocalFederation(4) as fed:
        yield fed
    assert not fed.procs and fed.home is None


def submit(fed: LocalFederation, cfg: Config, folder: Path, **runtime) -> tuple[int, Path]:
    rc = settings.to_run_config(cfg, results_dir=folder, **runtime)
    return fed.submit(rc), settings.parse({**settings.DEFAULTS, **rc}).run_dir


def exact(run_dir: Path, table: str = "metrics") -> pd.DataFrame:
    return pd.DataFrame(json.loads((run_dir / server_app.EXACT).read_text())[table])


def assert_engine_numbers(cfg: Config, run_dir: Path, tmp_path: Path) -> pd.DataFrame:
    ref = tinyproto.run(cfg, root=tmp_path / "engine", progress=False)
    got = exact(run_dir)
    pd.testing.assert_frame_equal(got[COLUMNS], ref.metrics[COLUMNS], check_exact=True)
    cols = ["round", "client", "test_acc", "train_loss"]
    pd.testing.assert_frame_equal(
        exact(run_dir, "clients")[cols], ref.clients[cols], check_exact=True, check_dtype=False
    )
    return got


@pytest.mark.parametrize("algorithm", ["tinyproto-fp", "fedproto"])
def test_a_deployment_gives_the_engines_numbers_bit_for_bit(federation, algorithm, tmp_path):
    cfg = Config(algorithm=algorithm, profile="smoke", device="cpu")
    assert cfg.num_clients == 4  # one SuperNode each
    run_id, run_dir = submit(federation, cfg, tmp_path / "flower", round_timeout=300.0)
    seen = []
    status = federation.wait(run_id, RUN_TIMEOUT, echo=seen.append)
    assert status["status"] == "finished:completed", federation.logs(run_id)[-3000:]
    got = assert_engine_numbers(cfg, run_dir, tmp_path)
    progress = [line.split("round ", 1)[1] for line in seen if " round " in line]
    assert [p.split(":")[0] for p in progress] == [f"{k}/{cfg.rounds}" for k in (1, 2, 3)]
    assert all(p.endswith(f"run folder {run_dir}") and ": acc 0." in p for p in progress)
    # the warm ServerApp executor, started with the federation, ran it (no flwr-serverapp)
    assert "claimed ServerApp task" in (federation.home / "serverapp.log").read_text()
    assert f"of run {run_id}" in (federation.home / "serverapp.log").read_text()
    for i in range(cfg.num_clients):  # the SuperNode's one ClientApp process took every message
        assert federation.procs[f"clientapp-{i}"].poll() is None
        log = (federation.home / f"clientapp-{i}.log").read_text()
        assert f"(evaluate {cfg.rounds}): completed" in log
    assert list(got["clients"]) == ["0 1 2 3"] * cfg.rounds and (got["failed"] == "").all()
    summary = store.verify_run(run_dir)["summary"]
    ours = summary["hello_wire_bytes"] + sum(
        got[c].sum() for c in ("wire_upload_bytes", "wire_download_bytes", "wire_control_bytes")
    )
    flower = status["network-traffic"]["total-bytes"]
    assert ours <= flower <= 1.5 * ours  # Flower adds its requests' framing to our messages


def test_two_runs_submitted_together_are_both_served(federation, tmp_path):
    """The warm ServerApp serves one run at a time: the second waits in Flower's queue until
    the next warm process claims it, and both give the engine's numbers."""
    cfgs = [Config(algorithm="fedproto", profile="smoke", device="cpu", rounds=2, seed=s)
            for s in (5, 6)]
    runs = [submit(federation, cfg, tmp_path / f"flower{k}", round_timeout=300.0)
            for k, cfg in enumerate(cfgs)]
    for cfg, (run_id, run_dir) in zip(cfgs, runs):
        status = federation.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", federation.logs(run_id)[-3000:]
        assert_engine_numbers(cfg, run_dir, tmp_path / str(cfg.seed))


def test_payload_codecs_and_local_dp_are_the_engines_on_a_deployment(federation, tmp_path):
    """int4 payloads and clipped, noised uploads: encoded by the SuperNodes, decoded and checked
    by the ServerApp, the same numbers, bytes and epsilon as in-process."""
    cfg = Config(algorithm="tinyproto-fp", profile="smoke", device="cpu", payload="int4",
                 dp_clip=5.0, dp_noise=0.5)
    run_id, run_dir = submit(federation, cfg, tmp_path / "flower", round_timeout=300.0)
    status = federation.wait(run_id, RUN_TIMEOUT)
    assert status["status"] == "finished:completed", federation.logs(run_id)[-3000:]
    assert_engine_numbers(cfg, run_dir, tmp_path)
    ours = store.verify_run(run_dir)["summary"]
    ref = store.verify_run(tmp_path / "engine" / cfg.run_id())["summary"]
    for key in ("comm_bytes_per_round", "dp_epsilon", "best_acc"):
        assert ours[key] == ref[key], key


def test_secure_aggregation_is_the_engines_on_a_deployment(federation, tmp_path):
    """secure_agg: each SuperNode masks its table against the round's other clients, the
    ServerApp sees only masked tables and unmasks their sum; the engine's numbers bit for bit."""
    cfg = Config(algorithm="tinyproto-fp", profile="smoke", device="cpu", secure_agg=True)
    run_id, run_dir = submit(federation, cfg, tmp_path / "flower", round_timeout=300.0)
    status = federation.wait(run_id, RUN_TIMEOUT)
    assert status["status"] == "finished:completed", federation.logs(run_id)[-3000:]
    got = assert_engine_numbers(cfg, run_dir, tmp_path)
    assert (got["upload_floats"] == 0).all() and (got["upload_bytes"] > 0).all()


def test_a_killed_supernode_is_left_out_and_the_run_finishes(federation, tmp_path):
    """A SuperNode killed after round 1 is left out of every later round, and the run finishes.

    The kill lands after round 1's checkpoint, but a smoke round is short enough that the next
    round may already be answered by then: the test finds the first round without the node
    (2 or later; 4 rounds leave room) instead of assuming it, and checks every round around it;
    a kill between the node's training reply and its evaluation fails it in that round already.
    """
    cfg = Config(algorithm="fedproto", profile="smoke", device="cpu", rounds=4, checkpoint_every=1)
    run_id, run_dir = submit(federation, cfg, tmp_path / "flower", round_timeout=30.0)
    deadline, ticks = time.monotonic() + RUN_TIMEOUT, 0
    while not (run_dir / store.CHECKPOINT).exists():  # round 1 done: every client answered
        assert time.monotonic() < deadline, "round 1 never finished"
        ticks += 1
        if ticks % 50 == 0:  # every 10 s: a run that ended early fails the test now
            assert not federation.status(run_id)["status"].startswith("finished")
        time.sleep(0.2)
    node = federation.procs["supernode-3"]
    tree = [node.pid, *descendants(node.pid)]
    federation.kill_supernode(3)
    assert not any(alive(pid) for pid in tree)
    t0 = time.monotonic()
    status = federation.wait(run_id, RUN_TIMEOUT)
    assert status["status"] == "finished:completed", federation.logs(run_id)[-3000:]
    # a run that lost a client is degraded: written apart, the clean folder keeps nothing of it
    assert not (run_dir / "summary.json").exists()
    run_dir = run_dir.parent.with_name(run_dir.parent.name + "-degraded") / run_dir.name
    got = exact(run_dir)
    took = list(got["clients"])
    assert took[0] == "0 1 2 3" and got["failed"][0] == ""
    first = next((i for i, c in enumerate(took) if c != "0 1 2 3"), None)
    assert first is not None, f"the killed node took part in every round: {took}"
    assert took[first:] == ["0 1 2"] * (4 - first) and list(got["failed"][first:]) == ["3"] * (
        4 - first
    )
    # the kill can also land between the node's training reply and its evaluation: then the last
    # round it trained in already counts it as failed (in evaluate); never an earlier one
    lost = first if got["failed"][first - 1] == "3" else first + 1  # 1-based, first failed round
    assert list(got["failed"][: lost - 1]) == [""] * (lost - 1)
    assert time.monotonic() - t0 < 60 + 60 * (5 - lost)  # a round-timeout per round, no hang
    summary = store.verify_run(run_dir)["summary"]
    assert summary["degraded"]["failed"] == [3] and summary["degraded"]["clients_throughout"] == 3
    assert {f["client"] for f in summary["failures"]} == {3}
    assert {f["round"] for f in summary["failures"]} == set(range(lost, 5))
    clients = exact(run_dir, "clients")
    assert sorted(clients[clients["round"] == 4]["client"]) == [0, 1, 2]
    assert got["test_acc"].notna().all()


def test_flowers_own_serverapp_process_and_a_prepared_one_give_the_same_numbers(tmp_path):
    """--serverapp subprocess (Flower's SuperExec starts flwr-serverapp for the run) and the
    warm executor with the run's data prepared before it is submitted: the engine's numbers."""
    cfg = Config(algorithm="fedtgp", profile="smoke", device="cpu", rounds=2)
    rc = settings.to_run_config(cfg, results_dir=tmp_path / "own", round_timeout=300.0)
    with LocalFederation(4, serverapp="subprocess", secure=False) as fed:
        assert "serverapp" not in fed.procs
        run_id = fed.submit(rc)
        status = fed.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", fed.logs(run_id)[-3000:]
    own = exact(settings.parse({**settings.DEFAULTS, **rc}).run_dir)
    rc = settings.to_run_config(cfg, results_dir=tmp_path / "warm", round_timeout=300.0)
    with LocalFederation(4, prepare=rc, secure=False) as fed:
        run_id = fed.submit(rc)
        status = fed.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", fed.logs(run_id)[-3000:]
        assert "could not prepare" not in (fed.home / "serverapp.log").read_text()
        assert "the Setup prepared before the run taken over" in fed.logs(run_id)
    run_dir = settings.parse({**settings.DEFAULTS, **rc}).run_dir
    got = assert_engine_numbers(cfg, run_dir, tmp_path)
    pd.testing.assert_frame_equal(got[COLUMNS], own[COLUMNS], check_exact=True)


def test_the_warm_serverapp_executor_ends_with_the_superlink_it_serves(tmp_path):
    """Ready (torch imported) with its warm child, waiting for a run; when the process it
    serves (--parent-pid) ends, the executor and its child end too, even a child stuck
    reaching a SuperLink that is not there (port 1)."""
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ready = tmp_path / "ready"
    exe = subprocess.Popen(
        [sys.executable, "-m", "tinyproto.flower.serverexec", "--runtime-api-address",
         "127.0.0.1:1", "--insecure", "--parent-pid", str(parent.pid), "--ready-file",
         str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline and exe.poll() is None:
            time.sleep(0.2)
        assert ready.exists()
        children = descendants(exe.pid)
        assert children  # the warm child
        parent.kill()
        parent.wait()
        out, _ = exe.communicate(timeout=60)
    finally:
        parent.kill()
        exe.kill()
    assert exe.returncode == 0, out
    time.sleep(1)
    assert not any(alive(pid) for pid in children), out


def test_the_simulation_runtime_gives_the_engines_numbers(tmp_path):
    cfg = Config(algorithm="tinyproto-fp", profile="smoke", device="cpu", rounds=2)
    with LocalFederation(4, simulation=True) as fed:
        run_id, run_dir = submit(fed, cfg, tmp_path / "flower", round_timeout=300.0)
        status = fed.wait(run_id, RUN_TIMEOUT)
        assert status["status"] == "finished:completed", fed.logs(run_id)[-3000:]
        pids = [p.pid for p in fed.procs.values()]
    assert not any(alive(pid) for pid in pids)  # stopped by PID
    assert_engine_numbers(cfg, run_dir, tmp_path)


def test_simulate_from_python_gives_the_engines_numbers(tmp_path):
    from tinyproto.flower.simulation import simulate

    cfg = Config(algorithm="fedtgp", profile="smoke", device="cpu", rounds=2)
    run_dir = simulate(cfg, results_dir=tmp_path / "flower", round_timeout=300.0)
    assert_engine_numbers(cfg, run_dir, tmp_path)
    assert store.verify_run(run_dir)["summary"]["runtime"] == "flower"
