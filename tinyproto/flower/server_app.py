"""The ServerApp: the in-process engine's rounds over Flower, with the bytes on the wire.

``main(grid, context)`` parses the run config (settings.parse), then:

1. hello: waits for the SuperNodes (connect-timeout) and asks each who it is (a query message).
   Each must be a distinct partition-id holding exactly that client's data (the digest of its
   indices and labels must equal the server's own partition's); a duplicate, a foreign
   partition or a misconfigured node (its error names the key) stops the run with one line.
2. each round r, as engine.run: the sampled clients (tinyproto.config.participation) get a train
   message; their uploads (a simulated drop discards one), ordered by client id, go through
   the algorithm's server_round; every client with a download, and every client in an
   evaluation or checkpoint round, gets an evaluate message (the download and flags); test
   accuracy is total correct / total test samples of the clients that answered.
3. failures: a client that does not answer within round-timeout, whose SuperNode goes offline
   or that answers with an error, is left out of that exchange (link.Link) and recorded
   (metrics.csv ``failed``, summary.json ``failures``); so is an upload the algorithm refuses.
   The round goes on with the others; a round in which no client trains stops the run.
4. outputs, as engine.run writes them, in ``<results-dir>/<run-id>/``: config.json,
   metrics.csv (the engine's columns, who took part, bytes of our messages and on the wire),
   clients.csv, summary.json, and rounds.json (both tables at full precision); every checkpoint-every rounds a checkpoint (server state, rows)
   after every client saved its own state (client_app), so resume=true continues the run.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from flwr.app import ConfigRecord, Context, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from tinyproto import comm, store
from tinyproto.config import ConfigError
from tinyproto.config.participation import ids, participation
from tinyproto.flower import records, settings
from tinyproto.flower.link import Exchange, Link
from tinyproto.runtime import step
from tinyproto.runtime.clients import run_numerics
from tinyproto.runtime.environment import check_device, check_environment
from tinyproto.runtime.setup import Setup, setup
from tinyproto.store.summary import summarise_run

EXACT = "rounds.json"
STATES = "client-states"  # clients' checkpoints in the run folder (a node's state-dir overrides)
log = logging.getLogger("flwr")  # Flower's logger: its lines reach `flwr log`
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    serve(grid, settings.parse(context.run_config))


WRITTEN = "run written to "  # the server's last line: where this run's files are


_prepared: dict[str, Setup] = {}  # config key -> a Setup built before its run (prepare), unused


def prepare(run_config) -> None:
    """Build the Setup of ``run_config`` now (serverexec.py, before the run is submitted); the
    run with this config takes it over instead of building its own (the same call, so the
    same Setup)."""
    cfg = settings.parse(run_config).config
    with run_numerics(check_device(cfg.device)):
        _prepared.clear()
        _prepared[settings.config_key(cfg)] = setup(cfg, clients=())


def degraded_dir(run: settings.FlowerRun) -> Path:
    """Where a degraded run goes: ``<results-dir>-degraded/<run-id>/``, apart from clean runs,
    so that it never replaces one and nothing that lists clean runs sees it."""
    return store.run_dir(run.config, Path(f"{run.results_dir}-degraded"))


def serve(grid: Grid, run: settings.FlowerRun) -> Path:
    """Run ``run`` with the SuperNodes of ``grid``; returns the run folder.

    A finished clean run of the same config is reused, never recomputed (``restart=true``
    recomputes it). A run in which a client was absent or failed is *degraded*: its accuracy
    is over the clients that answered, so it is written to :func:`degraded_dir` with
    ``summary.json["degraded"]`` saying who was missing when, and the clean run folder keeps
    nothing of it."""
    cfg, out = run.config, run.run_dir
    ckpt = out / store.CHECKPOINT
    if out.is_dir() and not run.restart:
        if (out / "config.json").exists():
            store.read_config(out)
        if store.is_complete(out):
            store.verify_run(out)
            log.info("reused finished run %s (restart=true computes it again)", out)
            return out
        if ckpt.exists() and not run.resume:
            raise store.RunFolderError(
                f"{ckpt}: an unfinished run; set resume=true or restart=true"
            )
    device = check_environment(cfg, run.results_dir)
    with run_numerics(device):  # the engine's torch threads: its numbers bit for bit
        return _serve(grid, run)


def _serve(grid: Grid, run: settings.FlowerRun) -> Path:
    cfg, out = run.config, run.run_dir
    ckpt = out / store.CHECKPOINT
    if out.is_dir() and run.restart:
        if not store.is_complete(out):  # a finished run stays until a clean one replaces it
            store.discard_run_files(out)
        (out / store.CHECKPOINT).unlink(missing_ok=True)
        shutil.rmtree(out / STATES, ignore_errors=True)
    # data, partition, masks, mu and the algorithm (no client models); prepared, or built now
    S = _prepared.pop(settings.config_key(cfg), None)
    _prepared.clear()
    if S is None:
        S = setup(cfg, clients=())
    else:
        log.info("the Setup prepared before the run taken over")
    ck = load_checkpoint(ckpt, S) if run.resume and ckpt.exists() else None
    start = ck["round"] if ck else 0
    link = Link(grid, run.round_timeout)
    absent, hello_bytes = hello(link, S, run, start)
    store.write_json(out / "config.json", cfg.to_dict())
    rows = ck["rows"] if ck else []
    client_rows = ck["client_rows"] if ck else []
    failures = ck["failures"] if ck else []
    elapsed = ck["elapsed"] if ck else 0.0
    end = step.last_round(cfg, run.stop_after or None)
    for rnd in range(start, end):
        t0 = time.perf_counter()
        done = rnd + 1
        save = step.checkpoint_round(cfg, done, end)
        row, evaluated, failed = one_round(link, S, rnd, save, out)
        failures += [{"round": done, "client": c, "why": why} for c, why in sorted(failed.items())]
        client_rows += evaluated
        row["seconds"] = time.perf_counter() - t0
        elapsed += row["seconds"]
        rows.append(row)
        log.info(progress_line(row, done, cfg.rounds, out))
        if save:  # the engine's format; each client saved its own state (client_app)
            store.write_checkpoint(
                ckpt,
                cfg,
                done,
                S.algo.server_state_dict(),
                rows,
                client_rows,
                elapsed,
                failures=failures,
            )
    if len(rows) < cfg.rounds:
        return out
    metrics, clients = pd.DataFrame(rows), pd.DataFrame(client_rows)
    summary = summarise(S, metrics, elapsed)
    summary.update(hello_wire_bytes=hello_bytes, absent=absent, failures=failures)
    summary.update(round_timeout=run.round_timeout, flwr=version("flwr"))
    summary["degraded"] = degradation(absent, failures, cfg.num_clients)
    clean = out
    if summary["degraded"]:
        out = degraded_dir(run)
        if out.is_dir():
            store.discard_run_files(out)
        store.write_json(out / "config.json", cfg.to_dict())
    store.write_csv(out / "metrics.csv", metrics)
    store.write_csv(out / "clients.csv", clients)
    # the same rows at full precision (metrics.csv keeps 6 digits; JSON floats round-trip)
    store.write_json(out / EXACT, {"metrics": rows, "clients": client_rows})
    store.write_json(out / "summary.json", summary)
    if ckpt.exists():
        ckpt.unlink()
    shutil.rmtree(clean / STATES, ignore_errors=True)  # the clients' checkpoints, on one machine
    if out != clean:  # degraded: the clean folder keeps nothing of this run
        if not store.is_complete(clean):  # (a finished clean run there stays as it was)
            (clean / "config.json").unlink(missing_ok=True)
        if clean.is_dir() and not any(clean.iterdir()):
            clean.rmdir()
        d = summary["degraded"]
        log.warning(
            "DEGRADED run (clients absent %s, failed %s): accuracy over the clients that "
            "answered; written to %s, not to the clean run folder",
            ids(d["absent"]) or "-",
            ids(d["failed"]) or "-",
            out,
        )
    log.info("%s%s", WRITTEN, out)  # deploy.py reads the folder from this line
    return out


def progress_line(row: dict, done: int, rounds: int, out: Path) -> str:
    """The server's line per round in the run's log (``flwr log``; deploy.py prints it):
    ``round 2/5: acc 0.1854, 3.1 s, failed -; run folder <path>`` (no acc when the round did
    not evaluate)."""
    acc = row["test_acc"]
    text = f"round {done}/{rounds}: " + ("" if math.isnan(acc) else f"acc {acc:.4f}, ")
    return f"{text}{row['seconds']:.1f} s, failed {row['failed'] or '-'}; run folder {out}"


def degradation(absent: list[int], failures: list[dict], num_clients: int) -> dict | None:
    """None for a clean run; else who was missing: clients without a SuperNode, clients that
    failed (and in which rounds), and how many of the run's clients answered throughout."""
    if not absent and not failures:
        return None
    failed = sorted({f["client"] for f in failures})
    return {
        "absent": sorted(absent),
        "failed": failed,
        "failed_rounds": sorted({f["round"] for f in failures}),
        "clients_throughout": num_clients - len(set(absent) | set(failed)),
        "num_clients": num_clients,
        "accuracy_over": "the clients that answered each evaluation (metrics.csv 'failed')",
    }


