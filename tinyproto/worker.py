"""``python -m tinyproto.worker THREADS``: a process that computes runs for ``tinyproto.sweep``.

``tinyproto.sweep`` starts one per worker and hands it runs one at a time, so torch, the package
and the interpreter start once per worker, not once per run (about 3 s of a core each on the
2-core development machine, a tenth of a quick run). A fresh interpreter: nothing of the
caller's ``__main__`` is imported, unlike multiprocessing's spawn.

Protocol, one JSON object per line:

* request, on stdin: ``{"config": {...Config fields...}, "root": ""}`` ("" = the profile's runs
  folder). The run is computed with ``reuse`` and ``resume`` (a finished run is verified and
  kept, a checkpoint is continued).
* answer, on the process's stdout: ``{"run_id": ..., "status": "ok"}`` when the run folder is
  complete, or ``{"run_id": ..., "status": "error", "line": ...}`` with the one-line message of
  a user or data error (the worker then waits for the next request).

Anything else is a crash: its traceback goes to stderr and the process exits 1 (the caller
reads the last stderr line). The worker exits 0 when stdin closes, and 3 as soon as the
process that started it is gone, even in the middle of a run (:func:`exit_with_parent`).
Whatever a run itself prints to stdout is sent to stderr, so it cannot corrupt the answers.
Every run of a worker uses THREADS torch threads (CPU numerics are deterministic per thread
count).
"""

from __future__ import annotations

import json
import os
import sys


def answer_channel(mode: str = "w"):
    """The process's original stdout as a file for protocol answers; from now on everything
    else written to stdout (Python prints, C libraries on fd 1) goes to stderr instead."""
    answers = os.fdopen(os.dup(1), mode, buffering=1 if "b" not in mode else -1)
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


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m tinyproto.worker THREADS", file=sys.stderr)
        return 2
    answers = answer_channel()
    exit_with_parent()

    import torch

    from tinyproto.config import config_from_dict
    from tinyproto.engine import run
    from tinyproto.failures import one_line, user_errors

    torch.set_num_threads(int(argv[0]))
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        request = json.loads(line)
        run_id = None
        try:
            cfg = config_from_dict(request["config"])
            run_id = cfg.run_id()
            run(cfg, root=request.get("root") or None, resume=True, reuse=True, progress=False)
        except user_errors() as e:
            error = one_line(e, type(e).__name__)
            answers.write(json.dumps({"run_id": run_id, "status": "error", "line": error}) + "\n")
            continue
        answers.write(json.dumps({"run_id": run_id, "status": "ok"}) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
