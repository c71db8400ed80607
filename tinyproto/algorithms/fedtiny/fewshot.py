"""FedTiny's server-side setup data: a few labelled images per class that no client holds, and
the pre-training of the shared model on them (../shared/FEDTINY.md, "Setup"). Only the server
(server.py) uses it; the data it reads are outside every client's split."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import Context
from tinyproto.algorithms.common import min_last_batch
from tinyproto.config import Config, ConfigError
from tinyproto.data import load_dataset, make_synthetic, stratified_subset


def server_shots(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """The server's few-shot set: ``fedtiny_shots`` images per class that no client holds.

    Real data: drawn from the images outside the run's stratified subset (the engine keeps
    ``max_samples`` of them, seed ``partition_seed``; Config requires room for the shots).
    Synthetic: fresh draws of the same class templates (same seed, other noise).
    """
    cfg = ctx.config
    shots = cfg.fedtiny.shots
    if cfg.dataset == "synthetic":
        ds = make_synthetic(cfg.num_classes, shots * cfg.num_classes, 1, 28, cfg.partition_seed)
        return ds.images(torch.arange(len(ds))), ds.y
    ds = _full_dataset(cfg.dataset, cfg.data_dir)
    try:
        idx = outside_shots(ds.y.numpy(), cfg.max_samples, cfg.partition_seed, shots, cfg.seed)
    except ValueError as e:
        raise ConfigError(f"invalid fedtiny_shots={shots}: {e} of {cfg.dataset}") from None
    idx = torch.from_numpy(idx)
    return ds.images(idx), ds.y[idx]


@functools.lru_cache(maxsize=1)
def _full_dataset(name: str, data_dir: str | None):
    """The whole data set, once per process (a sweep of FedTiny runs reads it once)."""
    return load_dataset(name, data_dir)


def outside_shots(
    labels: np.ndarray, max_samples: int | None, subset_seed: int, shots: int, seed: int
) -> np.ndarray:
    """Sorted indices of ``shots`` images per class outside the stratified subset the engine
    loads (``max_samples`` of them, seed ``subset_seed``), drawn with ``seed``."""
    held = np.zeros(len(labels), dtype=bool)
    if max_samples is not None and max_samples < len(labels):
        held[stratified_subset(labels, max_samples, subset_seed)] = True
    rng = np.random.RandomState(seed + 7_777)
    chosen = []
    for k in range(int(labels.max()) + 1):
        free = np.flatnonzero((labels == k) & ~held)
        if len(free) < shots:
            raise ValueError(f"class {k} has {len(free)} images outside the clients' data")
        chosen.append(rng.choice(free, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))


def pretrain(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config
) -> torch.nn.Module:
    """``fedtiny.pretrain_epochs`` epochs of SGD (the run's lr and batch size, shuffled from the
    run's seed) on the few-shot set; returns ``model``, trained in place."""
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 7_919 + 3_000_017)
    B, n = cfg.batch_size, len(y)
    min_last = min_last_batch([model], B)
    model.train()
    for _ in range(cfg.fedtiny.pretrain_epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        starts = list(range(0, n, B))
        if len(starts) > 1 and n - starts[-1] < min_last:
            starts.pop()
        for i, s in enumerate(starts):
            b = perm[s : starts[i + 1] if i + 1 < len(starts) else n]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[b])[1], y[b]).backward()
            opt.step()
    return model