def hello(link: Link, S: Setup, run: settings.FlowerRun, start: int) -> tuple[list[int], int]:
    """Map every SuperNode to its client (Link.nodes); returns the absent clients and the
    hello's wire bytes. ConfigError if a node is misconfigured or holds other data."""
    n = S.config.num_clients
    nodes = link.wait_for_nodes(n, run.connect_timeout)
    if not nodes:
        raise ConfigError(
            f"no SuperNode connected within connect-timeout={run.connect_timeout:g} s"
        )
    env = {"resume-round": start, "state-dir": str(run.run_dir / STATES)}
    content = RecordDict({records.ENVELOPE: ConfigRecord(env)})
    ex = link.exchange(
        {v: (MessageType.QUERY, content) for v in nodes}, "hello", {v: v for v in nodes}
    )
    for node, why in ex.failed.items():
        if why.startswith("error") and "ConfigError: " in why:  # misconfigured: stop
            raise ConfigError(f"SuperNode {node}: {why.split('ConfigError: ', 1)[1]}")
    for node, reply in sorted(ex.replies.items()):
        info = records.envelope(reply.content)
        cid = info.get("partition-id")
        if type(cid) is not int or not 0 <= cid < n:
            raise ConfigError(f"SuperNode {node}: invalid partition-id={cid!r}")
        if cid in link.nodes:
            raise ConfigError(
                f"SuperNodes {link.nodes[cid]} and {node} both hold partition-id {cid}"
            )
        if info.get("digest") != settings.digest(S.fed, cid):
            raise ConfigError(
                f"SuperNode {node} (partition-id {cid}) holds other data than client {cid} of "
                "this run: start every SuperNode with the same data, max-samples and seeds"
            )
        link.nodes[cid] = node
    absent = sorted(set(range(n)) - set(link.nodes))
    if not link.nodes:
        raise ConfigError(f"no SuperNode answered the hello: {'; '.join(ex.failed.values())}")
    if absent:
        log.warning("clients without a SuperNode (left out of the run): %s", ids(absent))
    return absent, sum(ex.sent_bytes.values()) + sum(ex.received_bytes.values())


