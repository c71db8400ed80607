"""What a finished run writes besides its metrics: ``summary.json`` (accuracy, communication,
data, compute, environment) and ``prototypes.npz`` (the final local and global prototypes)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tinyproto.cps import hamming_stats
from tinyproto.store import runs as store


def summarise_run(S, metrics: pd.DataFrame, elapsed: float, runtime: str = "engine") -> dict:
    """summary.json of a finished run, the same keys from every runtime. ``S``: the run's
    ``runtime.setup.Setup``; where it holds no client states (the Flower server: the models
    stay on the SuperNodes) the per-client report (FLOPs, step memory, architectures) is left
    out and the runtime adds what it measured itself (Flower: the bytes on the wire)."""
    cfg, fed = S.config, S.fed
    acc = metrics["test_acc"]
    best_idx = int(acc.idxmax())
    up = metrics["upload_floats"].mean()
    down = metrics["download_floats"].mean()
    U_train = int(sum((c.train_counts > 0).sum() for c in fed.clients))
    U_full = int(sum((c.full_counts > 0).sum() for c in fed.clients))
    summary = {
        "run_id": cfg.run_id(),
        "runtime": runtime,
        "algorithm": cfg.algorithm,
        "dataset": cfg.dataset,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "best_acc": float(acc.max()),
        "best_round": int(metrics["round"][best_idx]),
        "last_acc": float(acc.dropna().iloc[-1]),
        "rounds": len(metrics),
        "upload_floats_per_round": float(up),
        "download_floats_per_round": float(down),
        "comm_floats_per_round": float(up + down),
        "comm_bytes_per_round": float((metrics["upload_bytes"] + metrics["download_bytes"]).mean()),
        "classes_present_train": U_train,
        "classes_present_full": U_full,
        "num_classes": fed.num_classes,
        "num_train": int(sum(c.train_idx.numel() for c in fed.clients)),
        "num_test": int(sum(c.test_idx.numel() for c in fed.clients)),
        # what test_acc was measured on: the test splits, or (tuning runs) validation splits
        # carved from the training data
        "evaluated_on": "validation" if cfg.validation else "test",
        "mu_resolved": S.ctx.mu,
        "cps_dim": cfg.cps_dim,
        "feature_dim": cfg.feature_dim,
        "data_source": fed.dataset.source,
        "archs": dict(S.archs),
        "wall_seconds": float(elapsed),
        "seconds_per_round": float(elapsed / max(len(metrics), 1)),
        "device": str(S.device),
        "torch_threads": torch.get_num_threads(),  # CPU numerics are deterministic per count
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    summary["expected_floats_per_round"] = S.algo.expected_floats(U_train)
    if cfg.dp_clip is not None:  # local DP: the accountant's epsilon
        from tinyproto.comm import dp

        rows = int(max((c.train_counts > 0).sum() for c in fed.clients))
        summary["dp_delta"] = dp.DELTA
        summary["dp_epsilon"] = dp.epsilon(cfg.dp_noise, len(metrics), rows, dp.DELTA)
    if all(st is not None for st in S.states):  # FLOPs and step memory (algorithms.compute)
        summary.update(S.algo.report(S.states, S.data))
    if S.ctx.masks is not None:
        summary["masks"] = hamming_stats(S.ctx.masks.cpu())
    return summary


def save_prototypes(out: Path, S) -> None:
    """Final local prototypes [N, K, d] (zeros where a client lacks the class, or never trained:
    a client partial participation never sampled holds none), the mask of who holds what, and
    the global prototypes clients use (reconstructed, scaled) [K, d], as the first client that
    received them holds them (zeros and ``has_global`` False where none did)."""
    K, d, N = S.ctx.num_classes, S.ctx.feature_dim, len(S.states)
    local = np.zeros((N, K, d), dtype=np.float32)
    holds = np.zeros((N, K), dtype=bool)
    glob = np.zeros((K, d), dtype=np.float32)
    has = np.zeros(K, dtype=bool)
    found_global = False
    for cid, st in enumerate(S.states):
        p = S.algo.prototypes(st)
        if p.classes is not None and p.local is not None:
            local[cid, p.classes.cpu().numpy()] = p.local.detach().cpu().numpy()
            holds[cid, p.classes.cpu().numpy()] = True
        if not found_global and p.target is not None:
            glob = p.target.detach().cpu().numpy().astype(np.float32)
            has = p.has_target.cpu().numpy().astype(bool)
            found_global = True
    arrays = {"local": local, "holds": holds, "global": glob, "has_global": has}
    if S.ctx.masks is not None:
        arrays["masks"] = S.ctx.masks.cpu().numpy()
    store.write_npz(out / "prototypes.npz", **arrays)
