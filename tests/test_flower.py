"""tinyproto on Flower, in this process: the run config, our messages as Flower records, and the
ServerApp and ClientApp exchanging real Flower messages (serialised and parsed back by Flower's
own code) through an in-process grid, against the in-process engine.

The same apps on a real local deployment (a SuperLink and SuperNodes as processes, a SuperNode
killed mid-run) are tests/test_flower_deploy.py (``make test-flower``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Error, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.common.config import parse_config_args
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity

import tinyproto
from tinyproto import Config, store
from tinyproto.comm import Message, MessageError
from tinyproto.config import ALGORITHMS, PARAMS, ConfigError
from tinyproto.flower import client_app, records, server_app, settings

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["round", "train_loss", "upload_floats", "download_floats", "upload_bytes"]
COLUMNS += ["download_bytes", "test_acc"]
HANDLERS = {"query": client_app.hello, "train": client_app.train, "evaluate": client_app.evaluate}


@pytest.fixture(autouse=True)
def task_identity():
    """Flower stamps new messages with the task's identity, which its runtime sets."""
    old = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = old


def config(algorithm: str = "fedproto", **kw) -> Config:
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=6,
        num_clients=3,
        alpha=0.3,
        rounds=2,
        max_samples=240,
        feature_dim=16,
        device="cpu",
        save_prototypes=False,
    )
    if algorithm in ("fedtgp", "tinyproto-ft"):
        base["server_epochs"] = 1
    if algorithm == "fedkd":  # low thresholds: some matrices travel as SVD factors
        base.update(fedkd_t_start=0.5, fedkd_t_end=0.7)
    return Config(**{**base, **kw})


def through_wire(msg: FlowerMessage) -> FlowerMessage:
    """``msg`` as the other side gets it: Flower's objects serialised, then inflated back."""
    objs = get_all_nested_objects(msg)
    back = inflate_object_from_contents(msg.object_id, {k: o.deflate() for k, o in objs.items()})
    back.metadata.__dict__["_message_id"] = msg.object_id
    return back


class Loopback:
    """A Flower Grid in this process: each pushed message goes through Flower's serialisation
    to the ClientApp handler of its node (with that node's Context), and the reply back.

    ``silent``: {client: round from which it never answers}; ``offline``: the same, but its
    node also leaves; ``tamper(client, reply)``: may change a reply on its way.
    """

    def __init__(self, run_config: dict, n: int, silent=None, offline=None, tamper=None):
        self.contexts = {
            100 + i: Context(
                1, 100 + i, {"partition-id": i, "num-partitions": n}, RecordDict(), run_config
            )
            for i in range(n)
        }
        self.silent, self.offline = dict(silent or {}), dict(offline or {})
        self.tamper = tamper
        self.replies: dict[str, FlowerMessage] = {}
        self.round = 0

    def get_node_ids(self):
        return [v for v in self.contexts if self.offline.get(v - 100, 1e9) > self.round]

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
            ids.append(msg.metadata.message_id)
            got = through_wire(msg)
            kind, node = got.metadata.message_type, got.metadata.dst_node_id
            cid = node - 100
            if kind != "query":
                self.round = int(got.metadata.group_id)
            if min(self.silent.get(cid, 1e9), self.offline.get(cid, 1e9)) <= self.round:
                continue
            try:
                reply = HANDLERS[kind](got, self.contexts[node])
            except Exception as e:  # as flwr-clientapp reports an exception
                reply = FlowerMessage(Error(0, f"{type(e)}:<'{e}'>"), reply_to=got)
            if self.tamper is not None and reply.has_content():
                self.tamper(cid, kind, reply.content)
            reply.metadata.__dict__["_message_id"] = reply.object_id
            self.replies[msg.metadata.message_id] = through_wire(reply)
        return ids

    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


def run_flower(cfg: Config, folder: Path, grid_kw=None, **runtime) -> Path:
    runtime = {"round_timeout": 60.0, "connect_timeout": 5.0, **runtime}
    rc = {**settings.DEFAULTS, **settings.to_run_config(cfg, results_dir=folder, **runtime)}
    return server_app.serve(Loopback(rc, cfg.num_clients, **(grid_kw or {})), settings.parse(rc))


