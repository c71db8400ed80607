"""Adaptive prototype scaling (APS), TinyProto Sec. 4.2.

- Local scaling: a client uploads n_ij * p_ij (compressed by CPS when it is on), so the server
  never receives the class counts n_ij as separate values.
- Server aggregation: P~_j = sum_{i in N_j} n_ij p_ij (:func:`aggregate`; the authors' code and
  the default here); the paper's Eq. 10 also divides by |N_j| (``divide=True``, ``aps_divide``:
  :func:`per_holder`, the division FedProto's Eq. 9 mean makes too).
- Global scaling: clients use mu * P~_j (reconstructed to R^d under CPS) as the regulariser's
  target and for inference (Eq. 11); TinyProto-FT applies mu on the server instead (App. C).
"""

from __future__ import annotations

import torch


def scale_local(p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """n_ij * p_ij for the rows of ``p`` [k, D] and class counts ``n`` [k]."""
    return p * n.to(p.dtype).unsqueeze(1)


def aggregate(
    uploads: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int, *, divide: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the scaled uploads per class: returns (P~ [K, D], holders [K]).

    ``uploads`` holds one (classes [k_i], vectors [k_i, D]) pair per client. With ``divide``,
    P~_j is further divided by |N_j| (paper Eq. 10). Classes nobody holds stay zero, holders 0.
    """
    return sum_by_class(uploads, num_classes, mean=divide)


def scale_global(P: torch.Tensor, mu: float) -> torch.Tensor:
    """mu * P~ (Eq. 11's target)."""
    return P * mu


def sum_by_class(
    uploads: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int, *, mean: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sum (or mean over holders) of per-client vectors; returns (P [K, D], holders [K])."""
    if not uploads:
        raise ValueError("no uploads to aggregate")
    ref = uploads[0][1]
    total = torch.zeros(num_classes, ref.shape[1], dtype=ref.dtype, device=ref.device)
    holders = torch.zeros(num_classes, dtype=torch.long, device=ref.device)
    for classes, vectors in uploads:
        total.index_add_(0, classes, vectors)
        holders.index_add_(0, classes, torch.ones_like(classes))
    return (per_holder(total, holders) if mean else total), holders


def per_holder(total: torch.Tensor, holders: torch.Tensor) -> torch.Tensor:
    """Each class's row of ``total`` [K, D] divided by its holders [K] (rows nobody holds stay
    as they are): Eq. 9's mean, Eq. 10's division."""
    return total / holders.clamp(min=1).unsqueeze(1).to(total.dtype)
