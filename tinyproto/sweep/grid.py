"""Grids of runs for the notebooks: build configs, run what is missing, summarise.

    configs = grid(profile="quick", algorithm=["fedproto", "tinyproto-fp"], seed=[0, 1])
    df = sweep(configs)                    # one row per config; finished runs are reused
    table = mean_std(df, by=["algorithm"]) # mean +- std over seeds, like the paper

Outputs are kept apart per profile, so a smoke run (CI, nbval) never overwrites the committed
quick-profile results: quick -> results/, figures/; paper -> results/paper/, figures/paper/;
smoke -> results/smoke/, figures/smoke/ (git-ignored).
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.config import PROFILES, Config, ConfigError
from tinyproto.store import (  # noqa: F401
    default_profile,
    project_root,
    results_dir,
    results_root,
    run_dir,
    runs_root,
)
from tinyproto.store.failures import failure, record_failure, user_errors
from tinyproto.sweep.workers import (  # noqa: F401  (re-exported: sweep's public worker settings)
    WORKERS_ENV,
    RunFailed,
    _run_in_parallel,
    default_workers,
    resolve_workers,
    run_threads,
    torch_threads,
)

DEFAULT_SEEDS = {"smoke": [0], "quick": [0, 1], "long": [0, 1, 2], "hard": [0, 1, 2], "paper": [0, 1, 2]}
SUMMARY_COLUMNS = [
    "run_id",
    "best_acc",
    "last_acc",
    "best_round",
    "comm_floats_per_round",
    "upload_floats_per_round",
    "download_floats_per_round",
    "comm_bytes_per_round",
    "expected_floats_per_round",
    "classes_present_train",
    "classes_present_full",
    "mu_resolved",
    "wall_seconds",
    "data_source",
]


@dataclass(frozen=True)
class Outputs:
    profile: str
    root: Path
    runs: Path
    results: Path
    figures: Path

    def rel(self, path: Path) -> str:
        """``path`` relative to the project root (what notebooks print: no machine paths)."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def outputs(profile: str) -> Outputs:
    """Where a profile's runs, tables and figures go (created if missing).

    Runs: ``store.runs_root(profile)``, the one place that decides it (the CLI and
    ``engine.run`` ask it too). Tables: ``store.results_dir(profile)``, ``results/`` (quick) or
    ``results/<profile>/``;
    figures: ``figures/`` or ``figures/<profile>/``.
    """
    if profile not in PROFILES:
        raise ConfigError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)}")
    root = project_root()
    sub = "" if profile == "quick" else profile
    out = Outputs(
        profile=profile,
        root=root,
        runs=runs_root(profile),
        results=results_dir(profile),
        figures=root / "figures" / sub if sub else root / "figures",
    )
    for p in (out.runs, out.results, out.figures):
        p.mkdir(parents=True, exist_ok=True)
    return out


def grid(**axes) -> list[Config]:
    """Configs for the cartesian product of the list-valued keyword arguments.

    Scalars are shared by every config; a list (or tuple) is an axis. A dict inside the
    ``variants`` axis sets several fields at once, e.g.
    ``grid(profile="quick", variants=[{"algorithm": "fedproto"}, {"cps_dim": None}])``.
    """
    variants = axes.pop("variants", [{}])
    keys = [k for k, v in axes.items() if isinstance(v, (list, tuple))]
    fixed = {k: v for k, v in axes.items() if k not in keys}
    configs = []
    for values in itertools.product(*(axes[k] for k in keys)):
        for var in variants:
            configs.append(Config(**{**fixed, **dict(zip(keys, values)), **var}))
    return configs


def recorded_failures(configs: list[Config], root: str | Path | None = None) -> dict[str, str]:
    """{run id: recorded one-line error} of the configs whose runs failed and have not finished
    since (``failed.json``; ``root`` None: each config's profile folder)."""
    lines = {cfg.run_id(): failure(cfg, root) for cfg in configs}
    return {rid: line for rid, line in lines.items() if line is not None}


