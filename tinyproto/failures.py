"""Runs that could not finish: their one-line error, kept in the run folder (``failed.json``).

A run that diverges (a client's prototypes turn NaN and the server refuses the message) or
meets bad data ends with a one-line error. ``sweep(..., keep_going=True)`` records it here and
goes on with the other runs; the scorecard reads it back, so a row can say "diverged" instead of
"missing". A later run of the same config that finishes makes the record stale (ignored).
"""

from __future__ import annotations

from pathlib import Path

from tinyproto.config import Config, ConfigError
from tinyproto.store import run_dir


def user_errors() -> tuple:
    """The one-line errors a run can end with (a worker exits 2 with them): not crashes."""
    from tinyproto.comm import MessageError
    from tinyproto.data import DataError
    from tinyproto.store import RunFolderError

    return (ConfigError, DataError, MessageError, RunFolderError, OSError)


FAILED = "failed.json"  # in a run folder: the one-line error of a run that could not finish


def one_line(text, empty: str = "no output") -> str:
    """The first line of ``text`` (an error or a string), or ``empty`` when it has none."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else empty


def record_failure(folder: Path, line: str) -> str:
    from tinyproto.store import write_json

    line = one_line(line)
    if folder.is_dir():
        write_json(folder / FAILED, {"error": line})
    return line


def failure(cfg: Config, root: str | Path | None = None) -> str | None:
    """The recorded one-line error of ``cfg``'s run if it failed and has not finished since."""
    import json

    from tinyproto.store import is_complete

    folder = run_dir(cfg, root)
    if is_complete(folder) or not (folder / FAILED).is_file():
        return None
    try:
        return str(json.loads((folder / FAILED).read_text())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
