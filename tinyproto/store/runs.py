"""Results on disk: one folder per run id, one runs folder per profile.

    <results>/runs/<run-id>/            quick profile (committed)
    <results>/<profile>/runs/<run-id>/  smoke (git-ignored) and paper
        config.json     the Config (every field); hashes to <run-id>
        metrics.csv     one row per round
        clients.csv     per-client test accuracy per evaluated round
        summary.json    best/last accuracy, comm per round, provenance
        prototypes.npz  final local and global prototypes (prototype methods)
        checkpoint.pt   resumable state (git-ignored), with its run id and format version

``<results>`` is ``$TINYPROTO_RESULTS`` or the project's ``results/``. :func:`runs_root` is the
one place that decides where a profile's runs go; the CLI, ``engine.run``, ``sweep`` and the
notebooks all ask it. Every write is atomic (temporary file + rename); a folder read back is
verified (:func:`verify_run`) and a damaged one raises :class:`RunFolderError` naming the file
and how to recover, never a half-read result.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.config import PROFILES, Config, ConfigError, config_from_dict

RESULTS_ENV = "TINYPROTO_RESULTS"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 3
RUN_FILES = ("config.json", "metrics.csv", "clients.csv", "summary.json", "prototypes.npz")
# a run that ended with an error: its one-line error, and the rounds it computed before it
FAILED = "failed.json"
FAILED_METRICS = "failed-metrics.csv"
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunFolderError(Exception):
    """A run folder that cannot be trusted; ``str(e)`` names the file and how to recover."""


class SkippedRunWarning(UserWarning):
    """``load_runs`` left out runs (listed with the reason)."""


# -- where runs go ---------------------------------------------------------------------------


def _is_project(d: Path) -> bool:
    return (d / "pyproject.toml").exists() and (d / "tinyproto").is_dir()


def project_root(start: str | Path | None = None) -> Path:
    """The tinyproto checkout: the folder holding pyproject.toml and tinyproto/, searched
    upwards from ``start`` or the cwd; from anywhere else, the checkout this package runs from
    (so a command started in another folder still writes into the project's results/, not a
    new ./results there); the start folder only when tinyproto is not run from a checkout."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if _is_project(d):
            return d
    if start is None:
        own = Path(__file__).resolve().parents[2]  # <checkout>/tinyproto/store/runs.py
        if _is_project(own):
            return own
    return here


def results_root() -> Path:
    """``$TINYPROTO_RESULTS`` or ``<project>/results``."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser() if env else project_root() / "results"


def default_profile() -> str:
    """``TINYPROTO_PROFILE`` if set, else quick (the notebooks' default)."""
    return os.environ.get("TINYPROTO_PROFILE", "quick")


def results_dir(profile: str) -> Path:
    """Where ``profile``'s tables go: results/ (quick), results/<profile>/ (others)."""
    if profile not in PROFILES:
        raise ConfigError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)}")
    base = results_root()
    return base if profile == "quick" else base / profile


def runs_root(profile: str) -> Path:
    """Where runs of ``profile`` live: results/runs (quick), results/<profile>/runs (others)."""
    return results_dir(profile) / "runs"


def run_dir(config: Config, root: str | Path | None = None) -> Path:
    """The folder of ``config``'s run: ``root/<run-id>`` (root: its profile's runs folder)."""
    base = Path(root) if root is not None else runs_root(config.profile)
    return base / config.run_id()


# -- writing -----------------------------------------------------------------------------------


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (the old file stays until then).

    A failure (full disk, permissions) removes the temporary file, leaves ``path`` as it was
    and raises OSError naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    def w(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, w)


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_jsonable, allow_nan=True) + "\n"
    write_bytes(path, text.encode())


def write_csv(path: Path, df: pd.DataFrame) -> None:
    write_bytes(path, df.to_csv(index=False, float_format="%.6g").encode())


def write_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_torch(path: Path, obj) -> None:
    """torch.save through memory, so that a full disk is an OSError (not a torch RuntimeError)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


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


def clean_tmp(folder: Path) -> list[Path]:
    """Remove temporary files an interrupted atomic write left behind; returns them."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    names = (*RUN_FILES, CHECKPOINT, FAILED, FAILED_METRICS)
    for p in Path(folder).glob("*.tmp"):
        if p.is_file() and any(p.name.startswith(n) for n in names):
            p.unlink()
            removed.append(p)
    return removed


