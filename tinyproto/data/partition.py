"""Federated partitions, following HtFLlib: Dirichlet label skew, then a 75/25 split per client.

:func:`dirichlet_partition` replays HtFLlib's "dir" draw exactly (the same RandomState calls in
the same order); :func:`split_train_test` sizes each client's split as sklearn's
``train_test_split`` does; :func:`make_federated` does both for a :class:`Dataset`.
:func:`stratified_subset` picks the class-stratified subset that ``max_samples`` asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tinyproto.data.base import Dataset


class PartitionError(ValueError):
    """No Dirichlet draw met ``least_samples`` within ``max_tries`` (a setting, not a bug)."""


def class_counts(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Per-class counts of ``labels`` (length ``num_classes``, int64)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded class-stratified random subset of ``size`` samples.

    Each class keeps its share (largest-remainder rounding, ties to the lower class index).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if size < 1:
        raise ValueError(f"max_samples={size} is invalid; use a positive integer")
    if size >= n:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(labels)
    exact = counts * size / n
    quota = np.floor(exact).astype(np.int64)
    rest = size - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))
    quota[order[:rest]] += 1
    rng = np.random.RandomState(seed)
    chosen = []
    for k, q in enumerate(quota):
        idx_k = np.flatnonzero(labels == k)
        if q:
            chosen.append(rng.choice(idx_k, size=int(q), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def htfllib_least_samples(
    num_samples: int, num_clients: int, batch_size: int = 10, train_ratio: float = 0.75
) -> int:
    """HtFLlib's own ``least_samples``: int(min(batch_size / (1 - train_ratio), N / clients / 2)).

    With HtFLlib's generation defaults (batch_size 10, train_ratio 0.75) this is 40 for the
    usual dataset sizes: every client must hold at least one test batch.
    """
    return int(min(batch_size / (1 - train_ratio), num_samples / num_clients / 2))


def dirichlet_partition(
    labels: np.ndarray | torch.Tensor,
    num_clients: int,
    alpha: float,
    seed: int = 1,
    least_samples: int = 1,
    *,
    num_classes: int | None = None,
    max_tries: int = 10_000,
) -> list[np.ndarray]:
    """HtFLlib's Dirichlet label-skew partition ("dir"), replaying its exact draw sequence.

    ``np.random.RandomState(seed)`` stands for HtFLlib's global ``np.random.seed(seed)``. For
    each class in order: shuffle its indices, draw Dir(alpha), zero the share of every client
    already holding >= N / num_clients samples, renormalise and cut. The whole draw repeats while
    some client holds fewer than ``least_samples``. Returns one int64 index array per client.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got {labels.shape}")
    if labels.min() < 0:
        raise ValueError("labels must be >= 0")
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise ValueError(f"num_clients={num_clients} is invalid; use an integer >= 1")
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha={alpha} is invalid; use a finite number > 0")
    n = labels.shape[0]
    int_ok = isinstance(least_samples, (int, np.integer))
    if not int_ok or not 1 <= least_samples <= n / num_clients:
        raise ValueError(
            f"least_samples={least_samples} is invalid; use an integer in 1..N/num_clients "
            f"= {n / num_clients:g}"
        )
    k_max = int(labels.max()) + 1
    k = k_max if num_classes is None else int(num_classes)
    if k < k_max:
        raise ValueError(f"num_classes={num_classes} is smaller than max label + 1 = {k_max}")
    if max_tries < 1:
        raise ValueError(f"max_tries={max_tries} is invalid; use an integer >= 1")

    rng = np.random.RandomState(seed)
    class_idx = [np.where(labels == c)[0] for c in range(k)]
    limit = n / num_clients
    for _ in range(max_tries):
        batches: list[list[int]] = [[] for _ in range(num_clients)]
        for c in range(k):
            idx_k = class_idx[c].copy()
            rng.shuffle(idx_k)
            proportions = rng.dirichlet(np.repeat(alpha, num_clients))
            if len(idx_k) == 0:  # nothing to cut (HtFLlib would divide 0/0 here only if all
                continue  # clients were full, which needs every sample already placed)
            open_ = np.array([len(b) < limit for b in batches])
            proportions = proportions * open_
            proportions = proportions / proportions.sum()
            cuts = (np.cumsum(proportions) * len(idx_k)).astype(int)[:-1]
            for b, part in zip(batches, np.split(idx_k, cuts)):
                b.extend(part.tolist())
        if min(len(b) for b in batches) >= least_samples:
            return [np.array(b, dtype=np.int64) for b in batches]
    raise PartitionError(
        f"dirichlet_partition: no draw gave every client >= {least_samples} samples in "
        f"{max_tries} tries (num_clients={num_clients}, alpha={alpha}); lower least_samples "
        "or num_clients, or raise alpha"
    )