def one_round(link: Link, S: Setup, rnd: int, save: bool, out) -> tuple[dict, list, dict]:
    """Round ``rnd`` as engine.run runs it; returns its metrics row, clients.csv rows and the
    clients that failed (with why)."""
    cfg, algo, done = S.config, S.algo, rnd + 1
    part = participation(cfg, rnd)
    env = {"round": rnd}
    train = link.exchange(
        {
            c: (MessageType.TRAIN, RecordDict({records.ENVELOPE: ConfigRecord(env)}))
            for c in part.sampled
        },
        str(done),
    )
    failed = {c: f"train: {why}" for c, why in train.failed.items()}
    uploads, losses, weights, control = {}, {}, {}, sum(train.sent_bytes.values())
    for cid, reply in sorted(train.replies.items()):
        sender = comm.sender_name(cid)
        try:
            rep = records.report(reply.content, sender, {"loss": float, "num-train": int})
            check_report(rep, S, cid, sender)
            msg = records.from_records(reply.content, sender)  # as sent: encoded (step.codec)
            plain = step.codec(algo).decode(msg, sender)  # checked as the server will use it
            comm.check_message(
                plain, sender, config=algo.upload_config, metrics=algo.upload_metrics
            )
            algo.check_upload(plain, sender)
        except comm.MessageError as e:
            failed[cid] = f"train: refused: {e}"
            control += train.received_bytes[cid]
            continue
        losses[cid] = rep["loss"]
        weights[cid] = rep["num-train"]
        if cid in part.dropped:  # simulated: the upload is lost on its way
            control += train.received_bytes[cid]
        else:
            uploads[cid] = msg
    if not losses:
        raise RuntimeError(f"round {done}: no client trained ({'; '.join(failed.values())})")
    with step.naming_round(rnd, cfg.rounds):
        downloads = step.aggregate(algo, rnd, uploads)
    evaluate = step.eval_round(cfg, done)
    targets = sorted(link.nodes) if evaluate or save else sorted(downloads)
    contents = {}
    for cid in targets:
        flags = dict(env, download=cid in downloads, evaluate=evaluate, checkpoint=save)
        flags["state-dir"] = str(out / STATES)
        contents[cid] = (
            MessageType.EVALUATE,
            records.to_records(downloads.get(cid, comm.Message()), envelope=flags),
        )
    ev = link.exchange(contents, str(done))
    failed.update({c: f"evaluate: {why}" for c, why in ev.failed.items() if c not in failed})
    row = step.round_row(cfg, rnd, part, losses, weights, uploads, downloads, always_ids=True)
    row["failed"] = ids(failed)
    results, client_rows = {}, []
    for cid, reply in sorted(ev.replies.items()) if evaluate else ():
        try:
            sender = comm.sender_name(cid)
            rep = records.report(reply.content, sender, {"correct": int, "num-test": int})
            check_report(rep, S, cid, sender)
        except comm.MessageError as e:
            failed[cid] = f"evaluate: refused: {e}"
            continue
        results[cid] = (rep["correct"], rep["num-test"])
    if evaluate:  # the accuracy over the clients that answered
        step.add_evaluation(row, client_rows, results, losses)
    row["failed"] = ids(failed)
    row.update(wire_columns(uploads, downloads, train, ev, control))
    return row, client_rows, failed


