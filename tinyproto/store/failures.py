"""Runs that could not finish: their one-line error, kept in the run folder (``failed.json``).

A run that diverges (a client's prototypes turn NaN and the server refuses the message) or
meets bad data ends with a one-line error. ``sweep(..., keep_going=True)`` records it here and
goes on with the other runs; the scorecard reads it back, so a row can say "diverged" instead of
"missing". The rounds the run computed before its error are kept beside it
(``failed-metrics.csv``, written by ``engine.run``: the rounds since the last checkpoint would
otherwise be lost), and the scorecard names the best accuracy among them. A later run of the
same config that finishes makes both stale (ignored).
"""

from __future__ import annotations

from pathlib import Path

from tinyproto.config import Config, ConfigError
from tinyproto.store.runs import FAILED, FAILED_METRICS, run_dir


def user_errors() -> tuple:
    """The one-line errors a run can end with (a worker exits 2 with them): not crashes."""
    from tinyproto.comm import MessageError
    from tinyproto.data import DataError
    from tinyproto.store.runs import RunFolderError

    return (ConfigError, DataError, MessageError, RunFolderError, OSError)


def one_line(text, empty: str = "no output") -> str:
    """The first line of ``text`` (an error or a string), or ``empty`` when it has none."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else empty


def record_failure(folder: Path, line: str) -> str:
    from tinyproto.store.runs import write_json

    line = one_line(line)
    if folder.is_dir():
        write_json(folder / FAILED, {"error": line})
    return line


# the words of every non-finite refusal (comm.checks, client messages and the server's output)
NON_FINITE = "NaN or inf"


def diverged(line: str) -> bool:
    """Whether a recorded failure is a divergence, not e.g. missing data: NaN/inf values, or
    finite values so large that the server's arithmetic would overflow (the same blow-up,
    caught one step earlier)."""
    from tinyproto.comm.checks import OUT_OF_BOUND  # values past the server's overflow bound

    line = str(line)
    return NON_FINITE in line or OUT_OF_BOUND in line


def record_rows(folder: Path, rows: list[dict]) -> None:
    """Keep the metrics rows of a run that is ending with an error (nothing if it had none)."""
    import pandas as pd

    from tinyproto.store.runs import write_csv

    if rows and Path(folder).is_dir():
        write_csv(Path(folder) / FAILED_METRICS, pd.DataFrame(rows))


def before_failure(cfg: Config, root: str | Path | None = None) -> str | None:
    """What a failed run computed before its error, in words: "best 99.82 % in rounds 1-69"
    (the best test accuracy over the rounds it evaluated), or None if nothing is recorded."""
    import math

    import pandas as pd

    from tinyproto.store.runs import is_complete

    folder = run_dir(cfg, root)
    path = folder / FAILED_METRICS
    if is_complete(folder) or not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
        acc = pd.to_numeric(df["test_acc"], errors="coerce")
        rounds = pd.to_numeric(df["round"], errors="coerce")
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return None
    if acc.notna().sum() == 0 or rounds.isna().any():
        return None
    best = float(acc.max())
    if not math.isfinite(best):
        return None
    return f"best {100 * best:.2f} % in rounds {int(rounds.min())}-{int(rounds.max())}"


def failure(cfg: Config, root: str | Path | None = None) -> str | None:
    """The recorded one-line error of ``cfg``'s run if it failed and has not finished since."""
    import json

    from tinyproto.store.runs import is_complete

    folder = run_dir(cfg, root)
    if is_complete(folder) or not (folder / FAILED).is_file():
        return None
    try:
        return str(json.loads((folder / FAILED).read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