def metrics(run_dir: Path, table: str = "metrics") -> pd.DataFrame:
    """A Flower run's table at full precision (rounds.json; metrics.csv keeps 6 digits)."""
    return pd.DataFrame(json.loads((run_dir / server_app.EXACT).read_text())[table])


# -- the ServerApp and ClientApp against the in-process engine ---------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_gives_the_engines_numbers_over_flower_messages(algorithm, tmp_path):
    cfg = config(algorithm)
    ref = tinyproto.run(cfg, root=tmp_path / "engine", progress=False)
    out = run_flower(cfg, tmp_path / "flower")
    got = metrics(out)
    pd.testing.assert_frame_equal(got[COLUMNS], ref.metrics[COLUMNS], check_exact=True)
    ref_clients = ref.clients[["round", "client", "test_acc", "train_loss"]]
    got_clients = metrics(out, "clients")[ref_clients.columns]
    pd.testing.assert_frame_equal(got_clients, ref_clients, check_exact=True, check_dtype=False)
    assert list(got["clients"].astype(str)) == ["0 1 2"] * cfg.rounds
    assert (got["failed"] == "").all() and (got["dropped"] == "").all()
    summary = store.verify_run(out)["summary"]
    assert summary["runtime"] == "flower" and summary["best_acc"] == ref.best_acc
    assert summary["expected_floats_per_round"] == ref.summary["expected_floats_per_round"]
    sent = got["upload_bytes"] + got["download_bytes"]
    wire = got["wire_upload_bytes"] + got["wire_download_bytes"]
    assert (wire > sent).all() and (got["message_upload_bytes"] >= got["upload_bytes"]).all()


def test_partial_participation_picks_the_same_clients_on_flower(tmp_path):
    cfg = config(num_clients=4, rounds=3, join_ratio=0.75, drop_rate=0.3, max_samples=320)
    ref = tinyproto.run(cfg, root=tmp_path / "engine", progress=False)
    got = metrics(run_flower(cfg, tmp_path / "flower"))
    cols = [*COLUMNS, "clients", "dropped"]
    pd.testing.assert_frame_equal(
        got[cols], ref.metrics[cols].astype(got[cols].dtypes), check_exact=True
    )
    assert (got["clients"].astype(str) != "0 1 2 3").any()  # the draw left someone out


def test_a_silent_client_is_left_out_after_the_timeout_and_the_run_goes_on(tmp_path):
    cfg = config(rounds=3)
    t0 = time.monotonic()
    out = run_flower(cfg, tmp_path, grid_kw={"silent": {2: 2}}, round_timeout=1.0)
    assert time.monotonic() - t0 < 60  # two timeouts of 1 s, not a hang
    got = metrics(out)
    assert list(got["clients"].astype(str)) == ["0 1 2", "0 1", "0 1"]
    assert list(got["failed"].fillna("").astype(str)) == ["", "2", "2"]
    failures = store.verify_run(out)["summary"]["failures"]
    assert failures[0] == {
        "round": 2,
        "client": 2,
        "why": "train: no reply within round-timeout=1 s",
    }
    assert "busy" in failures[-1]["why"] and failures[-1]["round"] == 3
    assert got["test_acc"].notna().all()


def test_a_client_that_goes_offline_is_left_out_without_waiting(tmp_path):
    cfg = config(rounds=3)
    t0 = time.monotonic()
    out = run_flower(cfg, tmp_path, grid_kw={"offline": {1: 2}}, round_timeout=600.0)
    assert time.monotonic() - t0 < 120  # nobody waited the 600 s timeout
    got = metrics(out)
    assert list(got["clients"].astype(str)) == ["0 1 2", "0 2", "0 2"]
    assert list(got["failed"].fillna("").astype(str)) == ["", "1", "1"]


def test_a_refused_upload_or_a_raising_client_is_recorded_and_left_out(tmp_path):
    def tamper(cid, kind, content):
        if cid == 0 and kind == "train":
            content["arrays"]["protos"] = Array(content["arrays"]["protos"].numpy() * float("nan"))

    cfg = config(rounds=2)
    out = run_flower(cfg, tmp_path, grid_kw={"tamper": tamper})
    got = metrics(out)
    assert list(got["clients"].astype(str)) == ["1 2", "1 2"]
    failures = store.verify_run(out)["summary"]["failures"]
    assert "refused" in failures[0]["why"] and "client 0" in failures[0]["why"]
    assert "NaN" in failures[0]["why"] or "finite" in failures[0]["why"]


