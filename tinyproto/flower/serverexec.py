"""A warm ServerApp executor for a SuperLink started with ``--isolation process``.

In its default isolation (``subprocess``) a Flower 1.42 SuperLink starts ``flower-superexec``,
which starts a fresh ``flwr-serverapp`` process when a run is submitted: it imports flwr, torch
and tinyproto and builds the run's data before the first message goes out, inside the run's
time (about 4 s on the 2-core development machine; docs/flower.md). Flower's own pre-started
("warm") executors exist for Kubernetes only. This module is one for a local federation
(deploy.py): a process that imports torch and the ServerApp, and builds a prepared run's data,
while the federation starts; then it claims the run's ServerApp task (``AcquireTask`` on the
SuperLink's Runtime API, as flower-superexec claims it) and runs it with Flower's own
``run_serverapp`` and the task's token, exactly as ``flwr-serverapp`` would, which ends the
process when the run ends, as it ends ``flwr-serverapp``.

    python -m tinyproto.flower.serverexec --runtime-api-address 127.0.0.1:9091 --insecure \
        --parent-pid <the SuperLink's pid>

This command is a supervisor: it keeps one warm executor ready (a child process), and starts
the next when one ends (its run done), so every run a federation is given finds one. A child
that ends without a run (it failed to start) is started again after a growing pause and named
in the log. It exits when the SuperLink does (``--parent-pid``), on SIGTERM or SIGINT, ending
its child. A run's numbers are those of ``flwr-serverapp``'s (tests/test_flower_deploy.py):
the prepared data are built by the same call the ServerApp makes (server_app.prepare).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tinyproto.flower.polling import Backoff
from tinyproto.flower.worker import parent_monitor, read_certificates, runtime_client

POLL_MIN = 0.02  # seconds between task claims once ready ...
POLL_MAX = 0.25  # ... growing to this (flower-superexec: 1 s; deploy.py sets 0.25 for it)
RESTART_MAX = 10.0  # the longest pause before a child that failed is started again
CLAIMED_ENV = "TINYPROTO_SERVEREXEC_CLAIMED"  # a file the child creates once it has a run
log = logging.getLogger("tinyproto.flower.serverexec")


def available() -> bool:
    """Whether this flwr has what the executor uses (flwr 1.42's Runtime API and run_serverapp)."""
    try:
        _flower()
    except (ImportError, AttributeError):
        return False
    return True


def _flower():
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.logger import mirror_output_to_queue
    from flwr.superlink.runtime import run_serverapp

    from tinyproto.flower import worker

    worker._flower()  # what runtime_client uses  # noqa: SLF001
    return argparse.Namespace(
        AcquireTaskRequest=AcquireTaskRequest,
        SERVER_APP=TaskType.SERVER_APP,
        mirror_output_to_queue=mirror_output_to_queue,
        run_serverapp=run_serverapp,
    )


def warm_up(prepare: str | None) -> None:
    """Import what the ServerApp needs (torch, with what an optimizer's first construction
    imports, and tinyproto's ServerApp); with ``prepare`` (a JSON file of a run config) build
    that run's Setup too, which the run with this config then takes over."""
    import torch._dynamo  # noqa: F401 - torch.optim imports it on first use

    from tinyproto.flower import server_app

    if prepare:
        try:
            with open(prepare) as f:
                server_app.prepare(json.load(f))
        except Exception as ex:  # noqa: BLE001 - the run itself will report it
            log.warning("could not prepare the run's data: %s", ex)


def serve_one(args, certificates: bytes | None, stop: threading.Event) -> int:
    """Claim one ServerApp task and run it as flwr-serverapp does (Flower's run_serverapp,
    which exits the process); 0 when stopped before a task came."""
    fl = _flower()
    client = runtime_client(args.runtime_api_address, args.insecure, certificates, "SuperExec")
    request = fl.AcquireTaskRequest(supported_task_types=[fl.SERVER_APP])
    idle = Backoff(POLL_MIN, POLL_MAX)
    try:
        while True:
            if stop.is_set():
                return 0
            res = client.AcquireTask(request)
            if res.HasField("task") and res.token:
                break
            stop.wait(idle.next())
    finally:
        client.close()
    log.info("claimed ServerApp task %d of run %d", res.task.task_id, res.task.run_id)
    if os.environ.get(CLAIMED_ENV):  # the supervisor: this child's end is its run's end
        open(os.environ[CLAIMED_ENV], "w").close()
    from queue import Queue

    queue: Queue = Queue()
    fl.mirror_output_to_queue(queue)  # the run's output goes to its log (flwr log), as there
    fl.run_serverapp(
        runtime_api_address=args.runtime_api_address,
        log_queue=queue,
        token=res.token,
        insecure=args.insecure,
        certificates=certificates,
        parent_pid=args.parent_pid,
        runtime_dependency_install=False,
    )
    return 0  # (run_serverapp exits the process itself)


def child(args, certificates: bytes | None) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.parent_pid:
        parent_monitor(args.parent_pid, stop, exit_now=False)
    t0 = time.perf_counter()
    warm_up(args.prepare)
    log.info(
        "ready in %.1f s; waiting for a run on %s",
        time.perf_counter() - t0,
        args.runtime_api_address,
    )
    if args.ready_file:
        open(args.ready_file, "w").close()
    return serve_one(args, certificates, stop)


def supervise(argv: list[str], parent_pid: int | None) -> int:
    """Keep one warm child ready until stopped (SIGTERM/SIGINT, or the SuperLink ended)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if parent_pid:
        parent_monitor(parent_pid, stop, exit_now=False)
    pause = 0.0
    with tempfile.TemporaryDirectory(prefix="tinyproto-serverexec-") as tmp:
        claimed = os.path.join(tmp, "claimed")
        while not stop.is_set():
            if os.path.exists(claimed):
                os.unlink(claimed)
            p = subprocess.Popen(
                [sys.executable, "-m", "tinyproto.flower.serverexec", "--child", *argv],
                env={**os.environ, CLAIMED_ENV: claimed},
            )
            while p.poll() is None and not stop.wait(0.2):
                pass
            if p.poll() is None:  # stopped: end the child (a run in flight ends with it)
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                break
            if os.path.exists(claimed):  # its run ended (a failed run too): the next one now
                pause = 0.0
                log.info("run ended (exit code %d); starting the next warm executor", p.returncode)
            else:  # it ended before it had a run: it could not start
                pause = min(RESTART_MAX, max(0.5, 2 * pause))
                log.warning(
                    "the warm ServerApp executor exited with code %d before a run; "
                    "another in %.1f s",
                    p.returncode,
                    pause,
                )
                stop.wait(pause)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m tinyproto.flower.serverexec",
        description="A warm ServerApp executor for a SuperLink started with --isolation "
        "process: torch and the ServerApp imported before the run is submitted.",
    )
    p.add_argument("--runtime-api-address", default="127.0.0.1:9091")
    p.add_argument("--insecure", action="store_true", help="no TLS (a local SuperLink)")
    p.add_argument("--root-certificates", help="PEM file of the SuperLink's CA (with TLS)")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the SuperLink) ends")
    p.add_argument("--ready-file", help="created once an executor is ready for a run")
    p.add_argument(
        "--prepare", metavar="JSON", help="a run config (JSON file) whose data to build first"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    # its own lines only: the root logger stays as flwr-serverapp finds it (a handler there
    # would print every line of Flower's logger twice, into the run's log too)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    certificates = read_certificates(p, args)
    if args.child:
        return child(args, certificates)
    return supervise([a for a in argv if a != "--child"], args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
