"""``python -m tinyproto.sweep.worker THREADS``: a process that computes runs for ``sweep``.

``tinyproto.sweep`` starts one per worker and hands it runs one at a time, so torch, the package
and the interpreter start once per worker, not once per run (about 3 s of a core each on the
2-core development machine, a tenth of a quick run). The process, its frames and its stderr are
``tinyproto.runtime.procs``'s:

* request: ``{"config": {...Config fields...}, "root": None | "folder"}`` (None = the profile's
  runs folder). The run is computed with ``reuse`` and ``resume`` (a finished run is verified
  and kept, a checkpoint is continued).
* answer: ``("ok", run_id)`` when the run folder is complete, or ``("error", (class, line))``
  with the one-line message of a user or data error (the worker then waits for the next one).

Anything else is a crash: its traceback goes to stderr and the process exits 1 (the caller
reads the last stderr line). The worker exits 0 when stdin closes, and 3 as soon as the
process that started it is gone, even in the middle of a run. Every run of a worker uses
THREADS torch threads as its share of the cores (each computation of a run uses one thread,
``runtime.clients.run_numerics``; "auto" client workers use the share).
"""

from __future__ import annotations

import sys

from tinyproto.runtime import procs


def main(argv: list[str]) -> int:
    threads = procs.usage_threads(argv, "tinyproto.sweep.worker")
    if threads is None:
        return 2
    answers = procs.answer_channel()
    procs.exit_with_parent()

    import torch

    from tinyproto.config import config_from_dict
    from tinyproto.runtime.engine import run
    from tinyproto.store.failures import user_errors

    torch.set_num_threads(threads)
    inp = sys.stdin.buffer
    while True:
        try:
            request = procs.receive(inp)
        except EOFError:
            return 0
        try:
            cfg = config_from_dict(request["config"])
            run(cfg, root=request.get("root"), resume=True, reuse=True, progress=False)
        except user_errors() as e:
            procs.answer_error(answers, e)
            continue
        procs.answer_ok(answers, cfg.run_id())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