def sweep(
    configs: list[Config],
    *,
    root: str | Path | None = None,
    progress: bool = True,
    desc: str = "runs",
    workers: int | None = None,
    keep_going: bool = False,
    retry_failed: bool = False,
) -> pd.DataFrame:
    """Run every config (reusing finished, verified runs by run id); one row per config.

    Missing runs are computed by ``workers`` processes at once (default: ``$TINYPROTO_WORKERS``,
    else :func:`default_workers`). Every run gets the same share of the torch threads
    (:func:`run_threads`: threads / workers asked for), also when fewer runs are missing than
    workers, or one is computed in this process: a run's numbers do not depend on how many run
    beside it or on which runs were already there. One progress bar for the whole grid.
    Columns: every Config field plus the summary numbers (best_acc, last_acc, ...).

    A run that fails with a one-line error (e.g. a diverging run's NaN prototypes, refused by
    the server) raises it, after the runs under way have finished. With ``keep_going`` the
    other runs go on instead: the failed runs get no row, their errors are in
    ``df.attrs["failed"]`` ({run id: line}) and in ``<run folder>/failed.json``. A later
    ``keep_going`` sweep does not compute a recorded failure again (runs are deterministic: it
    would fail the same way; its recorded line is in ``df.attrs["failed"]``) unless
    ``retry_failed``, e.g. after a change of the code. Without ``keep_going`` every missing run is
    computed.
    """
    from tinyproto.runtime.engine import run
    from tinyproto.store import is_complete

    unique = list({cfg.run_id(): cfg for cfg in configs}.values())
    folder = lambda cfg: Path(root) if root is not None else runs_root(cfg.profile)  # noqa: E731
    missing = [cfg for cfg in unique if not is_complete(folder(cfg) / cfg.run_id())]
    failed: dict[str, str] = {}
    if keep_going and not retry_failed:
        failed = recorded_failures(missing, root)
        missing = [cfg for cfg in missing if cfg.run_id() not in failed]
    n = resolve_workers(workers, missing)
    threads = run_threads(workers, missing)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(configs), desc=desc, file=sys.stderr, mininterval=2, leave=True)
    if n > 1:
        failed.update(_run_in_parallel(missing, root, n, bar, keep_going, threads=threads))
    rows = []  # root None: each config's runs go to its profile's folder (store.runs_root)
    seen: dict[str, dict] = {}
    for cfg in configs:
        rid = cfg.run_id()
        if rid not in seen:
            if rid in failed:
                seen[rid] = None
            else:
                try:
                    with torch_threads(threads):  # the same count as in a worker process
                        result = run(cfg, root=root, reuse=True, resume=True, progress=False)
                    seen[rid] = result.summary
                except user_errors() as e:
                    if not keep_going:
                        raise
                    failed[rid] = record_failure(folder(cfg) / rid, str(e))
                    seen[rid] = None
        summary = seen[rid]
        if summary is None:
            continue
        rows.append(_summary_row(cfg, summary))
        if bar is not None and n <= 1:
            bar.update(1)
            bar.set_postfix_str(f"{cfg.algorithm} seed {cfg.seed}", refresh=False)
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    df = pd.DataFrame(rows)
    df.attrs["failed"] = failed
    return df


def _summary_row(cfg: Config, summary: dict) -> dict:
    """One row of ``sweep``/``finished``: the config's fields and the summary numbers."""
    row = {k: v for k, v in cfg.to_dict().items() if k != "extra"}
    row.update({k: summary.get(k) for k in SUMMARY_COLUMNS})
    return row


def finished(configs: list[Config], *, root: str | Path | None = None) -> pd.DataFrame:
    """The rows ``sweep(configs)`` would give, for the configs whose run is already finished and
    verifies; computes nothing (e.g. another profile's runs shown beside this one's). Configs
    without a finished run are left out; their run ids are in ``df.attrs["missing"]``."""
    from tinyproto.store import RunFolderError, is_complete, verify_run

    rows, missing = [], []
    for cfg in configs:
        rid = cfg.run_id()
        folder = run_dir(cfg, root)
        try:
            summary = verify_run(folder)["summary"] if is_complete(folder) else None
        except RunFolderError:
            summary = None
        if summary is None:
            missing.append(rid)
            continue
        rows.append({**_summary_row(cfg, summary), "run_id": rid})
    df = pd.DataFrame(rows)
    df.attrs["missing"] = missing
    return df