def split_train_test(
    idx: np.ndarray, train_fraction: float = 0.75, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``idx`` with RandomState(seed) and split it into (train, test).

    Sizes follow sklearn's ``train_test_split(train_size=f)``: n_train = floor(f * n), the rest
    is test (for f = 0.75 this equals n_test = ceil(0.25 * n)). Where that leaves no training
    sample (n = 1), the one sample goes to train instead (sklearn would refuse).
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction={train_fraction} is invalid; use 0 < value < 1")
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    n = idx.shape[0]
    n_train = int(math.floor(train_fraction * n))
    if n_train == 0 and n > 0:
        n_train = 1
    perm = np.random.RandomState(seed).permutation(n)
    shuffled = idx[perm]
    return shuffled[:n_train].copy(), shuffled[n_train:].copy()


@dataclass
class ClientSplit:
    """One client's data: index tensors into the Dataset and class counts."""

    train_idx: torch.Tensor
    test_idx: torch.Tensor
    train_counts: np.ndarray
    full_counts: np.ndarray


@dataclass
class FederatedData:
    """A dataset plus its per-client train/test splits."""

    dataset: Dataset
    clients: list[ClientSplit]
    num_classes: int

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.clients)


def make_federated(
    dataset: Dataset,
    num_clients: int,
    alpha: float,
    *,
    partition_seed: int = 1,
    split_seed: int = 0,
    train_fraction: float = 0.75,
    least_samples: int = 1,
    validation: float = 0.0,
) -> FederatedData:
    """Partition ``dataset`` over clients (Dirichlet, HtFLlib) and split each client 75/25.

    ``validation`` > 0 (for tuning): the last ``floor(validation * n_train)`` samples (at least
    one, and at least one left to train on) of each client's shuffled training split become
    its evaluation split (``test_idx``) and its test split is dropped: nothing is ever
    evaluated on the test data. The training split is the rest. A client with fewer than two
    training samples has nothing to spare and evaluates on nothing.
    """
    if not 0 <= validation < 1:
        raise ValueError(f"invalid validation={validation!r}: a share in [0, 1)")
    labels = dataset.y.detach().cpu().numpy()
    k = dataset.num_classes
    parts = dirichlet_partition(
        labels,
        num_clients,
        alpha,
        seed=partition_seed,
        least_samples=least_samples,
        num_classes=k,
    )
    device = dataset.x.device
    clients = []
    for i, part in enumerate(parts):
        # mod 2**32: RandomState's range; the same seeds as before for split_seed < 42949
        seed_i = (split_seed * 100003 + i) % 2**32
        train, test = split_train_test(part, train_fraction, seed=seed_i)
        if validation > 0:  # the test split is dropped: never evaluated in a tuning run
            if len(train) >= 2:  # train is already in shuffled order
                n_val = min(max(1, int(math.floor(validation * len(train)))), len(train) - 1)
                train, test = train[: len(train) - n_val].copy(), train[len(train) - n_val :].copy()
            else:  # nothing to spare: this client evaluates on nothing
                test = train[:0].copy()
        clients.append(
            ClientSplit(
                train_idx=torch.from_numpy(train).to(device),
                test_idx=torch.from_numpy(test).to(device),
                train_counts=class_counts(labels[train], k),
                full_counts=class_counts(labels[part], k),
            )
        )
    return FederatedData(dataset=dataset, clients=clients, num_classes=k)
