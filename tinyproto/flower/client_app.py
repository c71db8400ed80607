"""The ClientApp: one tinyproto client per SuperNode, running the algorithm's client steps.

A SuperNode's node config names its client: ``partition-id`` i and ``num-partitions`` N
(Flower's simulation sets both; a deployment starts ``flower-supernode --node-config
"partition-id=i num-partitions=N"``). The node derives the run-wide constants from the run
config exactly as the in-process engine does (``runtime.setup``: the data, the Dirichlet
partition, masks, mu, the algorithm; then ``add_client`` for client i's model), so node
i holds client i's data and starts from client i's model. Between messages the client's state lives in
Flower's ``Context.state`` (its ``state_dict``, saved with torch): each message restores it,
runs one step and stores it back. What a process may keep between messages is the run's Setup
(data, partition, algorithm; built once per Flower run and config): a SuperNode of
``tinyproto.flower.deploy`` hands every message to one long-lived process (worker.py), Flower's
simulation to a few. Every handler computes with the engine's torch thread count
(``runtime.clients.run_numerics``: one intra-op thread on the CPU), so its numbers are the
engine's bit for bit whatever process it runs in.

    query     hello: check the node config, (re)start the client, reply with its partition
    train     round r: runtime.step.train_client, as every runtime runs it -> the
              upload (records.to_records) and a report {loss, num-train}
    evaluate  round r: receive the download (if one came), evaluate (if asked), save a
              checkpoint of the client's state (if asked), report {num-test, correct}

Client checkpoints (for a resumed server) go to ``<state-dir>/<run-id>/`` where ``state-dir``
is the node config's, else the folder the server names (its run folder, on one machine).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp

from tinyproto import store
from tinyproto.config import ConfigError
from tinyproto.flower import records, settings
from tinyproto.runtime import step
from tinyproto.runtime.clients import run_numerics
from tinyproto.runtime.environment import check_device
from tinyproto.runtime.setup import Setup, add_client, setup

STATE = "tinyproto-state"  # the Context.state record holding the client's state
KEEP = 2  # client checkpoints kept: the server's last checkpoint may be the one before
app = ClientApp()
_setups: dict[tuple, Setup] = {}  # (Flower run id, config) -> the run's Setup in this process


def partition_id(node_config, num_clients: int) -> int:
    """Client id from the node config; ConfigError unless it names one of ``num_clients``."""
    pid, parts = node_config.get("partition-id"), node_config.get("num-partitions")
    if type(pid) is not int or type(parts) is not int:
        raise ConfigError(
            f"invalid node config partition-id={pid!r} num-partitions={parts!r}: two integers "
            "(flower-supernode --node-config 'partition-id=0 num-partitions=4')"
        )
    if parts != num_clients:
        raise ConfigError(
            f"invalid num-partitions={parts}: the run has num-clients={num_clients} "
            "(one SuperNode per client)"
        )
    if not 0 <= pid < parts:
        raise ConfigError(f"invalid partition-id={pid}: an integer in [0, {parts})")
    return pid


@contextlib.contextmanager
def client(context: Context, run_config=None):
    """``with client(context) as (S, cid)``: this node's client in its initial state, the block
    computing with the engine's torch threads (run_numerics). S is the run's Setup (data,
    partition, algorithm; built once per process for a Flower run and config) with client
    ``partition-id``'s model and state built afresh (runtime.setup.add_client), as in a fresh
    process. ``run_config``: instead of the context's."""
    cfg = settings.parse(context.run_config if run_config is None else run_config).config
    cid = partition_id(context.node_config, cfg.num_clients)
    key = (context.run_id, settings.config_key(cfg))
    with run_numerics(check_device(cfg.device)):
        if key not in _setups:
            ready = _setups.pop((None, key[1]), None)  # prepare()d before the run, unused
            _setups.clear()  # one run's data in memory at a time
            _setups[key] = ready or setup(cfg, clients=())
        S = _setups[key]
        add_client(S, cid)
        yield S, cid


def prepare(run_config) -> None:
    """Build the Setup of ``run_config`` now (a worker before the run: the data are ready when
    the first message comes); the first message of a run with this config takes it over."""
    cfg = settings.parse(run_config).config
    key = settings.config_key(cfg)
    with run_numerics(check_device(cfg.device)):
        _setups.clear()
        _setups[(None, key)] = setup(cfg, clients=())