def discard_run_files(folder: Path) -> None:
    """``--restart``: remove the files a run writes (only those: never anything else)."""
    for name in (*RUN_FILES, CHECKPOINT, FAILED, FAILED_METRICS):
        p = Path(folder) / name
        if p.is_file():
            p.unlink()
    clean_tmp(folder)


# -- reading, verified -------------------------------------------------------------------------

_RECOVER = "rerun with --restart (API: run(..., restart=True)) or delete the folder"


def _bad(path: Path, what: str) -> RunFolderError:
    return RunFolderError(f"{path}: {what}; {_RECOVER}".replace("\n", " "))


def _read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None


def read_config(folder: Path) -> Config:
    """config.json of a run folder, checked to hash to the folder's name."""
    path = Path(folder) / "config.json"
    d = _read_json(path)
    try:
        cfg = config_from_dict(d)
    except (ConfigError, TypeError) as e:
        raise _bad(path, f"not a valid config ({e})") from None
    if cfg.run_id() != Path(folder).name:
        raise _bad(path, f"holds the config of run {cfg.run_id()}, not of {Path(folder).name}")
    return cfg


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as e:
        raise _bad(path, f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise _bad(path, f"lacks column(s) {', '.join(missing)}")
    return df


METRIC_COLUMNS = ("round", "train_loss", "upload_floats", "download_floats", "test_acc")


def verify_run(folder: str | Path) -> dict:
    """A finished run, read and checked; RunFolderError naming the first bad file.

    Checks: config.json parses and hashes to the folder name; metrics.csv has one row per
    round (1..R) and finite numbers; summary.json parses, names this run and agrees with the
    metrics (rounds, best and last accuracy); clients.csv and prototypes.npz, where present,
    are readable.
    """
    folder = Path(folder)
    cfg = read_config(folder)
    mpath = folder / "metrics.csv"
    metrics = _read_csv(mpath, METRIC_COLUMNS)
    rounds = metrics["round"].tolist()
    if rounds != list(range(1, cfg.rounds + 1)):
        raise _bad(
            mpath, f"has {len(rounds)} rows (rounds {_span(rounds)}), expected 1..{cfg.rounds}"
        )
    numeric = metrics[list(METRIC_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    if numeric.drop(columns="test_acc").isna().any().any():
        raise _bad(mpath, "holds empty or non-numeric values")
    acc = numeric["test_acc"].dropna()
    if acc.empty or not acc.between(0, 1).all():
        raise _bad(mpath, "holds no test accuracy, or one outside [0, 1]")
    spath = folder / "summary.json"
    summary = _read_json(spath)
    if not isinstance(summary, dict):
        raise _bad(spath, "not a JSON object")
    checks = {
        "run_id": (summary.get("run_id"), folder.name),
        "rounds": (summary.get("rounds"), cfg.rounds),
        "best_acc": (summary.get("best_acc"), float(acc.max())),
        "last_acc": (summary.get("last_acc"), float(acc.iloc[-1])),
    }
    for key, (got, want) in checks.items():
        same = (
            isinstance(got, (int, float))
            and not isinstance(got, bool)
            and math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6)
            if isinstance(want, float)
            else got == want
        )
        if not same:
            raise _bad(spath, f"{key} = {got!r} disagrees with the run ({want!r})")
    clients = None
    cpath = folder / "clients.csv"
    if cpath.exists():
        clients = _read_csv(cpath, ("round", "client", "test_acc"))
    ppath = folder / "prototypes.npz"
    if ppath.exists():
        try:
            with np.load(ppath, allow_pickle=False) as z:
                for k in z.files:
                    z[k]
        except Exception as e:  # noqa: BLE001 - zip/zlib/format errors: all mean damaged
            raise _bad(ppath, f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    return {
        "config": cfg,
        "summary": summary,
        "metrics": metrics,
        "clients": clients,
        "path": folder,
    }


def _span(rounds: list) -> str:
    return f"{rounds[0]}..{rounds[-1]}" if rounds else "none"


def is_complete(path: Path) -> bool:
    """The run's last files exist (summary.json is written last); see verify_run for trust."""
    return (Path(path) / "summary.json").exists() and (Path(path) / "metrics.csv").exists()


def load_run(path: str | Path) -> dict:
    """A finished run, verified: {'config', 'summary', 'metrics', 'clients', 'path'}."""
    return verify_run(path)


def write_checkpoint(
    path: Path, config: Config, done: int, server, rows, client_rows, elapsed: float, *,
    clients: list | None = None, **extra,
) -> None:
    """A run's checkpoint after ``done`` rounds, one format for every runtime: the server
    state, both tables so far, the elapsed seconds and ``clients`` (their states, where the
    writer holds them; None where each client keeps its own, as on Flower); ``extra`` keys
    (Flower: the failures so far) are kept as they are."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "run_id": config.run_id(),
        "round": done,
        "clients": clients,
        "server": server,
        "rows": rows,
        "client_rows": client_rows,
        "elapsed": elapsed,
        "config": config.to_dict(),
        **extra,
    }
    write_torch(path, state)


def load_checkpoint(path: Path, config: Config, map_location=None, *, clients: bool = True) -> dict:
    """A checkpoint of ``config``'s run, checked; RunFolderError naming the file otherwise.
    ``clients``: whether it must hold every client's state (False: the Flower server's)."""
    import torch

    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/EOF errors: all mean damaged
        raise _bad(path, f"unreadable checkpoint ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(ck, dict) or "format" not in ck:
        raise _bad(path, "not a tinyproto checkpoint (no format version)")
    if ck["format"] != CHECKPOINT_FORMAT:
        raise _bad(
            path, f"checkpoint format {ck['format']}, this version reads {CHECKPOINT_FORMAT}"
        )
    if ck.get("run_id") != config.run_id():
        raise _bad(
            path, f"checkpoint of run {ck.get('run_id')}, not of this config ({config.run_id()})"
        )
    done = ck.get("round")
    if not isinstance(done, int) or not 1 <= done <= config.rounds:
        raise _bad(path, f"checkpoint round {done!r} outside 1..{config.rounds}")
    held = ck.get("clients")
    n_states = len(held) if isinstance(held, list) else None
    if len(ck.get("rows", ())) != done or (clients and n_states != config.num_clients):
        raise _bad(path, "checkpoint rows or client states do not match its round / clients")
    return ck


def load_runs(
    root: str | Path | None = None, *, profile: str | None = None, verify: bool = True
) -> pd.DataFrame:
    """Finished runs as one DataFrame: config fields + summary numbers, a row each.

    ``profile``: read that profile's runs folder (default: ``$TINYPROTO_PROFILE`` or quick);
    ``"all"`` reads every profile's. With ``root`` given, the runs under it; runs of several
    profiles are only mixed when asked (``profile="all"``). Damaged, unfinished or foreign runs
    are skipped and named (a :class:`SkippedRunWarning`; also ``df.attrs["skipped"]``). A
    degraded Flower run (a client absent or failed) has ``degraded`` True and its
    ``missing_clients`` (the column exists when such a run is listed).
    """
    if profile is not None and profile != "all" and profile not in PROFILES:
        raise ConfigError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)} or all")
    if root is None:
        if profile is None:
            profile = default_profile()
        wanted = PROFILES if profile == "all" else (profile,)
        roots = [runs_root(p) for p in wanted]
    else:
        roots = [Path(root)]
    rows, skipped = [], {}
    for base in roots:
        if not base.is_dir():
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if not (d / "summary.json").exists():
                if (d / "config.json").exists():
                    skipped[d.name] = "unfinished (no summary.json)"
                continue
            try:
                if verify:
                    r = verify_run(d)
                    cfg, summary = r["config"].to_dict(), r["summary"]
                else:
                    cfg, summary = _read_json(d / "config.json"), _read_json(d / "summary.json")
            except RunFolderError as e:
                skipped[d.name] = str(e)
                continue
            if profile not in (None, "all") and cfg.get("profile") != profile:
                skipped[d.name] = f"profile {cfg.get('profile')}, not {profile}"
                continue
            flat = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
            if summary.get("degraded"):  # a Flower run that lost clients: say so in the listing
                d_ = summary["degraded"]
                flat["degraded"] = True
                flat["missing_clients"] = " ".join(
                    str(c) for c in sorted(set(d_.get("absent", [])) | set(d_.get("failed", [])))
                )
            rows.append({**cfg, **flat, "run_id": d.name})
    df = pd.DataFrame(rows)
    if profile is None and not df.empty and df["profile"].nunique() > 1:
        raise ConfigError(
            f"invalid profile=None: {root} holds runs of several profiles "
            f"({', '.join(sorted(df['profile'].unique()))}); pass profile=<name> or 'all'"
        )
    df.attrs["skipped"] = skipped
    if skipped:
        listed = "; ".join(f"{k} ({v})" for k, v in skipped.items())
        warnings.warn(
            f"load_runs skipped {len(skipped)} run(s): {listed}", SkippedRunWarning, stacklevel=2
        )
    return df


def load_prototypes(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path) / "prototypes.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except Exception as e:  # noqa: BLE001
        raise _bad(path, f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