def check_report(rep: dict, S: Setup, cid: int, sender: str) -> None:
    """A client's report must be possible: the server knows each client's partition, so its
    sample counts must be its own (a report is aggregated with them as weights), its loss a
    finite number >= 0, and its correct predictions within [0, its test samples]. Otherwise a
    one-line MessageError: the client is refused in that exchange, as for a bad upload."""
    d = S.data[cid]
    expected = {"num-train": d.num_train, "num-test": d.num_test}
    for key, value in rep.items():
        if key in expected and value != expected[key]:
            raise comm.MessageError(
                f"message from {sender}: report {key!r} = {value}, but client {cid} holds "
                f"{expected[key]} samples"
            )
    loss = rep.get("loss")
    if loss is not None and not (math.isfinite(loss) and loss >= 0):
        raise comm.MessageError(
            f"message from {sender}: report 'loss' = {loss}, a finite number >= 0"
        )
    correct = rep.get("correct")
    if correct is not None and not 0 <= correct <= d.num_test:
        raise comm.MessageError(
            f"message from {sender}: report 'correct' = {correct}, outside [0, {d.num_test}]"
        )


def wire_columns(
    uploads: dict, downloads: dict, train: Exchange, ev: Exchange, control: int
) -> dict:
    """Bytes of the round: our serialisation of the payload messages (Message.to_bytes), and
    Flower's: the replies carrying the aggregated uploads, the messages carrying downloads, and
    every other message (train requests, lost uploads, evaluation requests and reports)."""
    down_wire = sum(b for c, b in ev.sent_bytes.items() if c in downloads)
    control += sum(b for c, b in ev.sent_bytes.items() if c not in downloads)
    control += sum(ev.received_bytes.values())
    return {
        "message_upload_bytes": sum(len(m.to_bytes()) for m in uploads.values()),
        "message_download_bytes": sum(
            len(downloads[c].to_bytes()) for c in ev.sent_bytes if c in downloads
        ),
        "wire_upload_bytes": sum(train.received_bytes[c] for c in uploads),
        "wire_download_bytes": down_wire,
        "wire_control_bytes": control,
    }


def summarise(S: Setup, metrics: pd.DataFrame, elapsed: float) -> dict:
    """summary.json: the engine's (``store.summary.summarise_run``) for what the server knows
    (the clients' models and prototypes stay on the SuperNodes), and the bytes on the wire."""
    mean = {k: float(metrics[k].mean()) for k in metrics if k.endswith(("_floats", "_bytes"))}
    payload = mean["upload_bytes"] + mean["download_bytes"]
    wire = mean["wire_upload_bytes"] + mean["wire_download_bytes"]
    summary = summarise_run(S, metrics, elapsed, runtime="flower")
    summary.update(
        message_bytes_per_round=mean["message_upload_bytes"] + mean["message_download_bytes"],
        wire_bytes_per_round=wire,
        wire_overhead_bytes_per_round=wire - payload,
        wire_control_bytes_per_round=mean["wire_control_bytes"],
    )
    return summary


def load_checkpoint(path, S: Setup) -> dict:
    """The server's checkpoint of this run (the engine's format, without client states),
    checked, with the server state restored."""
    ck = store.load_checkpoint(path, S.config, S.device, clients=False)
    if not isinstance(ck.get("failures"), list):
        raise store.RunFolderError(f"{path}: not a Flower checkpoint of run {S.config.run_id()}")
    S.algo.load_server_state_dict(ck["server"])
    return ck
