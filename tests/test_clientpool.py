"""``client_workers``: clients trained side by side in worker processes (tinyproto.runtime.clients).

The numbers must be exactly those of an in-process run (one torch thread per computation in
both; clients are independent within a round and seeded per (seed, round, client)), whatever the
assignment or the caller's thread count;
checkpoints and resume work across it; errors in a worker come back as one line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tinyproto import Config, ConfigError, run
from tinyproto.comm.message import Message, MessageError
from tinyproto.runtime.clients import ClientPool, assign
from tinyproto.sweep.workers import torch_threads

SMALL = dict(
    profile="smoke",
    dataset="synthetic",
    num_classes=4,
    num_clients=5,
    alpha=0.5,
    rounds=3,
    max_samples=200,
    feature_dim=16,
)


def _one_thread_run(cfg, root):
    with torch_threads(2):  # the caller's count does not matter: a run computes with one
        return run(cfg, root=root, progress=False)


def _same(a, b):
    cols = [c for c in a.metrics.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols])
    pd.testing.assert_frame_equal(a.clients, b.clients)


@pytest.mark.parametrize(
    "algorithm,extra",
    [
        ("fedproto", {}),
        ("tinyproto-ft", {}),  # server training
        ("fml", {}),  # two models per client
        ("lg-fedavg", {"join_ratio": 0.6, "drop_rate": 0.3}),  # partial participation
    ],
)
def test_side_by_side_gives_the_one_thread_numbers(algorithm, extra, tmp_path):
    cfg = Config(algorithm=algorithm, client_workers=1, **SMALL, **extra)
    pooled_cfg = cfg.replace(client_workers=2)
    assert pooled_cfg.run_id() == cfg.run_id()  # operational: not part of the run id
    alone = _one_thread_run(cfg, tmp_path / "alone")
    if torch.get_num_threads() < 2:
        torch.set_num_threads(2)
    pooled = run(pooled_cfg, root=tmp_path / "pooled", progress=False)
    _same(alone, pooled)
    assert pooled.summary["torch_threads"] == 1 and pooled.summary["client_workers"] == 2
    for key in ("best_acc", "comm_floats_per_round", "train_flops_per_round"):
        assert pooled.summary[key] == alone.summary[key], key
    if cfg.algorithm in ("fedproto", "tinyproto-ft"):  # final states synced back: same npz
        a = np.load(tmp_path / "alone" / cfg.run_id() / "prototypes.npz")
        b = np.load(tmp_path / "pooled" / cfg.run_id() / "prototypes.npz")
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_side_by_side_resumes_to_the_uninterrupted_numbers(tmp_path):
    cfg = Config(algorithm="tinyproto-fp", client_workers=2, checkpoint_every=1, **SMALL)
    whole = run(cfg, root=tmp_path / "whole", progress=False)
    run(cfg, root=tmp_path / "split", progress=False, stop_after=1)
    resumed = run(cfg, root=tmp_path / "split", progress=False, resume=True)
    _same(whole, resumed)


def test_a_refused_download_in_a_worker_is_the_same_one_line_error(tmp_path):
    cfg = Config(algorithm="fedproto", **SMALL)
    pool = ClientPool(cfg, [[0, 1], [2, 3, 4]], threads=1)
    try:
        pool.train(0, range(5))
        bad = Message({"classes": torch.tensor([0]), "protos": torch.full((1, 16), float("nan"))})
        with pytest.raises(MessageError) as e:
            pool.receive({0: bad, 3: bad})
        assert "\n" not in str(e.value) and "message from server" in str(e.value)
        assert "NaN or inf" in str(e.value)
        assert set(pool.evaluate(range(5))) == set(range(5))  # the pipes are still in step
    finally:
        pool.close()


def test_a_killed_worker_is_named(tmp_path):
    from tinyproto.runtime.procs import WorkerDied

    cfg = Config(algorithm="fedproto", **SMALL)
    pool = ClientPool(cfg, [[0, 1], [2, 3, 4]], threads=1)
    try:
        os.kill(pool.procs[1].pid, signal.SIGKILL)
        pool.procs[1].wait()
        with pytest.raises(WorkerDied, match=r"client worker 1 \(clients 2 3 4\) died \(exit -9\)"):
            pool.train(0, range(5))
    finally:
        pool.close()


def test_a_worker_killed_mid_run_is_one_line_and_resume_continues(tmp_path, capsys):
    """The CLI says in one line (exit 1) which client worker died and that --resume continues;
    the resumed run gives the uninterrupted numbers."""
    import threading
    import time

    from tinyproto.cli import main

    flags = ["run", "--algorithm", "fedproto", "--profile", "smoke", "--dataset", "synthetic",
             "--num-classes", "6", "--num-clients", "4", "--max-samples", "240",
             "--feature-dim", "16", "--rounds", "12", "--checkpoint-every", "1",
             "--client-workers", "2", "--no-progress"]

    def kill_a_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for p in Path("/proc").iterdir():
                if p.name.isdigit():
                    try:
                        cmd = (p / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if b"tinyproto.runtime.clients" in cmd and list((tmp_path / "a").glob("*/checkpoint.pt")):
                        os.kill(int(p.name), signal.SIGKILL)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    code = main([*flags, "--results", str(tmp_path / "a")])
    killer.join()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "client worker" in err[0] and "died (exit -9)" in err[0] and "--resume" in err[0]
    assert main([*flags, "--results", str(tmp_path / "a"), "--resume"]) == 0
    assert main([*flags, "--results", str(tmp_path / "b")]) == 0
    a = pd.read_csv(next((tmp_path / "a").glob("*/metrics.csv"))).drop(columns="seconds")
    b = pd.read_csv(next((tmp_path / "b").glob("*/metrics.csv"))).drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)


def test_assignment_covers_every_client_once_and_balances():
    costs = [5.0, 1.0, 4.0, 3.0, 2.0, 2.0, 1.0]
    groups = assign(costs, 3)
    flat = sorted(c for g in groups for c in g)
    assert flat == list(range(len(costs)))
    loads = [sum(costs[c] for c in g) for g in groups]
    assert max(loads) - min(loads) <= max(costs)
    assert assign([1.0, 1.0], 4) == [[0], [1]]  # never an empty worker


def test_client_workers_is_checked():
    with pytest.raises(ConfigError, match=r"invalid client_workers=0"):
        Config(client_workers=0)
    with pytest.raises(ConfigError, match=r"invalid client_workers=2.*fedtiny"):
        Config(algorithm="fedtiny", client_workers=2)


def test_training_costs_follow_each_clients_steps():
    """The assignment's weights: per-step time of the client's architecture x its own steps."""
    from tinyproto.runtime.clients import training_costs
    from tinyproto.runtime.engine import setup

    S = setup(Config(algorithm="fedproto", **SMALL))
    costs = training_costs(S)
    steps = [-(-d.num_train // 32) for d in S.data]
    by_arch: dict[str, set] = {}
    for st, c, s in zip(S.states, costs, steps):
        by_arch.setdefault(st.model.arch, set()).add(round(c / s, 12))
    assert all(len(v) == 1 for v in by_arch.values()), by_arch  # same per-step time per arch
    assert all(c > 0 for c in costs) and len(by_arch) == 4  # cnn4: four architectures


def test_auto_workers_follow_the_cores_the_clients_and_the_run_length():
    """``client_workers="auto"`` (the default): one worker per core the run may use, at most one
    per client, on the CPU, for algorithms trained by train_local, and only when the estimated
    training time of the whole run pays for starting the workers."""
    from tinyproto.runtime import clients

    cfg = Config(algorithm="fedproto", device="cpu", **SMALL)  # 5 clients, 3 rounds
    assert cfg.client_workers == "auto"
    long_enough = [clients.AUTO_MIN_SECONDS] * 5  # seconds per round per client
    assert clients.pool_size(cfg, 4, long_enough) == 4
    assert clients.pool_size(cfg, 16, long_enough) == 5  # at most one per client
    assert clients.pool_size(cfg, 1, long_enough) == 1
    short = [clients.AUTO_MIN_SECONDS / (5 * 3) * 0.99] * 5  # just under, over 3 rounds
    assert clients.pool_size(cfg, 4, short) == 1
    assert clients.pool_size(cfg, 4, [c * 1.02 for c in short]) == 4
    sampled = cfg.replace(join_ratio=0.5)  # half the clients train per round: half the work
    assert clients.pool_size(sampled, 4, [c * 1.02 for c in short]) == 1
    assert clients.pool_size(cfg.replace(client_workers=3), 1, short) == 3  # asked for: given
    assert clients.pool_size(cfg.replace(client_workers=9), 1) == 5
    tiny = Config(algorithm="fedtiny", profile="smoke", device="cpu")
    assert clients.pool_size(tiny, 4, long_enough) == 1  # its own training loop: in-process


def test_auto_keeps_a_registered_algorithm_in_this_process():
    """A registration lives in this process only, so "auto" never hands its clients to workers
    (they would not know the algorithm); asked for explicitly, workers are still tried."""
    from tinyproto.algorithms import register_algorithm, unregister_algorithm
    from tinyproto.algorithms.fedproto import FedProto
    from tinyproto.config import AlgorithmSpec
    from tinyproto.runtime import clients

    class ToyAuto(FedProto):
        name = "toy-auto"

    register_algorithm(AlgorithmSpec("toy-auto", ToyAuto, groups=("proto",)))
    try:
        cfg = Config(algorithm="toy-auto", device="cpu", **SMALL)
        assert clients.pool_size(cfg, 4, [clients.AUTO_MIN_SECONDS] * 5) == 1
        assert clients.pool_size(cfg.replace(client_workers=2), 4) == 2
    finally:
        unregister_algorithm("toy-auto")


def test_the_numbers_do_not_depend_on_the_execution_mode_or_the_callers_threads(
    tmp_path, monkeypatch
):
    """In this process with 1 or 3 caller threads, in 2 workers, and "auto" (here forced to
    start workers): the same metrics, clients.csv and prototypes, bit for bit. The summary
    records the mode; the caller's thread count is restored."""
    from tinyproto.runtime import clients

    monkeypatch.setattr(clients, "AUTO_MIN_SECONDS", 0.0)
    cfg = Config(algorithm="tinyproto-fp", **SMALL)
    out = {}
    for name, workers, threads in (
        ("one-thread", 1, 1),
        ("three-threads", 1, 3),
        ("two-workers", 2, 3),
        ("auto", "auto", 2),
    ):
        with torch_threads(threads):
            out[name] = run(cfg.replace(client_workers=workers), root=tmp_path / name,
                            progress=False)
            assert torch.get_num_threads() == threads  # restored
    for name, r in out.items():
        _same(out["one-thread"], r)
        assert r.summary["torch_threads"] == 1, name
        a = np.load(tmp_path / "one-thread" / cfg.run_id() / "prototypes.npz")
        b = np.load(tmp_path / name / cfg.run_id() / "prototypes.npz")
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert [out[n].summary["client_workers"] for n in out] == [1, 1, 2, 2]
