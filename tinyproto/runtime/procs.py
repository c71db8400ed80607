"""Worker processes: the one way this package starts them and the one protocol they speak.

Two kinds of worker use it: the client pool's (``python -m tinyproto.runtime.clients THREADS``,
a run's clients side by side) and the sweep's (``python -m tinyproto.sweep.worker THREADS``, one
run at a time). Both are fresh interpreters started by :func:`spawn` (nothing of the caller's
``__main__`` is imported, unlike multiprocessing's spawn), both stop when the process that
started them is gone (:func:`exit_with_parent`), and both talk in frames:

* a request is one pickled object on the worker's stdin;
* an answer is one pickled ``(status, value)`` on the worker's original stdout:
  ``("ok", value)`` or ``("error", (error class name, one line))`` for a user or data error,
  after which the worker waits for the next request.

Anything else a worker prints goes to its stderr (:func:`answer_channel`), a temporary file the
parent reads the last line of when the worker dies (:func:`last_line`). The pipes join local,
trusted processes: pickle is the format, and the parent never unpickles anything else.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory, a crash): one line naming the worker, its
    exit code, the last line of its stderr and what to do. Nothing computed is lost: runs and
    checkpoints are written atomically, so ``--resume`` continues."""


def spawn(module: str, threads: int, **popen) -> tuple[subprocess.Popen, object]:
    """A worker process ``python -m module threads`` answering on its stdout, and the binary
    temporary file its stderr goes to (read back by :func:`last_line`)."""
    import tempfile

    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        **popen,
    )
    return proc, err


def send(stream, obj) -> None:
    """Write one frame (``obj`` pickled) and flush; OSError if the other side is gone."""
    pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


def receive(stream):
    """Read one frame; EOFError when the other side closed the pipe."""
    return pickle.load(stream)


def answer_ok(stream, value=None) -> None:
    send(stream, ("ok", value))


def answer_error(stream, e: BaseException) -> None:
    """Answer with a user error's class name and its one line (``store.failures.one_line``)."""
    from tinyproto.store.failures import one_line

    send(stream, ("error", (type(e).__name__, one_line(e, type(e).__name__))))


def last_line(err) -> str:
    """The last line a worker wrote to its stderr file (``err``: a binary temporary file)."""
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def reap(proc, timeout: float = 30) -> int:
    """Wait for a worker process to exit (killing it after ``timeout`` s); its exit code."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def answer_channel():
    """The process's original stdout as a binary file for answers; from now on everything else
    written to stdout (Python prints, C libraries on fd 1) goes to stderr instead."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def exit_with_parent(poll: float = 1.0) -> None:
    """Exit this process as soon as the process that started it is gone (killed, crashed).

    A worker only notices a closed stdin between requests; without this, killing a sweep (or a
    run with client workers) left its workers computing their current runs for minutes or hours,
    orphaned, and racing a new sweep that computed the same runs into the same folders. Files
    are written atomically and runs checkpoint, so a later sweep resumes what was cut off."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def usage_threads(argv: list[str], module: str) -> int | None:
    """The THREADS argument of a worker's command line, or None after printing its usage."""
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print(f"usage: python -m {module} THREADS", file=sys.stderr)
        return None
    return int(argv[0])


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch threads (None: unchanged), then restore the count."""
    import torch

    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
