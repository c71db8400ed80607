"""Many runs: grids of configs, computing the missing ones in worker processes, and the
statistics notebooks and the scorecard read over the finished runs.

    grid.py     grid, sweep, finished, outputs, provenance, mean_std, side_by_side, ...
    workers.py  how many worker processes, with how many torch threads; the parent's side
    worker.py   ``python -m tinyproto.sweep.worker THREADS``: the child that computes runs

May import: config, store, runtime (the engine computes each run; the processes and their
protocol are ``runtime.procs``). ``from tinyproto.sweep import X`` gives grid.py's names.
"""

from tinyproto.store.runs import (
    default_profile,
    project_root,
    results_root,
    run_dir,
    runs_root,
)
from tinyproto.sweep.grid import (
    DEFAULT_SEEDS,
    HORIZONS,
    SUMMARY_COLUMNS,
    Outputs,
    finished,
    flatten_round,
    grid,
    mean_std,
    outputs,
    provenance,
    recorded_failures,
    side_by_side,
    sweep,
)
from tinyproto.sweep.workers import (
    WORKERS_ENV,
    RunFailed,
    default_workers,
    resolve_workers,
    run_threads,
    torch_threads,
)

__all__ = [
    "DEFAULT_SEEDS",
    "HORIZONS",
    "Outputs",
    "RunFailed",
    "SUMMARY_COLUMNS",
    "WORKERS_ENV",
    "default_profile",
    "default_workers",
    "finished",
    "flatten_round",
    "grid",
    "mean_std",
    "outputs",
    "project_root",
    "provenance",
    "recorded_failures",
    "resolve_workers",
    "results_root",
    "run_dir",
    "run_threads",
    "runs_root",
    "side_by_side",
    "sweep",
    "torch_threads",
]
