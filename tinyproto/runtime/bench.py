"""The bench: where a round's time goes, and how far it is from a bare PyTorch loop.

Builds a run exactly as ``tinyproto run`` does (``runtime.setup``, the same flags) and runs a few
of its rounds with the engine's own round (``runtime.step.run_round``), writing nothing (the
``tinyproto bench`` command, ``cli.bench``, writes one CSV). The parts are timed by the hooks
of ``tinyproto.timing`` inside the code a run executes. A round is split into

    train       local training (``common.train_local``), also per client architecture
    prototypes  per-class means of features or logits (``common.class_means``)
    messages    the rest of ``client_round`` (the upload) and ``receive`` (the download)
    server      ``server_round`` (checks and aggregation)
    eval        ``algo.evaluate`` on every client (timed on every bench round)
    overhead    round wall time minus the parts above (seeding, loop, loss bookkeeping)

The lower bound (``bare``) is, per architecture, one fresh model of that architecture trained by
an eager forward + cross-entropy + backward + SGD step loop over the same batches (sizes) as its
clients, from an already normalised image tensor on the device. ``ratio`` = round time / bare
time; the bench alternates a timed round with a bare round, so both see the same load. Rows with ``arch`` "all" cover the whole round, the others one architecture's clients.
The clock is installed only while the bench runs; the numerics of the rounds are those of a
run (a benchmark, not a test: timings vary between machines and runs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tinyproto import timing
from tinyproto.runtime import step
from tinyproto.runtime.clients import open_clients, run_numerics
from tinyproto.runtime.setup import setup

COMPONENTS = ("train", "prototypes", "messages", "server", "eval", "overhead")
COLUMNS = (
    "config_id",
    "profile",
    "dataset",
    "family",
    "algorithm",
    "num_clients",
    "device",
    "threads",
    "client_workers",
    "worker_threads",
    "component",
    "arch",
    "seconds_per_round",
    "steps",
    "ms_per_step",
    "bare_seconds",
    "ratio",
)


def batch_sizes(n: int, batch_size: int, min_last: int, epochs: int) -> list[int]:
    """The batch sizes ``ClientData.train_batches`` yields for n samples, over ``epochs``."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < min_last:
        starts.pop()
    ends = starts[1:] + [n]
    return [e - s for s, e in zip(starts, ends)] * epochs