@pytest.mark.parametrize(
    "kind, key, value, phrase",
    [
        ("train", "num-train", -5, "holds"),
        ("train", "loss", float("nan"), "finite"),
        ("train", "loss", -1.0, "finite"),
        ("evaluate", "num-test", 10**6, "holds"),
        ("evaluate", "correct", 10**6, "outside"),
        ("evaluate", "correct", -1, "outside"),
    ],
)
def test_an_impossible_report_is_refused_and_the_run_stays_verifiable(
    kind, key, value, phrase, tmp_path
):
    """Regression: a report with num-train < 0, a NaN loss or correct > num-test was accepted
    (test_acc 21739.6) and the run folder then failed its own verification. The server knows
    each client's partition: the report is refused, the client left out of that exchange."""
    from flwr.app import MetricRecord

    def tamper(cid, k, content):
        if cid == 1 and k == kind:
            rec = dict(content[records.REPORT])
            rec[key] = value
            content[records.REPORT] = MetricRecord(rec)

    cfg = config(rounds=2)
    out = run_flower(cfg, tmp_path, grid_kw={"tamper": tamper})
    r = store.verify_run(out)
    assert (r["metrics"]["test_acc"] <= 1).all()
    failures = r["summary"]["failures"]
    assert failures and all(f["client"] == 1 for f in failures)
    assert all(phrase in f["why"] and key in f["why"] for f in failures)


def test_a_degraded_run_never_replaces_a_clean_one_and_says_so(tmp_path):
    """Regression: a run with a failed client wrote into the clean run's folder (keyed by
    config only) with its accuracy over the surviving clients. Now: a finished clean run is
    reused; a degraded run goes to <results-dir>-degraded/ with summary["degraded"] naming who
    was missing, even with restart=true, and the clean folder is left as it was."""
    cfg = config(rounds=2)
    clean = run_flower(cfg, tmp_path / "runs")
    before = {p.name: p.read_bytes() for p in clean.iterdir()}
    assert store.verify_run(clean)["summary"]["degraded"] is None
    again = run_flower(cfg, tmp_path / "runs", grid_kw={"offline": {1: 1}})  # reused, not rerun
    assert again == clean and {p.name: p.read_bytes() for p in clean.iterdir()} == before
    bad = run_flower(cfg, tmp_path / "runs", grid_kw={"offline": {1: 1}}, restart=True)
    assert bad == tmp_path / "runs-degraded" / cfg.run_id() and bad != clean
    assert {p.name: p.read_bytes() for p in clean.iterdir()} == before
    d = store.verify_run(bad)["summary"]["degraded"]
    assert d["failed"] == [1] and d["absent"] == [] and d["clients_throughout"] == 2
    listed = store.load_runs(tmp_path / "runs-degraded", profile="smoke")
    assert listed["degraded"].tolist() == [True] and listed["missing_clients"].tolist() == ["1"]
    assert not store.load_runs(tmp_path / "runs", profile="smoke")["degraded"].any()
    fresh = run_flower(config(rounds=2, seed=1), tmp_path / "other", grid_kw={"offline": {2: 2}})
    assert fresh.parent == tmp_path / "other-degraded"
    assert not (tmp_path / "other" / config(rounds=2, seed=1).run_id()).exists()


def test_a_resumed_server_ends_with_the_numbers_of_an_uninterrupted_run(tmp_path):
    cfg = config(rounds=3, checkpoint_every=1)
    full = metrics(run_flower(cfg, tmp_path / "full"))
    part = run_flower(cfg, tmp_path / "split", stop_after=1)
    assert (part / store.CHECKPOINT).exists() and not (part / "metrics.csv").exists()
    saved = sorted(p.name for p in (part / "client-states" / cfg.run_id()).iterdir())
    assert saved == [f"client-{c}-round-1.pt" for c in range(3)]
    with pytest.raises(store.RunFolderError, match="resume=true"):
        run_flower(cfg, tmp_path / "split")
    resumed = metrics(run_flower(cfg, tmp_path / "split", resume=True))  # fresh SuperNodes
    pd.testing.assert_frame_equal(resumed[COLUMNS], full[COLUMNS], check_exact=True)
    assert not (part / "client-states").exists() and not (part / store.CHECKPOINT).exists()


