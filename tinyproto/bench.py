"""``tinyproto bench``: where a round's time goes, and how far it is from a bare PyTorch loop.

Builds a run exactly as ``tinyproto run`` does (``engine.setup``, the same flags) and drives a few
rounds the way ``engine.run`` does (same order, seeds from ``engine.seed_for``), writing nothing
but one CSV. A round is split into

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
The wrappers are installed only while the bench runs; the numerics of the rounds are those
of a run (a benchmark, not a test: timings vary between machines and runs).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tinyproto.clientpool import open_clients, pool_size, pool_threads

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


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand (every ``run`` flag, plus the bench's own) and return it."""
    from tinyproto.cli import _add_config_flags, int_at_least

    p = subparsers.add_parser(
        "bench",
        help="time a few rounds of a config against a bare PyTorch loop (writes one CSV)",
        description="Time a few rounds of the config the flags describe (the same flags as "
        "`tinyproto run`), split into train (per architecture), prototypes, messages, server, "
        "eval and overhead, against a bare PyTorch training loop over the same models and "
        "batches. Writes results/bench/<profile>-<run-id>-<device>.csv; no run folder.",
    )
    _add_config_flags(p)
    b = p.add_argument_group("bench")
    b.add_argument(
        "--bench-rounds",
        type=int_at_least("bench_rounds", 1),
        default=2,
        metavar="N",
        help="timed rounds (2)",
    )
    b.add_argument(
        "--warmup",
        type=int_at_least("warmup", 0),
        default=1,
        metavar="N",
        help="untimed rounds before them (1)",
    )
    b.add_argument("--out", default=None, metavar="CSV", help="CSV path (default above)")
    return p


class _Clock:
    """Accumulates seconds per key; synchronises CUDA around every measurement."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.sec: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def part(self, key: str):
        t0 = self.now()
        try:
            yield
        finally:
            self.sec[key] += self.now() - t0


@contextlib.contextmanager
def _wrapped(clock: _Clock, current: dict):
    """Time ``train_local`` and ``class_means`` in every algorithm module that calls them."""
    from tinyproto.algorithms import common

    orig = {"train_local": common.train_local, "class_means": common.class_means}
    key = {"train_local": "train", "class_means": "prototypes"}

    def wrap(name):
        fn = orig[name]

        def timed(*a, **kw):
            with clock.part(key[name]), clock.part(f"{key[name]}:{current['arch']}"):
                return fn(*a, **kw)

        return timed

    patched = []
    for mod in [m for n, m in list(sys.modules.items()) if n.startswith("tinyproto.algorithms")]:
        for name, fn in orig.items():
            if getattr(mod, name, None) is fn:
                patched.append((mod, name, fn))
                setattr(mod, name, wrap(name))
    try:
        yield
    finally:
        for mod, name, fn in patched:
            setattr(mod, name, fn)


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

    def __init__(self, S, sizes: dict[str, list[int]], clock: _Clock):
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
    component and per architecture (columns ``COLUMNS``). Writes nothing."""
    from tinyproto import engine
    from tinyproto.algorithms.common import min_last_batch
    from tinyproto.config import check_environment

    cfg = config
    cfg.validate()
    check_environment(cfg, None)
    S = engine.setup(cfg)
    algo, states, data = S.algo, S.states, S.data
    clock = _Clock(S.device)
    current = {"arch": ""}
    arch_of = [st.model.arch for st in states]
    sizes: dict[str, list[int]] = defaultdict(list)
    for st, d in zip(states, data):
        mods = [m for m, _ in st.trained()]
        mn = min_last_batch(mods, cfg.batch_size)
        sizes[st.model.arch] += batch_sizes(d.num_train, cfg.batch_size, mn, cfg.local_epochs)

    runtime = open_clients(S) if pool_size(cfg) > 1 else None

    def one_round(rnd: int) -> None:
        if runtime is not None:  # clients side by side in worker processes: train = client time
            with clock.part("client"), clock.part("train"):
                trained = runtime.train(rnd, range(len(states)))
            with clock.part("server"):
                downloads = algo.server_round({c: t[0] for c, t in trained.items()}, rnd)
            with clock.part("receive"):
                runtime.receive(downloads)
            with clock.part("eval"):
                runtime.evaluate(range(len(states)))
            return
        uploads = {}
        for cid, (st, d) in enumerate(zip(states, data)):
            current["arch"] = arch_of[cid]
            s = engine.seed_for(cfg.seed, rnd, cid)
            torch.manual_seed(s)
            gen = torch.Generator().manual_seed(s)
            with clock.part("client"):
                uploads[cid], _ = algo.client_round(st, d, rnd, gen)
        with clock.part("server"):
            downloads = algo.server_round(uploads, rnd)
        with clock.part("receive"):
            for cid, st in enumerate(states):
                algo.receive(st, downloads[cid])
        with clock.part("eval"):
            for st, d in zip(states, data):
                engine.evaluate(algo, st, d)

    lower = BareLoop(S, sizes, clock)
    bare: dict[str, float] = defaultdict(float)
    ratios = []
    try:
        with _wrapped(clock, current):
            for rnd in range(warmup):
                one_round(rnd)
            clock.sec.clear()
            for rnd in range(warmup, warmup + rounds):  # interleaved: a round, then its bound
                before = clock.sec.get("total", 0.0)
                with clock.part("total"):
                    one_round(rnd)
                this = lower.round()
                for arch, t in this.items():
                    bare[arch] += t / rounds
                ratios.append((clock.sec["total"] - before) / sum(this.values()))
    finally:
        if runtime is not None:
            runtime.close()
    sec = {k: v / rounds for k, v in clock.sec.items()}
    df = _table(S, sec, dict(bare), sizes)
    df.attrs["round_ratios"] = ratios
    return df


