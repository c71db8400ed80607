"""Worker processes for ``sweep``: how many, with how many torch threads each, and the parent's
side of the worker protocol (``tinyproto.sweep.worker`` is the child's side; the processes and
their frames are ``tinyproto.runtime.procs``'s).

Each worker gets its share of the torch threads (:func:`run_threads`), fixed by the number of
workers asked for, never by how many runs happen to be missing. A run computes with one torch
thread whatever its share (``runtime.clients.RUN_THREADS``), so its numbers do not depend on it;
the share is what its clients may use side by side (``client_workers`` "auto").
"""

from __future__ import annotations

import os
import pickle
import subprocess

from tinyproto.config import Config, ConfigError
from tinyproto.runtime.procs import (  # noqa: F401
    WorkerDied,
    last_line,
    reap,
    receive,
    send,
    spawn,
    torch_threads,
)
from tinyproto.store.failures import record_failure
from tinyproto.store.runs import run_dir

WORKERS_ENV = "TINYPROTO_WORKERS"


def default_workers() -> int:
    """Processes for missing runs on this machine: one per usable CPU core (at most 8); a run
    of the small models gains less from a second torch thread than from a second process."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def resolve_workers(workers: int | None, missing: list[Config]) -> int:
    """How many processes compute ``missing``: 1 when one run is missing or a GPU is used."""
    if _on_accelerator(missing):
        return 1  # one accelerator: runs take turns on it
    return max(1, min(_requested_workers(workers, missing), len(missing)))


def run_threads(workers: int | None, missing: list[Config]) -> int | None:
    """The torch threads each missing run gets on the CPU: this process's threads divided by the
    number of workers asked for (argument, ``$TINYPROTO_WORKERS`` or the default), never by how
    many runs happen to be missing. A run's numbers do not depend on it (each computation uses
    one thread, ``runtime.clients.run_numerics``); its ``client_workers`` "auto" starts one
    client worker per thread of its share. None on an accelerator."""
    if _on_accelerator(missing):
        return None
    import torch

    return max(1, torch.get_num_threads() // _requested_workers(workers, missing))


def _on_accelerator(missing: list[Config]) -> bool:
    return any(cfg.device not in ("cpu", "auto") for cfg in missing) or _cuda_auto(missing)


def _requested_workers(workers: int | None, missing: list[Config]) -> int:
    if workers is None:
        env = os.environ.get(WORKERS_ENV, "").strip()
        if env:
            if not env.isdigit() or int(env) < 1:
                raise ConfigError(f"invalid {WORKERS_ENV}={env!r}: an integer >= 1")
            workers = int(env)
        elif all(cfg.profile == "smoke" for cfg in missing):
            workers = 1  # a smoke run takes about as long as starting a worker process
        else:
            workers = default_workers()
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"invalid workers={workers!r}: an integer >= 1")
    return workers


def _cuda_auto(missing: list[Config]) -> bool:
    if not any(cfg.device == "auto" for cfg in missing):
        return False
    import torch

    return torch.cuda.is_available()


class RunFailed(WorkerDied):
    """A run computed by a worker process failed; the message is its error line."""


def _run_in_parallel(
    missing: list[Config],
    root,
    workers: int,
    bar,
    keep_going: bool = False,
    *,
    threads: int,
) -> dict[str, str]:
    """Compute ``missing`` in up to ``workers`` worker processes (``python -m tinyproto.sweep.worker``),
    each started once and handed one run at a time (imports are paid once per worker).

    The first failure stops new runs from starting; the runs under way finish (their folders
    are kept), then it is raised: the same one-line error class the run raised in-process
    where it was a user error (ConfigError / DataError ...), else RunFailed with the worker's
    last stderr line. Ctrl-C terminates the workers (each run resumes from its checkpoint).
    With ``keep_going`` a one-line failure is recorded and the others go on; returns
    {run id: error line} of those.
    """
    import selectors

    queue = list(missing)
    procs: list[subprocess.Popen] = []
    errs: dict[subprocess.Popen, object] = {}
    busy: dict[subprocess.Popen, Config] = {}
    idle: list[subprocess.Popen] = []
    sel = selectors.DefaultSelector()
    failure: tuple[Config, int, str] | None = None
    failed: dict[str, str] = {}

    def start() -> subprocess.Popen:
        proc, err = spawn("tinyproto.sweep.worker", threads)
        procs.append(proc)
        errs[proc] = err
        sel.register(proc.stdout, selectors.EVENT_READ, proc)
        return proc

    try:
        while (queue and failure is None) or busy:  # after a failure: drain, start nothing
            while queue and failure is None and (idle or len(busy) + len(idle) < workers):
                proc = idle.pop() if idle else start()
                cfg = queue.pop(0)
                request = {"config": cfg.to_dict(), "root": None if root is None else str(root)}
                try:
                    send(proc.stdin, request)
                except OSError:  # the worker died before reading its request (a crash)
                    sel.unregister(proc.stdout)
                    failure = failure or (cfg, proc.wait(), last_line(errs[proc]))
                    break
                busy[proc] = cfg
            for key, _ in sel.select(timeout=1.0):
                proc = key.data
                try:
                    answer = receive(proc.stdout)
                except (EOFError, OSError, pickle.UnpicklingError):
                    answer = None
                if proc not in busy:  # an idle worker died (killed): no run lost
                    sel.unregister(proc.stdout)
                    idle.remove(proc)
                    proc.wait()
                    continue
                cfg = busy.pop(proc)
                if answer is None:  # the worker died: a crash (its traceback is on stderr)
                    sel.unregister(proc.stdout)
                    if failure is None:
                        failure = (cfg, proc.wait(), last_line(errs[proc]))
                    continue
                status, value = answer
                idle.append(proc)
                if status == "ok":
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"{cfg.algorithm} seed {cfg.seed}", refresh=False)
                elif keep_going:
                    failed[cfg.run_id()] = record_failure(run_dir(cfg, root), value[1])
                    if bar is not None:
                        bar.update(1)
                elif failure is None:
                    failure = (cfg, 2, value[1])
    finally:
        for proc in procs:  # idle workers exit when their stdin closes; busy ones are stopped
            if proc in busy:
                proc.terminate()
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in procs:
            reap(proc)
            proc.stdout.close()
            errs[proc].close()
        sel.close()
    if failure is not None:
        cfg, code, line = failure
        if code == 2:  # a one-line user/data error: the same text as in-process
            raise ConfigError(f"run {cfg.run_id()}: {line}")
        raise RunFailed(
            f"run {cfg.run_id()} failed in a worker (exit {code}): {line}; the finished runs "
            "and its checkpoint are kept: run the same command again to continue"
        )
    return failed