def test_the_hello_refuses_misconfigured_nodes_with_one_line(tmp_path):
    cfg = config()
    rc = {
        **settings.DEFAULTS,
        **settings.to_run_config(cfg, results_dir=tmp_path, connect_timeout=1.0),
    }
    run = settings.parse(rc)
    grid = Loopback(rc, 3)
    grid.contexts[101].node_config["num-partitions"] = 4
    with pytest.raises(ConfigError, match=r"invalid num-partitions=4: the run has num-clients=3"):
        server_app.serve(grid, run)
    grid = Loopback(rc, 3)
    grid.contexts[102].node_config["partition-id"] = 0
    with pytest.raises(ConfigError, match="both hold partition-id 0"):
        server_app.serve(grid, run)
    grid = Loopback(rc, 3)
    other = settings.to_run_config(cfg.replace(partition_seed=2))
    grid.contexts[101] = Context(
        1, 101, grid.contexts[101].node_config, RecordDict(), {**rc, **other}
    )
    with pytest.raises(ConfigError, match="holds other data than client 1"):
        server_app.serve(grid, run)


# -- the run config -----------------------------------------------------------------------------


def test_the_app_pyproject_holds_every_run_option_with_its_default():
    text = (ROOT / settings.APP_DIR / "pyproject.toml").read_text()
    assert text == settings.app_pyproject(), "run: python -m tinyproto.flower.settings"
    app = tomllib.loads(text)["tool"]["flwr"]["app"]
    assert app["config"] == settings.DEFAULTS
    assert app["components"]["serverapp"] == "tinyproto.flower.server_app:app"
    flags = {n.replace("_", "-") for n, p in PARAMS.items() if p.cli}
    assert flags <= set(app["config"]) and {"join-ratio", "drop-rate"} <= flags
    assert settings.parse(app["config"]).config == Config(profile="smoke")


@pytest.mark.parametrize(
    "kw",
    [
        dict(algorithm="tinyproto-fp", profile="smoke"),
        dict(algorithm="tinyproto-ft", profile="smoke", cps_dim=None, mu=0.5, aps_divide=True),
        dict(algorithm="tinyproto-fp", profile="quick", mu=None, data_dir="/data/my fmnist"),
        dict(algorithm="fml", profile="smoke", fml_alpha=0.25, lr=0.5, join_ratio=0.5),
        dict(algorithm="fedtgp", profile="paper", dataset="cifar100", max_samples=None),
    ],
)
def test_a_config_survives_the_run_config_and_flwr_run_s_parser(kw):
    cfg = Config(**kw)
    rc = settings.to_run_config(cfg, results_dir="/tmp/x", resume=True)
    assert settings.parse(rc).config == cfg and settings.parse(rc).resume is True
    text = settings.to_arg(rc)  # what `flwr run --run-config` receives
    again = settings.parse(parse_config_args([text]))
    assert again.config.run_id() == cfg.run_id() and again.results_dir == Path("/tmp/x")


def test_an_integer_where_a_float_is_meant_reads_as_the_command_line_reads_it():
    run = settings.parse(parse_config_args(["lr=1 join-ratio=1 rounds=4 cps-dim='none'"]))
    assert run.config.lr == 1.0 and isinstance(run.config.lr, float)
    assert run.config.run_id() == Config(profile="smoke", lr=1.0, rounds=4, cps_dim=None).run_id()


