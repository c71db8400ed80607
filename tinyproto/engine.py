"""The in-process federated loop: rounds, evaluation, metrics, checkpoints, resume.

One round (METHOD.md): every client trains locally (1 epoch, SGD) and uploads a message; the
server aggregates and returns one message per client; each client stores what it received; then
every client is evaluated on its own test split (Eq. 12 for prototype methods) and the round's
accuracy is total correct / total test samples. Communication is measured from the messages.
With ``join_ratio`` < 1 or ``drop_rate`` > 0 only the sampled clients train and only the uploads
that arrive are aggregated (tinyproto.participation); every client is still evaluated.

All randomness is derived from (seed, round, client), so a run resumed from a checkpoint ends
with exactly the numbers of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tinyproto import store
from tinyproto.algorithms import Algorithm, ClientData, ClientState, Context, build_algorithm
from tinyproto.clientpool import open_clients
from tinyproto.config import Config, ConfigError, check_device, check_environment
from tinyproto.cps import make_masks, off_mask_share
from tinyproto.data import FederatedData, PartitionError, load_dataset, make_federated
from tinyproto.failures import record_rows
from tinyproto.message import MessageError
from tinyproto.models import client_model, client_seed, count_params
from tinyproto.participation import ids, is_partial, participation
from tinyproto.runreport import save_prototypes, summarise_run


@dataclass
class RunResult:
    config: Config
    metrics: pd.DataFrame  # one row per round
    clients: pd.DataFrame  # one row per (evaluated round, client)
    summary: dict
    run_dir: Path

    @property
    def best_acc(self) -> float:
        return self.summary["best_acc"]

    @property
    def last_acc(self) -> float:
        return self.summary["last_acc"]


@dataclass
class Setup:
    """Everything built before round 0: data on the device, masks, models, the algorithm.

    ``states[cid]`` is client cid's typed state; the engine hands it to the algorithm's client
    methods and never reads inside it. ``archs`` maps each client architecture to its size.
    """

    config: Config
    device: torch.device
    fed: FederatedData
    ctx: Context
    algo: Algorithm
    states: list[ClientState | None]  # None: a client this process does not run (Flower)
    data: list[ClientData]
    archs: dict[str, int]

    @functools.cached_property
    def share_masks(self) -> torch.Tensor:
        """Masks the per-round ``off_mask_share`` is measured against: the run's CPS masks; for
        runs without CPS the masks CPS would use (s = d // 10, mask_seed), the reference."""
        if self.ctx.masks is not None:
            return self.ctx.masks
        K, d = self.ctx.num_classes, self.ctx.feature_dim
        return make_masks(K, d, max(1, d // 10), seed=self.config.mask_seed).to(self.device)


def seed_for(seed: int, rnd: int, cid: int) -> int:
    return (seed * 1_000_003 + rnd * 10_007 + cid * 101 + 12345) % (2**62)


def setup(config: Config, clients: Iterable[int] | None = None) -> Setup:
    """Load data onto the device, partition it, make masks, build models and the algorithm.

    ``clients``: whose models and states to build (default: all); a Flower ClientApp builds its
    own, the ServerApp none. The others' entries in ``states`` are None.
    """
    cfg = config
    device = check_device(cfg.device)  # ConfigError if this machine lacks it
    torch.set_flush_denormal(True)  # denormal floats slow CPU kernels by orders of magnitude
    ds = (
        load_dataset(
            cfg.dataset,
            cfg.data_dir,
            max_samples=cfg.max_samples,
            seed=cfg.partition_seed,
            num_classes=cfg.num_classes,
            synthetic_samples=cfg.max_samples or 2000,
        )
        .to(device)
        .prepared()
    )  # normalised once on the device where it fits
    try:
        fed = make_federated(
            ds,
            cfg.num_clients,
            cfg.alpha,
            partition_seed=cfg.partition_seed,
            split_seed=cfg.partition_seed,
            train_fraction=cfg.train_fraction,
            least_samples=cfg.least_samples,
        )
    except PartitionError as e:  # no Dirichlet draw meets least_samples
        raise ConfigError(
            f"invalid least_samples={cfg.least_samples} with num_clients={cfg.num_clients}, "
            f"alpha={cfg.alpha}: {str(e).splitlines()[0]}"
        ) from None
    K = fed.num_classes
    masks = (
        make_masks(K, cfg.feature_dim, cfg.cps_dim, seed=cfg.mask_seed) if cfg.uses_cps else None
    )
    if masks is not None:
        masks = masks.to(device)
    n_train = sum(int(c.train_idx.numel()) for c in fed.clients)
    mu = cfg.resolve_mu(n_train / K)
    ctx = Context(
        config=cfg,
        num_classes=K,
        feature_dim=cfg.feature_dim,
        device=device,
        masks=masks,
        mu=mu,
        in_channels=ds.channels,
        image_size=ds.image_size,
        num_clients=cfg.num_clients,
    )
    algo = build_algorithm(ctx)
    data = [ClientData(ds, split) for split in fed.clients]
    S = Setup(cfg, device, fed, ctx, algo, [None] * cfg.num_clients, data, {})
    for cid in range(cfg.num_clients) if clients is None else sorted(set(clients)):
        add_client(S, cid)
    return S


def add_client(S: Setup, cid: int) -> ClientState:
    """Build client ``cid``'s model and state into ``S.states[cid]``: its initial weights
    depend on the run's seed and its id only, whichever clients were built before."""
    cfg, ctx = S.config, S.ctx
    torch.manual_seed(client_seed(cfg.seed, cid))
    model = client_model(
        cfg.family,
        cid,
        num_classes=ctx.num_classes,
        feature_dim=cfg.feature_dim,
        in_channels=ctx.in_channels,
        image_size=ctx.image_size,
    ).to(S.device)
    S.archs.setdefault(model.arch, count_params(model))
    state = S.algo.init_client(cid, model)
    if cfg.compile != "off":  # in place: state_dict keys (checkpoints, messages) stay the same
        for module, _ in state.trained():
            module.compile(mode=cfg.compile)
    S.states[cid] = state
    return state


def evaluate(algo: Algorithm, state: ClientState, data: ClientData) -> int:
    """Number of correct predictions on the client's test split (the client's own step)."""
    return algo.evaluate(state, data)


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
    ``reuse``: return a finished run with the same id from disk (verified) instead of
    recomputing. ``resume``: continue from the run folder's checkpoint if there is one.
    ``restart``: discard the folder's checkpoint and files (e.g. damaged ones) and start over.
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
    base = Path(root) if root is not None else store.runs_root(cfg.profile)
    out = store.run_dir(cfg, base)
    ckpt_path = out / store.CHECKPOINT
    if out.exists() and not out.is_dir():
        raise store.RunFolderError(f"{out}: a file where the run folder should be; move it away")
    if out.is_dir() and not restart:
        if (out / "config.json").exists():
            store.read_config(out)  # damaged or foreign: refuse before computing anything
        if reuse and store.is_complete(out):  # reading needs no device, memory or write access
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
    runtime = open_clients(S)  # in this process, or client_workers processes side by side
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
        return RunResult(cfg, metrics, clients, {}, out)
    summary = summarise_run(S, metrics, elapsed)
    if runtime.threads is not None:  # the clients trained in client_workers processes
        summary.update(torch_threads=runtime.threads, client_workers=runtime.workers)
    store.write_csv(out / "metrics.csv", metrics)
    store.write_csv(out / "clients.csv", clients)
    if algo.prototype_based and cfg.save_prototypes:
        save_prototypes(out, S)
    store.write_json(out / "summary.json", summary)
    if ckpt_path.exists():
        ckpt_path.unlink()
    for stale in (store.FAILED, store.FAILED_METRICS):  # the run finished after all
        (out / stale).unlink(missing_ok=True)
    return RunResult(cfg, metrics, clients, summary, out)


def _rounds(S: Setup, clients, rows, client_rows, start, elapsed, stop_after, progress, ckpt_path):
    """Rounds ``start`` .. the end (or ``stop_after``): train, aggregate, receive, evaluate,
    checkpoint; returns the grown (rows, client_rows, elapsed)."""
    cfg, algo, data = S.config, S.algo, S.data
    end = cfg.rounds if stop_after is None else min(cfg.rounds, stop_after)
    bar = _progress(range(start, end), cfg, progress, total=cfg.rounds, initial=start)
    for rnd in bar:
        t0 = time.perf_counter()
        part = participation(cfg, rnd)  # everyone, unless join_ratio < 1 or drop_rate > 0
        trained = clients.train(rnd, part.sampled)
        losses = {cid: trained[cid][1] for cid in part.sampled}
        weights = [data[cid].num_train for cid in part.sampled]
        # a dropped client trained; its upload is lost
        uploads = {cid: trained[cid][0] for cid in part.sampled if cid not in part.dropped}
        try:  # a refused message ends the run: say in which round (e.g. a divergence)
            downloads = algo.server_round(uploads, rnd) if uploads else {}
            clients.receive(downloads)
        except MessageError as e:
            if str(e).startswith("server: round"):  # the server's own errors name the round
                raise
            raise MessageError(f"round {rnd + 1} of {cfg.rounds}: {e}") from None
        row = {
            "round": rnd + 1,
            "train_loss": float(np.average(list(losses.values()), weights=weights)),
            "upload_floats": sum(m.floats() for m in uploads.values()),
            "download_floats": sum(m.floats() for m in downloads.values()),
            "upload_bytes": sum(m.nbytes() for m in uploads.values()),
            "download_bytes": sum(m.nbytes() for m in downloads.values()),
            "test_acc": float("nan"),
        }
        if algo.prototype_based:  # structure of the local prototypes (paper Fig. 2, App. A)
            local = [trained[cid][2] for cid in part.sampled]
            row["off_mask_share"] = off_mask_share([p for p in local if p], S.share_masks)
        if is_partial(cfg):  # who took part: clients whose upload was aggregated, and lost ones
            row.update(clients=ids(uploads), dropped=ids(part.dropped))
        if (rnd + 1) % cfg.eval_every == 0 or rnd + 1 == cfg.rounds:
            correct = clients.evaluate(range(len(data)))
            for cid, d in enumerate(data):
                client_rows.append(
                    {
                        "round": rnd + 1,
                        "client": cid,
                        "test_acc": correct[cid] / max(d.num_test, 1),
                        "test_samples": d.num_test,
                        "train_loss": losses.get(cid, float("nan")),  # nan: not sampled
                    }
                )
            n_total = sum(d.num_test for d in data)
            row["test_acc"] = sum(correct.values()) / max(n_total, 1)
        row["seconds"] = time.perf_counter() - t0
        elapsed += row["seconds"]
        rows.append(row)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(acc=f"{row['test_acc']:.4f}", loss=f"{row['train_loss']:.3f}")
        done = rnd + 1
        if done < cfg.rounds and (
            (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end
        ):
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
    state = {
        "format": store.CHECKPOINT_FORMAT,
        "run_id": S.config.run_id(),
        "round": done,
        "clients": [st.state_dict() for st in S.states],
        "server": S.algo.server_state_dict(),
        "rows": rows,
        "client_rows": client_rows,
        "elapsed": elapsed,
        "config": S.config.to_dict(),
    }
    store.write_torch(path, state)


def _load_result(out: Path) -> RunResult:
    r = store.verify_run(out)
    clients = r["clients"] if r["clients"] is not None else pd.DataFrame()
    return RunResult(r["config"], r["metrics"], clients, r["summary"], out)