def flatten_round(acc, window: int = 5, tol: float = 0.005) -> int | None:
    """Where an accuracy curve flattens: the first round r from which its ``window``-evaluation
    trailing mean never rises more than ``tol`` (0.005 = 0.5 points) above its value at r.

    ``acc``: a pandas Series indexed by round, or a sequence for rounds 1, 2, ...; rounds without
    an evaluation (NaN, ``eval_every`` > 1) are skipped. None when fewer than ``window`` rounds
    were evaluated, or the curve still rises by more than ``tol`` at its end (not flat within
    the horizon run)."""
    if not isinstance(acc, pd.Series):
        values = np.asarray(acc, dtype=float)
        acc = pd.Series(values, index=np.arange(1, values.size + 1))
    acc = acc.dropna()
    a, rounds = acc.to_numpy(dtype=float), acc.index.to_numpy()
    if a.size < window:
        return None
    ma = np.convolve(a, np.ones(window) / window, mode="valid")  # ma[i]: points i..i+window-1
    future_max = np.maximum.accumulate(ma[::-1])[::-1]
    first = int(np.nonzero(future_max - ma <= tol)[0][0])  # the last point always qualifies
    if first == ma.size - 1 and ma.size > 1 and ma[-1] - ma[-2] > tol:
        return None
    return int(rounds[first + window - 1])


HORIZONS = ("quick", "long")  # the Fashion-MNIST profiles shown side by side where both exist


def side_by_side(
    make_configs, by: list[str], profiles: tuple[str, ...] = HORIZONS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same grid at several horizons: ``make_configs(profile)`` gives a profile's configs;
    only finished runs are read (nothing is computed). Returns (table, rows): table has one row
    per ``by`` group and, per profile with any finished run, its best accuracy as
    "mean ± std (n)" in % and its rounds; rows are the runs read (column ``profile``)."""
    parts = []
    for p in profiles:
        try:
            df = finished(make_configs(p))
        except ConfigError:
            continue
        if not df.empty:
            parts.append(df)
    if not parts:
        return pd.DataFrame(columns=by), pd.DataFrame()
    rows = pd.concat(parts, ignore_index=True)
    table = None
    for p, df in rows.groupby("profile", sort=False):
        ms = mean_std(df, by=by, values=("best_acc",))
        ms[f"{p}: best acc (%)"] = [
            t if n == 1 else t + f" (n={n})" for t, n in zip(ms["best_acc_text"], ms["n_seeds"])
        ]
        ms[f"{p}: rounds"] = int(df["rounds"].max())
        ms = ms[by + [f"{p}: best acc (%)", f"{p}: rounds"]].astype(object)  # ints stay ints
        table = ms if table is None else table.merge(ms, on=by, how="outer")
    return table.astype(object).fillna("not run"), rows


def mean_std(
    df: pd.DataFrame, by: list[str], values: tuple[str, ...] = ("best_acc", "last_acc")
) -> pd.DataFrame:
    """Mean and (sample) standard deviation over seeds, plus the paper's "mean +- std" text.

    Accuracies are reported in percent. With one seed the std is NaN and the text says n=1.
    """
    g = df.groupby(by, dropna=False, sort=False)
    out = g.size().rename("n_seeds").reset_index()
    for v in values:
        scale = 100.0 if v.endswith("_acc") else 1.0
        mean = g[v].mean().to_numpy() * scale
        std = g[v].std(ddof=1).to_numpy() * scale
        out[f"{v}_mean"] = mean
        out[f"{v}_std"] = std
        out[f"{v}_text"] = [
            f"{m:.2f} ± {s:.2f}" if np.isfinite(s) else f"{m:.2f} (n=1)" for m, s in zip(mean, std)
        ]
    return out


def provenance(df: pd.DataFrame) -> str:
    """One line saying which profile, dataset(s), seeds and rounds produced a table."""
    profiles = ", ".join(sorted(map(str, df["profile"].unique())))
    datasets = ", ".join(sorted(map(str, df["dataset"].unique())))
    seeds = ", ".join(map(str, sorted(df["seed"].unique())))
    rounds = ", ".join(map(str, sorted(df["rounds"].unique())))
    line = f"profile: {profiles} | dataset: {datasets} | seeds: {seeds} | rounds: {rounds}"
    if "quick" in profiles or "smoke" in profiles:
        line += " | NOT the paper's setting (see README: profiles)"
    return line