def _sgd_steps(model, opt, x_all, y_all, batches: list[int]) -> None:
    """The lower bound's loop: eager forward, cross-entropy, backward, SGD step; no copies."""
    for b in batches:
        loss = F.cross_entropy(model(x_all[:b])[1], y_all[:b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


class BareLoop:
    """The lower bound, per architecture: a fresh model trained by a bare eager loop over the
    batch sizes in ``sizes``; ``round()`` times one round's worth and returns seconds per arch.
    The bench interleaves its rounds with the framework's, so both see the same machine load."""

    def __init__(self, S, sizes: dict[str, list[int]], clock: timing.Clock):
        from tinyproto.models import build_model

        ctx, cfg = S.ctx, S.config
        ds = S.data[0].dataset
        n_max = max((max(v) for v in sizes.values() if v), default=1)
        idx = torch.arange(min(n_max, ds.y.numel()), device=ds.y.device)
        self.x_all, self.y_all = ds.images(idx), ds.y[idx]
        self.sizes, self.clock, self.models = sizes, clock, {}
        with torch.random.fork_rng(devices=[S.device] if clock.cuda else []):
            torch.manual_seed(0)
            for arch, bs in sizes.items():
                model = build_model(
                    arch,
                    num_classes=ctx.num_classes,
                    feature_dim=ctx.feature_dim,
                    in_channels=ctx.in_channels,
                    image_size=ctx.image_size,
                ).to(S.device)
                model.train()
                opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
                _sgd_steps(model, opt, self.x_all, self.y_all, bs[:5])  # warm-up: allocator
                self.models[arch] = (model, opt)

    def round(self) -> dict[str, float]:
        out = {}
        for arch, bs in self.sizes.items():
            model, opt = self.models[arch]
            t0 = self.clock.now()
            _sgd_steps(model, opt, self.x_all, self.y_all, bs)
            out[arch] = self.clock.now() - t0
        return out


def bench(config, rounds: int = 2, warmup: int = 1) -> pd.DataFrame:
    """Time ``rounds`` rounds of ``config`` (after ``warmup`` untimed ones): one row per
    component and per architecture (columns ``COLUMNS``). Writes nothing.

    A round is ``runtime.step.run_round``, the engine's own, on the engine's own clients
    (``runtime.clients.open_clients``: in this process or in worker processes, as ``tinyproto
    run`` decides with the same flags, "auto" by default) with one torch thread per computation
    (``runtime.clients.run_numerics``), every client evaluated; the parts are timed by the hooks
    of ``tinyproto.timing``. The bare loop runs in this process with all its torch threads."""
    from tinyproto.algorithms.common import min_last_batch
    from tinyproto.runtime.environment import check_environment

    cfg = config
    cfg.validate()
    device = check_environment(cfg, None)
    cores = torch.get_num_threads()
    with run_numerics(device):
        S = setup(cfg)
    clock = timing.Clock(cuda=S.device.type == "cuda")
    sizes: dict[str, list[int]] = defaultdict(list)
    for st, d in zip(S.states, S.data):
        mods = [m for m, _ in st.trained()]
        mn = min_last_batch(mods, cfg.batch_size)
        sizes[st.model.arch] += batch_sizes(d.num_train, cfg.batch_size, mn, cfg.local_epochs)

    runtime = open_clients(S, cores)
    lower = BareLoop(S, sizes, clock)
    bare: dict[str, float] = defaultdict(float)
    ratios = []
    try:
        with timing.installed(clock):
            for rnd in range(warmup):
                with run_numerics(S.device):
                    step.run_round(S, runtime, rnd, [], evaluate_now=True)
            clock.sec.clear()
            for rnd in range(warmup, warmup + rounds):  # interleaved: a round, then its bound
                before = clock.sec.get("total", 0.0)
                with clock.part("total"), run_numerics(S.device):
                    step.run_round(S, runtime, rnd, [], evaluate_now=True)
                this = lower.round()
                for arch, t in this.items():
                    bare[arch] += t / rounds
                ratios.append((clock.sec["total"] - before) / sum(this.values()))
    finally:
        runtime.close()
    sec = {k: v / rounds for k, v in clock.sec.items()}
    df = _table(S, sec, dict(bare), sizes, runtime, cores)
    df.attrs["round_ratios"] = ratios
    return df


def _table(S, sec: dict, bare: dict, sizes: dict, runtime, cores: int) -> pd.DataFrame:
    cfg = S.config
    parts = {
        "train": sec.get("train", 0.0),
        "prototypes": sec.get("prototypes", 0.0),
        "server": sec.get("server", 0.0),
        "eval": sec.get("eval", 0.0),
    }
    parts["messages"] = (
        sec.get("client", 0.0) - parts["train"] - parts["prototypes"] + sec.get("receive", 0.0)
    )
    total = sec["total"]
    parts["overhead"] = total - sum(parts.values())
    bare_total = sum(bare.values())
    n_steps = sum(len(v) for v in sizes.values())
    base = dict(
        config_id=cfg.run_id(),
        profile=cfg.profile,
        dataset=cfg.dataset,
        family=cfg.family,
        algorithm=cfg.algorithm,
        num_clients=cfg.num_clients,
        device=str(S.device),
        threads=cores,  # the bare loop's
        client_workers=runtime.workers,
        worker_threads=runtime.threads if runtime.threads is not None else cores,
    )

    def row(component, arch, seconds, steps, bare_s):
        return dict(
            base,
            component=component,
            arch=arch,
            seconds_per_round=seconds,
            steps=steps,
            ms_per_step=1e3 * seconds / steps if steps else math.nan,
            bare_seconds=bare_s,
            ratio=seconds / bare_s if bare_s else math.nan,
        )

    rows = [row(c, "all", parts[c], math.nan, math.nan) for c in COMPONENTS]
    rows[0].update(row("train", "all", parts["train"], n_steps, bare_total))
    rows.append(row("total", "all", total, n_steps, bare_total))
    rows.append(row("bare", "all", bare_total, n_steps, bare_total))
    pooled = runtime.workers > 1  # training ran in worker processes: no split per arch
    for arch, bs in sizes.items():
        seconds = math.nan if pooled else sec.get(f"train:{arch}", 0.0)
        rows.append(row("train", arch, seconds, len(bs), bare[arch]))
        rows.append(row("bare", arch, bare[arch], len(bs), bare[arch]))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def default_path(config, device: str, when: str | None = None, workers: int = 1) -> Path:
    """results/bench/<profile>-<run id>[-clientworkers W]-<device>-<when>.csv: a measurement
    is a record of one sitting, so each gets its own file (``when``: UTC time, YYYYmmdd-HHMMSS,
    now by default) and none overwrites a committed one. ``workers``: the client processes the
    bench ran (its ``client_workers`` column)."""
    import time

    from tinyproto import store

    # the execution mode is not in the run id (it does not change a run's numbers), but it
    # changes the timings: a bench with workers is named apart
    pooled = f"-clientworkers{workers}" if workers > 1 else ""
    when = when or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = f"{config.profile}-{config.run_id()}{pooled}-{torch.device(device).type}-{when}.csv"
    return store.results_root() / "bench" / name


def _mode(r) -> str:
    if r.client_workers > 1:
        return (
            f"clients  in {r.client_workers} worker processes, {r.worker_threads} torch "
            f"thread each; the bare loop here with {r.threads}"
        )
    return (
        f"clients  in this process, {r.worker_threads} torch thread(s); the bare loop with "
        f"{r.threads}"
    )


def summary_lines(df: pd.DataFrame) -> list[str]:
    """Human-readable lines: the split of a round, per-arch training, the ratios."""
    r0 = df.iloc[0]
    tot = df[(df.component == "total")].iloc[0]
    lines = [
        f"bench    {r0.config_id} ({r0.profile}, {r0.family}, {r0.num_clients} clients) "
        f"on {r0.device}, {r0.threads} threads",
        _mode(r0),
        f"round    {tot.seconds_per_round:.3f} s, bare loop {tot.bare_seconds:.3f} s: "
        f"ratio {tot.ratio:.2f}",
    ]
    per_round = df.attrs.get("round_ratios") or []
    if len(per_round) > 1:
        lines.append(
            "per round " + ", ".join(f"{r:.2f}" for r in per_round) + " (each round timed "
            "right before its bare loop)"
        )
    for _, r in df[(df.arch == "all") & df.component.isin(COMPONENTS)].iterrows():
        share = r.seconds_per_round / tot.seconds_per_round if tot.seconds_per_round else 0
        lines.append(f"  {r.component:<16}{r.seconds_per_round:9.3f} s  {100 * share:5.1f} %")
    for _, r in df[(df.arch != "all") & (df.component == "train")].iterrows():
        if math.isnan(r.seconds_per_round):  # client_workers > 1: trained in worker processes
            continue
        lines.append(
            f"  {r.arch:<16}{r.seconds_per_round:9.3f} s  {int(r.steps)} steps, "
            f"{r.ms_per_step:.2f} ms/step; bare {r.bare_seconds:.3f} s: ratio {r.ratio:.2f}"
        )
    return lines