def dump(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    return buf.getvalue()


def load(S: Setup, cid: int, blob: bytes) -> None:
    sd = torch.load(io.BytesIO(blob), map_location=S.device, weights_only=True)
    S.states[cid].load_state_dict(sd)


def restore(S: Setup, cid: int, context: Context) -> None:
    rec = context.state.get(STATE)
    if not isinstance(rec, ConfigRecord) or rec.get("run-id") != S.config.run_id():
        raise RuntimeError(f"client {cid} holds no state of this run: it missed the hello")
    load(S, cid, rec["state"])


def keep(S: Setup, cid: int, context: Context) -> None:
    state = dump(S.states[cid])
    context.state[STATE] = ConfigRecord({"run-id": S.config.run_id(), "state": state})


def checkpoint_dir(context: Context, env: dict, run_id: str) -> Path:
    base = context.node_config.get("state-dir") or env.get("state-dir")
    if not isinstance(base, str) or not base:
        raise ConfigError("invalid state-dir: the node config or the server must name a folder")
    return Path(base).expanduser() / run_id


def checkpoint_path(folder: Path, cid: int, done: int) -> Path:
    return folder / f"client-{cid}-round-{done}.pt"


def reply(msg: FlowerMessage, content: RecordDict) -> FlowerMessage:
    return FlowerMessage(content, reply_to=msg)


@app.query()
def hello(msg: FlowerMessage, context: Context, run_config=None) -> FlowerMessage:
    """Start (or resume) this node's client; reply with who it is and what it holds."""
    with client(context, run_config) as (S, cid):
        return _hello(msg, context, S, cid)


def _hello(msg: FlowerMessage, context: Context, S: Setup, cid: int) -> FlowerMessage:
    env = records.envelope(msg.content)
    done = env.get("resume-round", 0)
    if done:  # a resumed server: the client's checkpoint of that round, not a fresh start
        path = checkpoint_path(checkpoint_dir(context, env, S.config.run_id()), cid, done)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint of client {cid} at round {done}")
        load(S, cid, path.read_bytes())
    keep(S, cid, context)
    d = S.data[cid]
    info = {"partition-id": cid, "num-train": d.num_train, "num-test": d.num_test}
    info["digest"] = settings.digest(S.fed, cid)
    return reply(msg, RecordDict({records.ENVELOPE: ConfigRecord(info)}))


@app.train()
def train(msg: FlowerMessage, context: Context, run_config=None) -> FlowerMessage:
    """One round of local training, as the engine runs it; the upload and the mean loss."""
    with client(context, run_config) as (S, cid):
        return _train(msg, context, S, cid)


def _train(msg: FlowerMessage, context: Context, S: Setup, cid: int) -> FlowerMessage:
    restore(S, cid, context)
    rnd = records.envelope(msg.content)["round"]
    trained = step.train_client(S.algo, S.states[cid], S.data[cid], S.config.seed, rnd, cid)
    keep(S, cid, context)
    report = {"loss": trained.loss, "num-train": S.data[cid].num_train}
    return reply(msg, records.to_records(trained.upload, report=report))


@app.evaluate()
def evaluate(msg: FlowerMessage, context: Context, run_config=None) -> FlowerMessage:
    """Receive the round's download, evaluate, and checkpoint, as the server asks."""
    with client(context, run_config) as (S, cid):
        return _evaluate(msg, context, S, cid)


def _evaluate(msg: FlowerMessage, context: Context, S: Setup, cid: int) -> FlowerMessage:
    restore(S, cid, context)
    env = records.envelope(msg.content)
    state, data = S.states[cid], S.data[cid]
    if env.get("download"):
        step.receive(S.algo, state, records.from_records(msg.content, "the server"))
    report = {"num-test": data.num_test}
    if env.get("evaluate"):
        report["correct"] = step.evaluate(S.algo, state, data)
    keep(S, cid, context)
    if env.get("checkpoint"):
        folder = checkpoint_dir(context, env, S.config.run_id())
        done = env["round"] + 1
        store.write_bytes(checkpoint_path(folder, cid, done), context.state[STATE]["state"])
        old = sorted(
            folder.glob(f"client-{cid}-round-*.pt"), key=lambda p: int(p.stem.split("-")[-1])
        )
        for p in old[:-KEEP]:
            p.unlink()
    return reply(msg, RecordDict({records.REPORT: MetricRecord(report)}))
