"""A long-lived ClientApp process for one SuperNode: ``flower-supernode --isolation process``.

In its default isolation (``subprocess``) a Flower 1.42 SuperNode starts ``flower-superexec``,
which starts a fresh ``flwr-clientapp`` process for every message: each imports flwr, torch and
tinyproto and builds the run's data before it handles one message, then exits (about 5-6 s of a
core per message, ~95 % of a smoke round's time; docs/flower.md). With ``--isolation process``
the SuperNode starts no executor and waits for one to claim its tasks over its Runtime API; this
module is that executor, for the lifetime of the SuperNode:

    python -m tinyproto.flower.worker --runtime-api-address 127.0.0.1:9094 --insecure \
        --parent-pid <the SuperNode's pid>

It claims the SuperNode's ClientApp tasks one at a time (``AcquireTask``) and runs each as
``flwr-clientapp`` runs one: pull the message, the node's Context and the app (FAB) with the
task's token, call the ClientApp, push the reply, then push the Context back (a failed task
leaves the SuperNode's Context as it was), with a heartbeat while the app runs. What it keeps
between tasks is what Python keeps in one process: the imported modules (torch, tinyproto,
the ClientApp) and whatever the ClientApp caches itself (client_app.py keeps the run's data and
algorithm, keyed by Flower's run id and the config). The client's state still comes from and
goes back to the SuperNode's ``Context.state`` with every message, so a run's numbers are the
same as with a process per message (tests/test_flower_deploy.py).

With ``--wake FIFO`` (deploy.py) the SuperNode (``python -m tinyproto.flower.supernode``) writes a
byte to that named pipe whenever it holds a new message, and the worker claims the task at once
(asking every WAKE_POLL s otherwise, in case a wake-up was lost); without it the worker polls,
quickly after a task and more slowly while idle. ``--prepare`` builds a run's data before the
first task. ``--mod MODULE:NAME`` (repeatable) wraps the ClientApp in Flower mods
(``mod(message, context, call_next)``), as ``ClientApp(mods=...)`` would, on this node only.
With TLS on the SuperNode's Runtime API, ``--root-certificates`` names the CA to trust
(deploy.py's default); ``--insecure`` talks plaintext to it. The worker exits when the SuperNode's process does (``--parent-pid``), on SIGTERM
or SIGINT. The Flower internals it uses (the Runtime API client, flwr-clientapp's pull/push
helpers) are flwr 1.42's; :func:`available` says whether this flwr has them (deploy.py falls
back to Flower's own executor when not).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import select
import signal
import sys
import threading
import time

from tinyproto.flower.polling import Backoff, quick_pulls

POLL_MIN = 0.02  # seconds between task claims right after a task ...
POLL_MAX = 0.5  # ... growing by POLL_GROWTH per idle poll up to this
POLL_GROWTH = 1.5
WAKE_POLL = 2.0  # seconds between task claims when the SuperNode wakes the worker (--wake)
HEARTBEAT = 20.0  # seconds between task heartbeats (a SuperNode expects one within 30 s)
log = logging.getLogger("tinyproto.flower.worker")


def available() -> bool:
    """Whether this flwr has the internals the worker uses (flwr 1.42's Runtime API)."""
    try:
        _flower()
    except (ImportError, AttributeError):
        return False
    return True


def _flower():
    """Flower's pieces, imported on use (this module is also imported by the launcher)."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest, SendTaskHeartbeatRequest
    from flwr.supercore import interceptors, retry, runtime
    from flwr.supercore.constant import TaskType
    from flwr.supernode.runtime import run_clientapp

    needed = {  # AttributeError where a name is missing: not flwr 1.42's internals
        interceptors: ("RuntimeTokenHttpInterceptor", "RuntimeVersionHttpInterceptor"),
        retry: ("make_simple_http_retry_invoker",),  # (these three: runtime_client's)
        runtime: ("RuntimeHttpClient",),
        run_clientapp: ("pull_task_input", "push_message", "push_task_output"),
    }
    for module, names in needed.items():
        for name in names:
            getattr(module, name)
    return argparse.Namespace(
        AcquireTaskRequest=AcquireTaskRequest,
        SendTaskHeartbeatRequest=SendTaskHeartbeatRequest,
        TaskType=TaskType,
        run_clientapp=run_clientapp,
    )


class Worker:
    """Claims and runs one SuperNode's ClientApp tasks until stopped."""

    def __init__(
        self,
        address: str,
        insecure: bool = True,
        certificates: bytes | None = None,
        mods: list | None = None,
    ):
        self.fl = _flower()
        self.address, self.insecure, self.certificates = address, insecure, certificates
        self.mods = list(mods or [])  # Flower mods around every call of the ClientApp
        self.apps: dict[str, object] = {}  # FAB hash -> its loaded ClientApp
        # the task is claimable before the SuperNode holds its message's objects: retry soon
        quick_pulls(self.fl.run_clientapp)
        self.control = self._client()
        self.tasks = 0

    def _client(self, token: str | None = None):
        return runtime_client(
            self.address, self.insecure, self.certificates, "flwr-clientapp", token
        )

    def serve(self, stop: threading.Event, wake: int | None = None) -> None:
        """Claim and run tasks until ``stop`` is set. ``wake``: the read end of the FIFO the
        SuperNode writes to when it holds a new message (polling.patch_supernode); then the
        worker asks for a task when woken, and every WAKE_POLL s in case a wake-up was lost;
        without it, it polls (Backoff from POLL_MIN after a task to POLL_MAX)."""
        if wake is None:
            idle = Backoff(POLL_MIN, POLL_MAX, POLL_GROWTH)
        else:
            idle = Backoff(WAKE_POLL, WAKE_POLL)
        request = self.fl.AcquireTaskRequest(supported_task_types=[self.fl.TaskType.CLIENT_APP])
        while not stop.is_set():
            res = self.control.AcquireTask(request)
            if res.HasField("task") and res.token:
                self.run_task(res.token)
                idle.reset()
            elif wake is None:
                stop.wait(idle.next())
            elif select.select([wake], [], [], idle.next())[0]:
                _drain(wake)

    def app(self, run, fab):
        """The run's ClientApp, loaded as flwr-clientapp loads it (once per FAB)."""
        if fab.hash_str not in self.apps:
            from flwr.cli.install import install_from_fab
            from flwr.clientapp.utils import get_load_client_app_fn
            from flwr.common.config import get_project_dir

            if not get_project_dir(run.fab_id, run.fab_version, fab.hash_str).is_dir():
                install_from_fab(fab.content, skip_prompt=True)
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            self.apps[fab.hash_str] = load(run.fab_id, run.fab_version, fab.hash_str)
        return self.apps[fab.hash_str]

    def call(self, app, message, context):
        """The ClientApp's reply to ``message``, through this node's mods (Flower's Mod
        signature ``mod(message, context, call_next)``; the first given is the outermost)."""

        call = functools.partial(_call_app, app)
        for mod in reversed(self.mods):
            call = functools.partial(_call_mod, mod, call)
        return call(message, context)

    def run_task(self, token: str) -> None:
        """One task, as flwr-clientapp runs it: the reply (or an error reply) and the Context."""
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.clientapp.client_app import LoadClientAppError
        from flwr.common.constant import ErrorCode, SubStatus

        rc = self.fl.run_clientapp
        client = self._client(token)
        beat = _Heartbeat(client, self.fl.SendTaskHeartbeatRequest())
        message = context = reply = None
        status, details, kind = SubStatus.FAILED, "ClientApp task failed", "?"
        t0 = time.perf_counter()
        t1 = t2 = t0
        try:
            message, context, run, fab = rc.pull_task_input(client)
            kind = f"{message.metadata.message_type} {message.metadata.group_id}".strip()
            app = self.app(run, fab)
            t1 = time.perf_counter()
            reply = self.call(app, message, context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as ex:  # noqa: BLE001 - reported to the server, as flwr-clientapp does
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            details = f"{type(ex)}:<'{ex}'>"  # Flower's format (link.reason reads it)
            if isinstance(ex, LoadClientAppError):
                code = ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                details = "An exception was raised when attempting to load `ClientApp`"
            log.error("ClientApp raised an exception", exc_info=ex)
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
        finally:
            t2 = time.perf_counter()
            beat.stop()
            try:
                if reply is not None and context is not None:
                    rc.push_message(client, reply, context)
            except Exception as ex:  # noqa: BLE001 - the server sees no reply: a failed client
                log.error("could not push the reply", exc_info=ex)
                status = SubStatus.FAILED
            # the Context goes back only from a completed task (a failed one leaves it as it was)
            done = context if status == SubStatus.COMPLETED else None
            rc.push_task_output(client=client, context=done, sub_status=status, details=details)
            client.close()
        self.tasks += 1
        log.info(
            "task %d (%s): %s; input %.3f s, app %.3f s, output %.3f s",
            self.tasks,
            kind,
            status,
            t1 - t0,
            t2 - t1,
            time.perf_counter() - t2,
        )


class _Heartbeat:
    """The task's heartbeat every HEARTBEAT seconds in a thread, until stopped."""

    def __init__(self, client, request):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, request), daemon=True)
        self._thread.start()

    def _run(self, client, request) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                if not client.SendTaskHeartbeat(request).success:
                    log.warning("the SuperNode no longer knows this task")
                    return
            except Exception as ex:  # noqa: BLE001 - a missed beat; the next one may pass
                log.warning("task heartbeat failed: %s", ex)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def runtime_client(
    address: str,
    insecure: bool,
    certificates: bytes | None,
    component: str,
    token: str | None = None,
):
    """A Runtime API client as Flower's executors make one (``component`` names the caller;
    ``token``: a task's, for the calls made on its behalf). Also serverexec.py's."""
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=insecure,
        root_certificates=certificates,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )


def read_certificates(parser: argparse.ArgumentParser, args) -> bytes | None:
    """The CA of ``--root-certificates`` (None with ``--insecure``; a usage error without
    either). Also serverexec.py's."""
    if args.insecure:
        return None
    if not args.root_certificates:
        parser.error("--root-certificates is required without --insecure")
    with open(args.root_certificates, "rb") as f:
        return f.read()


def parent_monitor(pid: int, stop: threading.Event, exit_now: bool = True) -> None:
    """Set ``stop`` when process ``pid`` (the SuperNode; serverexec.py's SuperLink) has ended,
    then leave; ``exit_now``: end this process at once too (a task in flight has no one to
    reply to)."""

    def watch() -> None:
        while not stop.wait(0.5):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.info("process %d, which this one serves, ended: stopping", pid)
                stop.set()
                if exit_now:
                    os._exit(0)  # noqa: SLF001
                return
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinyproto.flower.worker",
        description="A long-lived ClientApp process for a SuperNode started with "
        "--isolation process (claims and runs its ClientApp tasks one at a time).",
    )
    p.add_argument("--runtime-api-address", default="127.0.0.1:9094")
    p.add_argument("--insecure", action="store_true", help="no TLS (a local SuperNode)")
    p.add_argument("--root-certificates", help="PEM file of the Runtime API's CA (with TLS)")
    p.add_argument(
        "--mod",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="a Flower mod (mod(message, context, call_next)) around this node's ClientApp, "
        "imported from MODULE; repeatable, the first is the outermost",
    )
    p.add_argument("--parent-pid", type=int, help="exit when this process (the SuperNode) ends")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--ready-file", help="created once the worker is ready for tasks")
    p.add_argument(
        "--wake",
        metavar="FIFO",
        help="a named pipe the SuperNode writes to when it holds a new message "
        "(python -m tinyproto.flower.supernode with TINYPROTO_CLIENTAPP_WAKE set to it)",
    )
    p.add_argument(
        "--prepare",
        metavar="JSON",
        help="a run config (JSON file) whose data to build before the first task",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    stop = threading.Event()
    # read and write: the pipe never reads as closed, whoever writes to it comes and goes
    wake = os.open(args.wake, os.O_RDWR | os.O_NONBLOCK) if args.wake else None

    def on_signal(*_) -> None:
        stop.set()
        if wake is not None:
            os.write(wake, b"!")  # out of select() at once

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if args.parent_pid:
        parent_monitor(args.parent_pid, stop)
    t0 = time.perf_counter()
    certificates = read_certificates(p, args)
    try:
        mods = [load_mod(ref) for ref in args.mod]
    except ValueError as e:
        p.error(str(e))
    warm_up(args.threads, args.prepare)
    worker = Worker(args.runtime_api_address, args.insecure, certificates, mods)
    log.info("ready in %.1f s; serving %s", time.perf_counter() - t0, args.runtime_api_address)
    if args.ready_file:
        open(args.ready_file, "w").close()
    worker.serve(stop, wake)
    log.info("stopped after %d tasks", worker.tasks)
    return 0


def _call_app(app, message, context):
    return app(message=message, context=context)


def _call_mod(mod, call_next, message, context):
    return mod(message, context, call_next)


def load_mod(ref: str):
    """The callable ``NAME`` of ``MODULE`` for ``MODULE:NAME`` (ValueError naming the problem)."""
    import importlib

    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"invalid --mod {ref!r}: MODULE:NAME")
    try:
        mod = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"invalid --mod {ref!r}: {e}") from None
    if not callable(mod):
        raise ValueError(f"invalid --mod {ref!r}: not callable")
    return mod


def warm_up(threads: int, prepare: str | None = None) -> None:
    """Import what every task needs before the first one comes: torch (with the lazy import an
    optimizer's first construction triggers, ~2 s) and tinyproto's ClientApp; with ``prepare``
    (a JSON file of a run config) build that run's data too (client_app.prepare)."""
    import torch
    import torch._dynamo  # noqa: F401 - torch.optim imports it on first use

    torch.set_num_threads(threads)
    from tinyproto.flower import client_app

    if prepare:
        try:
            with open(prepare) as f:
                client_app.prepare(json.load(f))
        except Exception as ex:  # noqa: BLE001 - the run itself will report it
            log.warning("could not prepare the run's data: %s", ex)


if __name__ == "__main__":
    sys.exit(main())
