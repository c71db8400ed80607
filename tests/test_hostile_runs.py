"""Hostile run folders: damaged files, foreign checkpoints, kill -9, a full disk.

A run folder is never trusted blindly: every damaged or foreign file is refused with a
RunFolderError (CLI: exit 2) whose one line names the file and how to recover, and nothing in the
folder is changed by the refusal. A run killed with SIGKILL at any point resumes to exactly the
numbers of an uninterrupted run. A full disk is one line naming the path, and the previous
checkpoint stays intact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tinyproto import Config, ConfigError, run, store
from tinyproto.cli import main
from tinyproto.store import RunFolderError, SkippedRunWarning, load_runs
from tinyproto.sweep import sweep

BASE = dict(
    algorithm="tinyproto-fp",
    profile="smoke",
    dataset="synthetic",
    max_samples=400,
    num_clients=4,
    rounds=3,
    feature_dim=20,
    checkpoint_every=1,
)


def _cfg(**kw) -> Config:
    return Config(**{**BASE, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run, copied fresh for each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    res = run(_cfg(), root=root, progress=False)
    return res.run_dir


@pytest.fixture
def folder(finished, tmp_path):
    dest = tmp_path / "runs" / finished.name
    shutil.copytree(finished, dest)
    return dest


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


# (case id, damage(folder), the file the message must name, a phrase it must contain)
DAMAGES = [
    ("config-truncated", lambda f: _truncate(f / "config.json"), "config.json", "unreadable"),
    ("config-empty", lambda f: (f / "config.json").write_text(""), "config.json", "unreadable"),
    (
        "config-of-another-run",
        lambda f: _edit_json(f / "config.json", seed=5),
        "config.json",
        "holds the config of run",
    ),
    (
        "config-unknown-field",
        lambda f: _edit_json(f / "config.json", num_client=3),
        "config.json",
        "not a valid config",
    ),
    (
        "config-bad-value",
        lambda f: _edit_json(f / "config.json", lr="fast"),
        "config.json",
        "invalid lr",
    ),
    ("metrics-truncated", lambda f: _truncate(f / "metrics.csv", 0.6), "metrics.csv", "rows"),
    ("metrics-empty", lambda f: (f / "metrics.csv").write_text(""), "metrics.csv", "unreadable"),
    (
        "metrics-binary",
        lambda f: (f / "metrics.csv").write_bytes(os.urandom(300)),
        "metrics.csv",
        "metrics.csv",
    ),
    (
        "metrics-column-dropped",
        lambda f: (
            pd.read_csv(f / "metrics.csv")
            .drop(columns="test_acc")
            .to_csv(f / "metrics.csv", index=False)
        ),
        "metrics.csv",
        "lacks column",
    ),
    (
        "metrics-nan-loss",
        lambda f: (
            pd.read_csv(f / "metrics.csv")
            .assign(train_loss=np.nan)
            .to_csv(f / "metrics.csv", index=False)
        ),
        "metrics.csv",
        "non-numeric",
    ),
    ("summary-truncated", lambda f: _truncate(f / "summary.json"), "summary.json", "unreadable"),
    (
        "summary-best-acc-edited",
        lambda f: _edit_json(f / "summary.json", best_acc=0.999),
        "summary.json",
        "best_acc",
    ),
    (
        "summary-other-run-id",
        lambda f: _edit_json(f / "summary.json", run_id="fedproto-fmnist-0000000000"),
        "summary.json",
        "run_id",
    ),
    ("summary-not-object", lambda f: (f / "summary.json").write_text("[1, 2]"), "summary.json", ""),
    (
        "prototypes-truncated",
        lambda f: _truncate(f / "prototypes.npz"),
        "prototypes.npz",
        "unreadable",
    ),
]


@pytest.mark.parametrize(
    "damage,name,phrase", [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES]
)
def test_reuse_refuses_a_damaged_folder_and_changes_nothing(folder, damage, name, phrase):
    damage(folder)
    before = _snapshot(folder)
    with pytest.raises(RunFolderError) as e:
        run(_cfg(), root=folder.parent, reuse=True, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and phrase in msg and "--restart" in msg, msg
    assert _snapshot(folder) == before
    # load_runs names it and skips it; sweep refuses it too
    with pytest.warns(SkippedRunWarning, match=folder.name):
        df = load_runs(folder.parent)
    assert df.empty and folder.name in df.attrs["skipped"]


def test_sweep_refuses_a_damaged_run_and_restart_recovers(folder):
    _edit_json(folder / "summary.json", last_acc=0.5)
    with pytest.raises(RunFolderError, match="summary.json: last_acc"):
        sweep([_cfg()], root=folder.parent, progress=False)
    res = run(_cfg(), root=folder.parent, restart=True, progress=False)
    assert store.verify_run(res.run_dir)["summary"]["best_acc"] == res.best_acc


def test_cli_reuse_of_a_damaged_folder_exits_2(folder, capsys):
    _truncate(folder / "summary.json")
    argv = ["run", "--algorithm", "tinyproto-fp", "--profile", "smoke", "--dataset", "synthetic"]
    argv += ["--max-samples", "400", "--num-clients", "4", "--rounds", "3", "--feature-dim", "20"]
    argv += ["--checkpoint-every", "1", "--results", str(folder.parent)]
    code = main([*argv, "--reuse", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "summary.json" in err and "--restart" in err


@pytest.fixture
def stopped(tmp_path):
    """A run stopped (checkpointed) after 2 of 4 rounds."""
    cfg = _cfg(rounds=4)
    part = run(cfg, root=tmp_path, stop_after=2, progress=False)
    return cfg, part.run_dir


def test_checkpoint_of_another_config_is_refused(stopped, tmp_path):
    cfg, folder = stopped
    other = run(_cfg(rounds=4, seed=1), root=tmp_path / "o", stop_after=1, progress=False)
    shutil.copy(other.run_dir / "checkpoint.pt", folder / "checkpoint.pt")
    before = _snapshot(folder)
    with pytest.raises(RunFolderError, match="checkpoint.pt: checkpoint of run .*not of this"):
        run(cfg, root=tmp_path, resume=True, progress=False)
    assert _snapshot(folder) == before


def test_truncated_checkpoint_is_refused(stopped, tmp_path):
    cfg, folder = stopped
    _truncate(folder / "checkpoint.pt")
    with pytest.raises(RunFolderError, match=r"checkpoint.pt: unreadable.*--restart"):
        run(cfg, root=tmp_path, resume=True, progress=False)


def test_checkpoint_without_format_version_is_refused(stopped, tmp_path):
    cfg, folder = stopped
    torch.save({"round": 2, "rows": []}, folder / "checkpoint.pt")
    with pytest.raises(RunFolderError, match="no format version"):
        run(cfg, root=tmp_path, resume=True, progress=False)


def test_checkpoint_is_not_overwritten_without_resume_or_restart(stopped, tmp_path):
    cfg, folder = stopped
    before = _snapshot(folder)
    with pytest.raises(RunFolderError, match="--resume to continue it or --restart"):
        run(cfg, root=tmp_path, progress=False)
    assert _snapshot(folder) == before
    res = run(cfg, root=tmp_path, restart=True, progress=False)
    assert len(res.metrics) == 4 and not (folder / "checkpoint.pt").exists()


def test_run_folder_that_is_a_file_is_refused(tmp_path):
    cfg = _cfg()
    (tmp_path / cfg.run_id()).write_text("x")
    with pytest.raises(RunFolderError, match="a file where the run folder should be"):
        run(cfg, root=tmp_path, progress=False)


def test_leftover_tmp_files_are_cleaned(stopped, tmp_path):
    cfg, folder = stopped
    (folder / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (folder / "metrics.csv.x.tmp").write_text("round\n1\n")
    (folder / "notes.tmp").write_text("not ours: kept")
    run(cfg, root=tmp_path, resume=True, progress=False)
    assert sorted(p.name for p in folder.glob("*.tmp")) == ["notes.tmp"]


def test_load_runs_keeps_profiles_apart(tmp_path):
    a = run(_cfg(), root=tmp_path, progress=False)
    b = run(_cfg(profile="quick", rounds=1), root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="several profiles.*profile="):
        load_runs(tmp_path)
    with pytest.warns(SkippedRunWarning, match="profile quick, not smoke"):
        assert list(load_runs(tmp_path, profile="smoke")["run_id"]) == [a.run_dir.name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRunWarning)
        assert list(load_runs(tmp_path, profile="quick")["run_id"]) == [b.run_dir.name]
    assert len(load_runs(tmp_path, profile="all")) == 2


def test_one_place_decides_where_runs_go(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    assert store.runs_root("quick") == tmp_path / "runs"
    assert store.runs_root("smoke") == tmp_path / "smoke" / "runs"
    res = run(_cfg(rounds=1), progress=False)  # API, no root: the profile's folder
    assert res.run_dir.parent == tmp_path / "smoke" / "runs"
    assert not (tmp_path / "runs").exists()  # never among the quick runs
    argv = ["run", "--profile", "smoke", "--dataset", "synthetic", "--rounds", "1", "--seed", "1"]
    assert main([*argv, "--max-samples", "400", "--feature-dim", "20", "--no-progress"]) == 0
    assert not (tmp_path / "runs").exists()
    from tinyproto.sweep import outputs

    assert outputs("smoke").runs == tmp_path / "smoke" / "runs"
    assert len(load_runs(profile="smoke")) == 2


def test_committed_runs_are_consistent():
    """Every committed run folder verifies: config hashes to its id, summary matches metrics."""
    root = store.project_root() / "results"
    folders = [p.parent for p in root.glob("**/runs/*/summary.json")]
    assert folders, "no committed runs found"
    for f in folders:
        store.verify_run(f)


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A tmpfs mount whose size the test chooses; skipped where mounting is not allowed."""
    mounts = []

    def make(size_bytes: int):
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        pages = max(1, -(-size_bytes // 4096))
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={pages * 4096}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounts.append(point)
        return point

    yield make
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, tiny_disk, capsys):
    cfg = _cfg(rounds=4)
    probe = run(cfg, root=tmp_path / "probe", stop_after=1, progress=False).run_dir
    ckpt = (probe / "checkpoint.pt").stat().st_size
    cfg_bytes = (probe / "config.json").stat().st_size
    # room for config.json and one checkpoint, not for the second one beside it
    disk = tiny_disk(cfg_bytes + ckpt + ckpt // 2 + 8192)
    with pytest.raises(OSError) as e:
        run(cfg, root=disk, progress=False)
    assert e.value.errno == 28 and "checkpoint.pt" in str(e.value)
    folder = disk / cfg.run_id()
    ck = store.load_checkpoint(folder / "checkpoint.pt", cfg)
    assert ck["round"] == 1  # the previous checkpoint, intact
    assert not list(folder.glob("*.tmp"))
    # the CLI: exit 2, one line naming the path
    disk2 = tiny_disk(cfg_bytes + ckpt + ckpt // 2 + 8192)
    argv = ["run", "--algorithm", "tinyproto-fp", "--profile", "smoke", "--dataset", "synthetic"]
    argv += ["--max-samples", "400", "--num-clients", "4", "--rounds", "4", "--feature-dim", "20"]
    argv += ["--checkpoint-every", "1", "--results", str(disk2)]
    code = main([*argv, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "checkpoint.pt" in err and "No space left on device" in err and "free some space" in err


# -- kill -9 and resume -------------------------------------------------------------------------

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    point, root, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    import tinyproto.runtime.step as engine  # where every runtime evaluates a client
    from tinyproto import Config, run

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "mid-round":  # during round 3's evaluation, after round 2's checkpoint
        calls = [0]
        real_eval = engine.evaluate

        def evaluate(*a, **k):
            calls[0] += 1
            if calls[0] == 2 * 4 + 2:
                die()
            return real_eval(*a, **k)

        engine.evaluate = evaluate
    else:  # inside an atomic write: the temporary file is complete, the rename never happens
        target = {"mid-checkpoint": ("checkpoint.pt", 2), "final-write": ("summary.json", 1)}
        name, nth = target[point]
        seen = [0]
        real_replace = os.replace

        def replace(src, dst):
            if os.path.basename(dst) == name:
                seen[0] += 1
                if seen[0] == nth:
                    die()
            return real_replace(src, dst)

        os.replace = replace
    cfg = Config(**eval(sys.argv[4]))
    run(cfg, root=root, progress=False)
    print("NOT KILLED")
    """
)

# TinyProto-FT: its server trains, so a resume must restore server state too
KILL_CFG = dict(BASE, algorithm="tinyproto-ft", rounds=4, server_epochs=2)


def _comparable(folder):
    m = pd.read_csv(folder / "metrics.csv").drop(columns="seconds")
    c = pd.read_csv(folder / "clients.csv")
    s = json.loads((folder / "summary.json").read_text())
    for k in ("wall_seconds", "seconds_per_round"):
        s.pop(k)
    with np.load(folder / "prototypes.npz") as z:
        p = {k: z[k] for k in z.files}
    return m, c, s, p


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    return _comparable(run(Config(**KILL_CFG), root=root, progress=False).run_dir)


@pytest.mark.parametrize("point", ["mid-round", "mid-checkpoint", "final-write"])
def test_kill_9_then_resume_equals_uninterrupted(point, tmp_path, uninterrupted):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    threads = str(torch.get_num_threads())
    p = subprocess.run(
        [sys.executable, str(driver), point, str(tmp_path), threads, repr(KILL_CFG)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr[-2000:])
    folder = tmp_path / Config(**KILL_CFG).run_id()
    assert not (folder / "summary.json").exists()
    if point != "mid-round":
        assert list(folder.glob("*.tmp")), "the kill should have left a temporary file"
    res = run(Config(**KILL_CFG), root=tmp_path, resume=True, progress=False)
    assert not list(folder.glob("*.tmp")) and not (folder / "checkpoint.pt").exists()
    m, c, s, protos = _comparable(res.run_dir)
    m0, c0, s0, p0 = uninterrupted
    pd.testing.assert_frame_equal(m, m0, check_exact=True)
    pd.testing.assert_frame_equal(c, c0, check_exact=True)
    assert s == s0
    assert protos.keys() == p0.keys()
    for k in protos:
        np.testing.assert_array_equal(protos[k], p0[k])


# A tiny FedProto run on synthetic data, and a client whose upload turns non-finite in one round
# (a divergence, as the server meets it): shared by the tests of runs that end with an error.
DIVERGING_RUN = dict(
    algorithm="fedproto",
    profile="smoke",
    dataset="synthetic",
    num_classes=4,
    num_clients=3,
    alpha=0.5,
    max_samples=120,
    feature_dim=8,
    save_prototypes=False,
)


def diverge(monkeypatch, rnd: int, cid: int, value: float = float("nan")) -> None:
    """Client ``cid`` uploads its prototypes times ``value`` in round ``rnd`` (0-based)."""
    from tinyproto.algorithms.fedproto import FedProto

    real = FedProto.client_round

    def diverging(self, state, data, r, gen):
        msg, loss = real(self, state, data, r, gen)
        if r == rnd and state.cid == cid:
            msg.arrays["protos"] = msg["protos"] * value
        return msg, loss

    monkeypatch.setattr(FedProto, "client_round", diverging)


def test_a_refused_message_names_the_round_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    """A client whose prototypes turn NaN mid-run (a divergence) ends the run with a one-line
    error naming the round (1-based, as metrics.csv counts) and the sender; the checkpoint of
    the rounds before it is kept, so nothing computed is lost."""
    from tinyproto.comm.message import MessageError

    cfg = Config(**DIVERGING_RUN, rounds=4, checkpoint_every=1)
    diverge(monkeypatch, rnd=2, cid=1)
    with pytest.raises(MessageError) as e:
        run(cfg, root=tmp_path, progress=False)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith("round 3 of 4: message from client 1:"), text
    assert "'protos'" in text and "NaN or inf" in text
    ck = torch.load(tmp_path / cfg.run_id() / "checkpoint.pt", weights_only=False)
    assert ck["round"] == 2  # rounds 1 and 2 are kept


def test_a_failed_run_keeps_the_rounds_since_its_checkpoint(tmp_path, monkeypatch):
    """Rounds computed after the last checkpoint are not lost when a run ends with an error:
    failed-metrics.csv holds every round before the failing one, the scorecard's words for it
    name their best accuracy, and a later run that finishes removes the stale records."""
    import pandas as pd

    from tinyproto.comm.message import MessageError
    from tinyproto.scorecard import Runs, arm
    from tinyproto.store import FAILED_METRICS
    from tinyproto.store.failures import before_failure, failure, record_failure

    overrides = {k: v for k, v in DIVERGING_RUN.items() if k not in ("algorithm", "profile")}
    fedproto = arm("FedProto", "fedproto", **overrides, rounds=5, checkpoint_every=2)
    assert fedproto.config("smoke", 0) == Config(**DIVERGING_RUN, rounds=5, checkpoint_every=2)
    cfg = fedproto.config("smoke", 0)
    diverge(monkeypatch, rnd=3, cid=2, value=float("inf"))
    with pytest.raises(MessageError, match="^round 4 of 5: message from client 2:"):
        run(cfg, root=tmp_path, progress=False)
    folder = tmp_path / cfg.run_id()
    kept = pd.read_csv(folder / FAILED_METRICS)
    assert kept["round"].tolist() == [1, 2, 3]  # round 3 is in no checkpoint (every 2 rounds)
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["round"] == 2
    record_failure(folder, "round 4 of 5: message from client 2: inf")  # as sweep does
    best = 100 * kept["test_acc"].max()
    assert before_failure(cfg, tmp_path) == f"best {best:.2f} % in rounds 1-3"
    runs = Runs("smoke", tmp_path)
    m = runs.arm(fedproto)
    assert not m.last and runs.failed["FedProto"] == [
        f"seed 0: round 4 of 5: message from client 2: inf; best {best:.2f} % in rounds 1-3"
    ]
    (folder / FAILED_METRICS).write_text("round,test_acc\n1,oops\n")
    assert before_failure(cfg, tmp_path) is None  # a damaged record is ignored, not raised

    monkeypatch.undo()  # no divergence any more
    run(cfg, root=tmp_path, progress=False, resume=True)  # finishes: the records are stale
    assert not (folder / FAILED_METRICS).exists() and not (folder / "failed.json").exists()
    assert failure(cfg, tmp_path) is None and before_failure(cfg, tmp_path) is None


def test_a_failed_record_of_rounds_does_not_hide_the_runs_error(tmp_path, monkeypatch):
    """If keeping the rounds fails too (a full disk), the run's own one-line error is raised."""
    import tinyproto.runtime.engine as engine_module
    from tinyproto.comm.message import MessageError

    def full_disk(folder, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine_module, "record_rows", full_disk)
    diverge(monkeypatch, rnd=1, cid=0)
    cfg = Config(**DIVERGING_RUN, rounds=3)
    with pytest.raises(MessageError, match="^round 2 of 3: message from client 0:"):
        run(cfg, root=tmp_path, progress=False)


@pytest.mark.parametrize("algorithm", ["tinyproto-fp", "fedtgp"])
def test_a_client_never_sampled_still_gives_a_complete_verified_run(algorithm, tmp_path):
    """Regression: with join_ratio 0.01 of 4 clients one client trains per round, so some never
    train; saving the prototypes crashed on their missing local prototypes after every round was
    computed (metrics.csv left without summary.json). Their row in prototypes.npz is empty."""
    cfg = Config(
        algorithm=algorithm, profile="smoke", dataset="synthetic", num_classes=6, num_clients=4,
        max_samples=240, feature_dim=16, rounds=2, join_ratio=0.01,
        **({"server_epochs": 1} if algorithm == "fedtgp" else {}),
    )
    res = run(cfg, root=tmp_path, progress=False)
    trained = {int(c) for cs in res.metrics["clients"] for c in str(cs).split()}
    assert len(trained) < 4  # some client never trained: the case under test
    r = store.verify_run(res.run_dir)
    assert r["summary"]["rounds"] == 2
    with np.load(res.run_dir / "prototypes.npz") as z:
        holds = z["holds"]
        for cid in set(range(4)) - trained:
            assert not holds[cid].any() and not z["local"][cid].any()
        assert all(holds[cid].any() for cid in trained)


def test_a_finished_run_is_reused_not_recomputed_unless_restarted(tmp_path, capsys):
    """Rerunning a finished config (a README command on a committed run) changes no file: the
    run is verified and returned ("reused"); --restart computes it again; --resume without a
    checkpoint says it started fresh. The CLI says which."""
    cfg = Config(
        algorithm="fedproto", profile="smoke", dataset="synthetic", num_classes=6, num_clients=3,
        max_samples=180, feature_dim=16, rounds=2,
    )
    first = run(cfg, root=tmp_path, progress=False)
    assert first.origin == "computed"
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.run_dir.iterdir()}
    again = run(cfg, root=tmp_path, progress=False)
    assert again.origin == "reused" and again.summary == first.summary
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.run_dir.iterdir()} == files
    flags = ["run", "--algorithm", "fedproto", "--profile", "smoke", "--dataset", "synthetic",
             "--num-classes", "6", "--num-clients", "3", "--max-samples", "180",
             "--feature-dim", "16", "--rounds", "2", "--no-progress", "--results", str(tmp_path)]
    assert main(flags) == 0
    assert "state    reused the finished run" in capsys.readouterr().out
    assert main([*flags, "--restart"]) == 0
    assert "state    restarted" in capsys.readouterr().out
    redone = store.verify_run(first.run_dir)
    assert redone["summary"]["best_acc"] == first.summary["best_acc"]  # same numbers, recomputed
    assert main([*flags[:-1], str(tmp_path / "other"), "--resume"]) == 0
    assert "state    started fresh (--resume found no checkpoint)" in capsys.readouterr().out
