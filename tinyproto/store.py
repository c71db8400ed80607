"""Results on disk: one folder per run id under ``results/runs/``.

    results/runs/<run-id>/config.json     the Config (every field)
    results/runs/<run-id>/metrics.csv     one row per round
    results/runs/<run-id>/clients.csv     per-client test accuracy per evaluated round
    results/runs/<run-id>/summary.json    best/last accuracy, comm per round, provenance
    results/runs/<run-id>/prototypes.npz  final local and global prototypes (prototype methods)
    results/runs/<run-id>/checkpoint.pt   resumable state (git-ignored)

Every write is atomic (temporary file + rename), so an interrupted run never leaves a half file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.config import Config, config_from_dict

DEFAULT_ROOT = Path(os.environ.get("TINYPROTO_RESULTS", "results")) / "runs"
_UMASK = os.umask(0)
os.umask(_UMASK)


def run_dir(config: Config, root: str | Path | None = None) -> Path:
    return Path(root or DEFAULT_ROOT) / config.run_id()


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: Path, obj) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)
            f.write("\n")

    atomic_write(path, w)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))


def write_npz(path: Path, **arrays) -> None:
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, w)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def is_complete(path: Path) -> bool:
    return (path / "summary.json").exists() and (path / "metrics.csv").exists()


def load_run(path: str | Path) -> dict:
    """A finished run: {'config': Config, 'summary': dict, 'metrics': DataFrame, 'clients': ...}."""
    path = Path(path)
    with open(path / "config.json") as f:
        config = config_from_dict(json.load(f))
    with open(path / "summary.json") as f:
        summary = json.load(f)
    clients = path / "clients.csv"
    return {
        "config": config,
        "summary": summary,
        "metrics": pd.read_csv(path / "metrics.csv"),
        "clients": pd.read_csv(clients) if clients.exists() else None,
        "path": path,
    }


def load_runs(root: str | Path | None = None) -> pd.DataFrame:
    """Every finished run under ``root`` as one DataFrame: config fields + summary, a row each."""
    root = Path(root or DEFAULT_ROOT)
    rows = []
    for path in sorted(root.glob("*/summary.json")):
        d = path.parent
        try:
            with open(d / "config.json") as f:
                cfg = json.load(f)
            with open(path) as f:
                summary = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        flat = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        rows.append({"run_id": d.name, **cfg, **flat})
    return pd.DataFrame(rows)


def load_prototypes(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(path) / "prototypes.npz") as z:
        return {k: z[k] for k in z.files}
