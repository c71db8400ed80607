"""Run folders on disk: where they live, how they are written, read and verified.

    runs.py      folders (results/<profile>/runs/<run-id>/), atomic writes, checkpoints,
                 verify_run / load_run / load_runs / load_prototypes, RunFolderError
    failures.py  a run that ended with an error: failed.json, failed-metrics.csv, one-line errors
    summary.py   summary.json and prototypes.npz of a finished run

May import: tinyproto.config, tinyproto.comm, tinyproto.data, tinyproto.cps (never the
algorithms or the runtimes that produce the runs). ``from tinyproto import store`` gives
runs.py's names.
"""

from tinyproto.store.runs import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    FAILED,
    FAILED_METRICS,
    METRIC_COLUMNS,
    RESULTS_ENV,
    RUN_FILES,
    RunFolderError,
    SkippedRunWarning,
    atomic_write,
    clean_tmp,
    default_profile,
    discard_run_files,
    is_complete,
    load_checkpoint,
    load_prototypes,
    load_run,
    load_runs,
    project_root,
    read_config,
    results_dir,
    results_root,
    run_dir,
    runs_root,
    verify_run,
    write_bytes,
    write_checkpoint,
    write_csv,
    write_json,
    write_npz,
    write_torch,
)

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "FAILED",
    "FAILED_METRICS",
    "METRIC_COLUMNS",
    "RESULTS_ENV",
    "RUN_FILES",
    "RunFolderError",
    "SkippedRunWarning",
    "atomic_write",
    "clean_tmp",
    "default_profile",
    "discard_run_files",
    "is_complete",
    "load_checkpoint",
    "load_prototypes",
    "load_run",
    "load_runs",
    "project_root",
    "read_config",
    "results_dir",
    "results_root",
    "run_dir",
    "runs_root",
    "verify_run",
    "write_bytes",
    "write_checkpoint",
    "write_csv",
    "write_json",
    "write_npz",
    "write_torch",
]