def _table(S, sec: dict, bare: dict, sizes: dict) -> pd.DataFrame:
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
        threads=torch.get_num_threads(),
        client_workers=pool_size(cfg),
        worker_threads=pool_threads(cfg),
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
    pooled = cfg.client_workers > 1  # training ran in worker processes: no split per arch
    for arch, bs in sizes.items():
        seconds = math.nan if pooled else sec.get(f"train:{arch}", 0.0)
        rows.append(row("train", arch, seconds, len(bs), bare[arch]))
        rows.append(row("bare", arch, bare[arch], len(bs), bare[arch]))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def default_path(config, device: str) -> Path:
    from tinyproto import store

    # client_workers is not in the run id (it does not change a run's numbers), but it changes
    # the timings: a bench with workers gets its own file instead of overwriting the other
    pooled = f"-clientworkers{pool_size(config)}" if pool_size(config) > 1 else ""
    name = f"{config.profile}-{config.run_id()}{pooled}-{torch.device(device).type}.csv"
    return store.results_root() / "bench" / name


def summary_lines(df: pd.DataFrame) -> list[str]:
    """Human-readable lines: the split of a round, per-arch training, the ratios."""
    r0 = df.iloc[0]
    tot = df[(df.component == "total")].iloc[0]
    lines = [
        f"bench    {r0.config_id} ({r0.profile}, {r0.family}, {r0.num_clients} clients) "
        f"on {r0.device}, {r0.threads} threads",
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


def cmd(args) -> int:
    from tinyproto import store
    from tinyproto.cli import config_from_args

    cfg = config_from_args(args)
    df = bench(cfg, rounds=args.bench_rounds, warmup=args.warmup)
    if pool_size(cfg) > 1:
        print(
            f"clients  in {pool_size(cfg)} worker processes, {pool_threads(cfg)} torch "
            "thread(s) each; the bare loop runs here with all threads"
        )
    out = Path(args.out) if args.out else default_path(cfg, str(df.device.iloc[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_csv(out, df)
    for line in summary_lines(df):
        print(line)
    print(f"saved    {out}")
    return 0
