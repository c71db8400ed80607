"""The in-process federated loop: rounds, evaluation, metrics, checkpoints, resume.

One round (METHOD.md): every client trains locally (1 epoch, SGD) and uploads a message; the
server aggregates and returns one message per client; each client stores what it received; then
every client is evaluated on its own test split (Eq. 12 for prototype methods) and the round's
accuracy is total correct / total test samples. Communication is measured from the messages.
With ``join_ratio`` < 1 or ``drop_rate`` > 0 only the sampled clients train and only the uploads
that arrive are aggregated (tinyproto.config.participation); every client is still evaluated.

All randomness is derived from (seed, round, client), so a run resumed from a checkpoint ends
with exactly the numbers of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from tinyproto.config import Config, ConfigError
from tinyproto.runtime import step
from tinyproto.runtime.clients import open_clients, run_numerics
from tinyproto.runtime.environment import (
    check_data_source,
    check_device,
    check_environment,
    check_path_text,
)
from tinyproto.runtime.setup import Setup, add_client, setup  # noqa: F401  (re-exported)
from tinyproto.runtime.step import evaluate, seed_for  # noqa: F401  (re-exported)
from tinyproto.store import runs as store
from tinyproto.store.failures import record_rows
from tinyproto.store.summary import save_prototypes, summarise_run


@dataclass
class RunResult:
    config: Config
    metrics: pd.DataFrame  # one row per round
    clients: pd.DataFrame  # one row per (evaluated round, client)
    summary: dict
    run_dir: Path
    # what happened to the run folder: "reused" (finished before), "resumed from round k",
    # "started fresh" (no checkpoint to resume), "restarted" (its files discarded), "computed"
    origin: str = "computed"

    @property
    def best_acc(self) -> float:
        return self.summary["best_acc"]

    @property
    def last_acc(self) -> float:
        return self.summary["last_acc"]


def run(
    config: Config,
    *,
    root: str | Path | None = None,
    resume: bool = False,
    reuse: bool = False,
    restart: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> RunResult:
    """Run one federated experiment and write it to ``root/<run-id>/``.

    ``root``: the runs folder (default: the profile's, ``store.runs_root``).
    A finished run with the same id is never recomputed: it is verified and returned
    (``origin`` "reused"); ``reuse=True`` says so explicitly (kept for existing callers).
    ``resume``: continue from the run folder's checkpoint if there is one.
    ``restart``: discard the folder's checkpoint and files (e.g. damaged ones, or a finished run
    to compute again) and start over.
    ``stop_after``: stop (checkpointed) after this many rounds in total; for tests and for
    splitting a long run over several sessions.

    Everything that can be refused is checked before anything is loaded or written: the config,
    the device, the results folder, the data source, the memory estimate, and the run folder
    (a checkpoint of another config, damaged files). Without ``resume`` or ``restart`` an
    existing checkpoint is never overwritten: computed rounds are not thrown away silently.
    """
    cfg = config
    if not isinstance(cfg, Config):
        raise ConfigError(f"invalid config={type(cfg).__name__}: a tinyproto.Config")
    cfg.validate()
    if restart and (resume or reuse):
        raise ConfigError("invalid restart=True with resume/reuse: restart discards the folder")
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 1):
        raise ConfigError(f"invalid stop_after={stop_after!r}: an integer >= 1 or None")
    if root is not None:
        check_path_text(root)
    base = Path(root) if root is not None else store.runs_root(cfg.profile)
    out = store.run_dir(cfg, base)
    ckpt_path = out / store.CHECKPOINT
    if out.exists() and not out.is_dir():
        raise store.RunFolderError(f"{out}: a file where the run folder should be; move it away")
    if out.is_dir() and not restart:
        if (out / "config.json").exists():
            store.read_config(out)  # damaged or foreign: refuse before computing anything
        if store.is_complete(out):  # reading needs no memory or write access, but what the
            check_device(cfg.device)  # user named explicitly must exist all the same
            check_data_source(cfg)
            return _load_result(out)
        if ckpt_path.exists() and not resume:
            raise store.RunFolderError(
                f"{ckpt_path}: holds an unfinished run; pass --resume to continue it or "
                "--restart to discard it (API: resume=True / restart=True)"
            )
    device = check_environment(cfg, base)
    if out.is_dir():
        store.clean_tmp(out)
        if restart:
            store.discard_run_files(out)
    ck = store.load_checkpoint(ckpt_path, cfg, device) if resume and ckpt_path.exists() else None
    origin = "restarted" if restart else "started fresh" if resume and ck is None else "computed"
    if ck is not None:
        origin = f"resumed from round {ck['round']}"
    cores = torch.get_num_threads()  # what the caller gives this run: client workers (auto)
    with run_numerics(device):  # one torch thread per computation (runtime.clients)
        return _compute(cfg, out, ckpt_path, ck, origin, stop_after, progress, cores)


def _compute(cfg, out, ckpt_path, ck, origin, stop_after, progress, cores) -> RunResult:
    S = setup(cfg)
    algo, states = S.algo, S.states
    rows: list[dict] = []
    client_rows: list[dict] = []
    start, elapsed = 0, 0.0
    if ck is not None:
        try:
            for st, sd in zip(states, ck["clients"]):
                st.load_state_dict(sd)
            algo.load_server_state_dict(ck["server"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise store.RunFolderError(
                f"{ckpt_path}: its states do not fit this run ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:80]}); rerun with --restart or delete the file"
            ) from None
        rows, client_rows, start, elapsed = (
            ck["rows"],
            ck["client_rows"],
            ck["round"],
            ck["elapsed"],
        )
    store.write_json(out / "config.json", cfg.to_dict())
    runtime = open_clients(S, cores)  # in this process, or worker processes side by side
    try:
        if ck is not None:
            runtime.load({cid: st.state_dict() for cid, st in enumerate(states)})
        rows, client_rows, elapsed = _rounds(
            S, runtime, rows, client_rows, start, elapsed, stop_after, progress, ckpt_path
        )
        runtime.sync(states)
    except Exception:  # e.g. a divergence: keep the rounds computed since the last checkpoint
        try:
            record_rows(out, rows)  # _rounds grows ``rows`` in place
        except OSError:  # e.g. a full disk: the run's own error is the one to report
            pass
        raise
    finally:
        runtime.close()

    metrics = pd.DataFrame(rows)
    clients = pd.DataFrame(client_rows)
    if len(rows) < cfg.rounds:  # stopped early on purpose: keep the checkpoint, no summary
        return RunResult(cfg, metrics, clients, {}, out, origin)
    summary = summarise_run(S, metrics, elapsed)
    # how it was executed (not part of its numbers): the clients' processes and torch threads
    summary.update(client_workers=runtime.workers)
    if runtime.threads is not None:
        summary.update(torch_threads=runtime.threads)
    store.write_csv(out / "metrics.csv", metrics)
    store.write_csv(out / "clients.csv", clients)
    if algo.prototype_based and cfg.save_prototypes:
        save_prototypes(out, S)
    store.write_json(out / "summary.json", summary)
    if ckpt_path.exists():
        ckpt_path.unlink()
    for stale in (store.FAILED, store.FAILED_METRICS):  # the run finished after all
        (out / stale).unlink(missing_ok=True)
    return RunResult(cfg, metrics, clients, summary, out, origin)


def _rounds(S: Setup, clients, rows, client_rows, start, elapsed, stop_after, progress, ckpt_path):
    """Rounds ``start`` .. the end (or ``stop_after``): train, aggregate, receive, evaluate,
    checkpoint (``runtime.step``); returns the grown (rows, client_rows, elapsed)."""
    cfg = S.config
    end = step.last_round(cfg, stop_after)
    bar = _progress(range(start, end), cfg, progress, total=cfg.rounds, initial=start)
    for rnd in bar:
        t0 = time.perf_counter()
        row = step.run_round(S, clients, rnd, client_rows)
        done = rnd + 1
        row["seconds"] = time.perf_counter() - t0
        elapsed += row["seconds"]
        rows.append(row)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(acc=f"{row['test_acc']:.4f}", loss=f"{row['train_loss']:.3f}")
        if step.checkpoint_round(cfg, done, end):
            clients.sync(S.states)
            _checkpoint(ckpt_path, S, rows, client_rows, done, elapsed)
    return rows, client_rows, elapsed


def _progress(it, cfg, enabled, total, initial):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(
        it, total=total, initial=initial, desc=f"{cfg.algorithm} {cfg.dataset}", leave=False
    )


def _checkpoint(path: Path, S: Setup, rows, client_rows, done: int, elapsed: float) -> None:
    clients = [st.state_dict() for st in S.states]
    store.write_checkpoint(path, S.config, done, S.algo.server_state_dict(), rows, client_rows,
                           elapsed, clients=clients)


def _load_result(out: Path) -> RunResult:
    r = store.verify_run(out)
    clients = r["clients"] if r["clients"] is not None else pd.DataFrame()
    return RunResult(r["config"], r["metrics"], clients, r["summary"], out, "reused")