@pytest.mark.parametrize(
    "run_config, message",
    [
        ({"cps-dim": 0, "algorithm": "tinyproto-fp"}, r"invalid cps-dim=0: an integer"),
        ({"rounds": "3"}, r"invalid rounds='3': an integer"),
        ({"rounds": 2.0}, r"invalid rounds=2.0: an integer"),
        ({"join-ratio": 0}, r"invalid join-ratio=0.0: a finite number in \(0, 1\]"),
        ({"roundz": 3}, r"unknown run-config key\(s\) roundz"),
        ({"gamma": 2.0, "algorithm": "fedproto"}, r"invalid gamma=2.0: only feddistill use it"),
        ({"round-timeout": 0}, r"invalid round-timeout=0.0: a number > 0"),
        ({"resume": True, "restart": True}, r"invalid restart=true with resume=true"),
        ({"stop-after": -1}, r"invalid stop-after=-1: an integer >= 0"),
    ],
)
def test_a_bad_run_config_is_one_line_naming_the_key(run_config, message):
    with pytest.raises(ConfigError, match=message) as e:
        settings.parse(run_config)
    assert "\n" not in str(e.value)


def test_a_default_flower_run_goes_beside_the_profile_s_runs(monkeypatch, tmp_path):
    monkeypatch.delenv(store.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # a SuperLink's working directory is anywhere
    assert settings.default_results_dir("smoke") == ROOT / "results" / "smoke" / "flower-runs"
    assert settings.default_results_dir("quick") == ROOT / "results" / "flower-runs"
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert settings.default_results_dir("paper") == tmp_path / "elsewhere" / "paper" / "flower-runs"


# -- our messages as Flower records ------------------------------------------------------------


def test_a_message_crosses_flowers_serialisation_bit_for_bit():
    msg = Message(
        {
            "protos": torch.randn(3, 5),
            "classes": torch.tensor([0, 4, 7]),
            "m": torch.ones(2, dtype=torch.bool),
        },
        {"num_train": 12, "who": "x", "flags": [True, False]},
        {"energy": [0.5, 0.25], "rank": 3},
    )
    rd = records.to_records(msg, envelope={"round": 2}, report={"loss": 0.5})
    msg_out = FlowerMessage(rd, 5, "train", group_id="1")
    back = records.from_records(through_wire(msg_out).content, "client 0")
    assert back.to_bytes() == msg.to_bytes()
    assert records.envelope(rd) == {"round": 2} and records.report(rd, "c", {"loss": float}) == {
        "loss": 0.5
    }
    assert (
        records.from_records(records.to_records(Message()), "c").to_bytes() == Message().to_bytes()
    )
    msg_out.metadata.__dict__["_message_id"] = msg_out.object_id  # as Flower's push sets it
    wire = records.wire_bytes(msg_out)
    assert wire > msg.nbytes() + 3 * 128  # numpy headers and object ids at least
    assert wire == records.wire_bytes(through_wire(msg_out))  # the receiver counts the same


def test_records_no_message_could_have_made_are_refused_with_one_line():
    good = records.to_records(Message({"p": torch.zeros(2)}))
    bad = RecordDict({**good, "extra": good["arrays"]})
    with pytest.raises(MessageError, match=r"client 1: unexpected record\(s\) 'extra'"):
        records.from_records(bad, "client 1")
    with pytest.raises(MessageError, match="record 'config' is a ArrayRecord"):
        records.from_records(RecordDict({"config": good["arrays"]}), "client 1")
    with pytest.raises(MessageError, match="dtype bfloat16 has no numpy form"):
        records.to_records(Message({"p": torch.zeros(2, dtype=torch.bfloat16)}))
    with pytest.raises(MessageError, match="dtype complex64"):
        arr = ArrayRecord({"p": Array(torch.zeros(2, dtype=torch.complex64).numpy())})
        records.from_records(RecordDict({"arrays": arr}), "client 1")
    with pytest.raises(MessageError, match="report 'loss' missing or not float"):
        records.report(good, "client 1", {"loss": float})
    held = Array(np.zeros((2, 3), dtype=np.float32))  # declares int64, holds float32
    lying = Array(dtype="int64", shape=(2, 3), stype=held.stype, data=held.data)
    with pytest.raises(MessageError, match="field 'p' declares dtype int64, holds float32"):
        records.from_records(RecordDict({"arrays": ArrayRecord({"p": lying})}), "client 1")


# -- the launcher's refusals, and the core install without Flower ------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("rounds='3'", "invalid rounds='3': an integer"),
        ("rounds=", "invalid --run-config 'rounds=': 'rounds=' is not key=value"),
        ("rounds=3 lr", "'lr' is not key=value"),
        ("rounds=3x", "invalid --run-config 'rounds=3x': The provided configuration string"),
        ("colour='red'", "unknown run-config key(s) colour"),
    ],
)
def test_the_launcher_refuses_a_bad_run_config_before_starting_anything(text, message, capsys):
    from tinyproto.flower import deploy

    assert deploy.main(["--run-config", text]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_core_package_never_imports_flower():
    code = "import sys, tinyproto, tinyproto.runtime.engine, tinyproto.cli, tinyproto.sweep\n"
    code += "assert not [m for m in sys.modules if m.split('.')[0] in ('flwr', 'ray')]"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


# -- the local deployment's speed-ups: Flower's waits shortened, progress lines ----------------


def test_a_backoff_grows_to_its_cap_and_starts_over_after_activity():
    from tinyproto.flower.polling import Backoff

    b = Backoff(0.02, 0.1, 2.0)
    assert [b.next() for _ in range(5)] == [0.02, 0.04, 0.08, 0.1, 0.1]
    b.reset()
    assert b.next() == 0.02


def test_object_pulls_retry_soon_and_the_supernode_polls_soon_after_a_message():
    """The patches replace exactly the names flwr 1.42 has (checked on the real modules: an
    upgrade that renames them fails here instead of silently bringing back 1-3 s waits)."""
    import types

    from flwr.superlink.grid import http_grid
    from flwr.supernode import start_client_internal
    from flwr.supernode.runtime import run_clientapp

    from tinyproto.flower import polling

    assert callable(http_grid.pull_objects) and callable(run_clientapp.pull_task_input)
    assert callable(run_clientapp.pull_and_inflate_object_from_tree)
    for name in ("time", "_pull_and_store_message", "_push_messages", "pull_objects"):
        assert hasattr(start_client_internal, name), name

    def pull_objects(ids, fn, *, initial_backoff=1.0, backoff_cap=10.0):
        return initial_backoff, backoff_cap

    fake = types.ModuleType("fake_grid")
    fake.pull_objects = pull_objects
    assert polling.quick_pulls(fake) and polling.quick_pulls(fake)  # once, then kept
    assert fake.pull_objects([], None) == (polling.PULL_FIRST, polling.PULL_CAP)
    assert fake.pull_objects.func is pull_objects
    assert not polling.quick_pulls(types.ModuleType("no_pulls"))

    slept, messages = [], iter([None, None, 7, None])
    node = types.ModuleType("fake_supernode")
    node.time = types.ModuleType("time_proxy")
    node.time.sleep, node.time.monotonic = slept.append, (lambda: 5.0)
    node._pull_and_store_message = lambda: next(messages)
    node._push_messages = lambda: None
    node.pull_objects = pull_objects
    assert polling.patch_supernode(node)
    assert node.time.monotonic() == 5.0  # the rest of the time module as it was
    for _ in range(4):  # Flower's loop: pull; nothing -> sleep(3); a message -> push
        if node._pull_and_store_message() is None:
            node.time.sleep(3)
        else:
            node._push_messages()
    first, grow = polling.NODE_MIN, polling.NODE_GROWTH
    assert slept == pytest.approx([first, first * grow, first])  # reset by the message
    assert not polling.patch_supernode(types.ModuleType("not_a_supernode"))


def test_the_progress_line_of_a_round_names_the_round_its_accuracy_and_the_run_folder(capsys):
    from tinyproto.flower import deploy

    row = {"test_acc": 0.25, "seconds": 1.26, "failed": ""}
    line = server_app.progress_line(row, 2, 5, Path("/r/x"))
    assert line == "round 2/5: acc 0.2500, 1.3 s, failed -; run folder /r/x"
    row.update(test_acc=float("nan"), failed="3")
    assert server_app.progress_line(row, 3, 5, Path("/r/x")).startswith(
        "round 3/5: 1.3 s, failed 3"
    )
    for text in (f"INFO :      {line}", "WARNING :   clients without a SuperNode", "INFO : x"):
        deploy._progress(text)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"  {line}", "  WARNING: clients without a SuperNode"]
