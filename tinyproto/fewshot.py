"""FedTiny's server-side data: a few labelled images per class that no client holds, and the
pre-training of the shared model on them (../shared/FEDTINY.md, "Setup")."""

from __future__ import annotations

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
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    held = np.zeros(len(ds), dtype=bool)
    if cfg.max_samples is not None and cfg.max_samples < len(ds):
        held[stratified_subset(ds.y.numpy(), cfg.max_samples, cfg.partition_seed)] = True
    rng = np.random.RandomState(cfg.seed + 7_777)
    chosen = []
    for k in range(ds.num_classes):
        free = np.flatnonzero((ds.y.numpy() == k) & ~held)
        if len(free) < shots:
            raise ConfigError(
                f"invalid fedtiny_shots={shots}: class {k} of {cfg.dataset} has {len(free)} "
                "images outside the clients' data; lower it or max_samples"
            )
        chosen.append(rng.choice(free, size=shots, replace=False))
    idx = torch.from_numpy(np.sort(np.concatenate(chosen)))
    return ds.images(idx), ds.y[idx]


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
