"""Class-wise prototype sparsification (CPS), TinyProto Sec. 4.1.

Each class j owns a fixed binary mask m_j in {0,1}^d with exactly s ones (s = "CPS dim").

- Eq. 7, sparsify:    S(p; m) = m * p             (stays in R^d)
- Eq. 8, compress:    C(p; m) = p[m]              (the s masked entries, in index order)
- reconstruct:        R(c; m) puts c back at the mask's positions, zeros elsewhere

Only compressed vectors cross the network. Masks are made once from a seed and shared by server
and clients before training. They maximise pairwise Hamming distance: disjoint supports when
K*s <= d; otherwise every dimension is used by floor(K*s/d) or ceil(K*s/d) classes and pairwise
overlaps are kept as even as a greedy construction can make them.
"""

from __future__ import annotations

import numpy as np
import torch


def make_masks(num_classes: int, dim: int, cps_dim: int, seed: int = 0) -> torch.BoolTensor:
    """Class masks [K, d] with exactly ``cps_dim`` ones per row; deterministic per seed."""
    K, d, s = int(num_classes), int(dim), int(cps_dim)
    if K < 1:
        raise ValueError(f"invalid num_classes={num_classes!r}: an integer >= 1")
    if d < 1:
        raise ValueError(f"invalid dim={dim!r}: an integer >= 1")
    if not 1 <= s <= d:
        raise ValueError(f"invalid cps_dim={cps_dim!r}: an integer in [1, dim={d}]")
    rng = np.random.RandomState(seed)
    masks = np.zeros((K, d), dtype=bool)
    if K * s <= d:  # disjoint supports: a random permutation cut into consecutive blocks
        perm = rng.permutation(d)
        for j in range(K):
            masks[j, perm[j * s : (j + 1) * s]] = True
        return torch.from_numpy(masks)
    # Overlapping supports. Greedy: each class takes s distinct dimensions from the least used
    # ones (this keeps usage counts within 1 of each other at every step), preferring, among
    # equally used dimensions, those whose current users overlap least with this class so far
    # (marginal increase of the sum of squared overlaps); a small seeded jitter breaks ties.
    usage = np.zeros(d, dtype=np.int64)
    M = np.zeros((K, d), dtype=np.float64)
    for j in range(K):
        overlap = np.zeros(j)
        chosen = np.zeros(d, dtype=bool)
        jitter = rng.random_sample(d) * 1e-3
        for _ in range(s):
            level = usage[~chosen].min()
            cost = M[:j].T @ (2 * overlap + 1) + jitter  # [d]
            cost[(usage != level) | chosen] = np.inf
            t = int(np.argmin(cost))
            chosen[t] = True
            usage[t] += 1
            overlap += M[:j, t]
        M[j] = chosen
    if s < d:
        _even_out_overlaps(M, rng)
    return torch.from_numpy(M.astype(bool))


def _even_out_overlaps(M: np.ndarray, rng: np.random.RandomState, sweeps: int = 100) -> None:
    """Local search: class j hands a dimension t to class l in exchange for u (usage per
    dimension and ones per class unchanged); keep the exchange when the sum of squared pairwise
    overlaps drops. Same total overlap, spread more evenly. In place, deterministic per rng."""
    K, d = M.shape
    O = M @ M.T
    np.fill_diagonal(O, 0)
    for it in range(sweeps * K):
        if it % 2:  # targeted: j gives away a dimension it shares with its most-overlapping class
            j = rng.randint(K)
            k = int(np.argmax(O[j] + rng.random_sample(K) * 1e-3))
            shared = np.flatnonzero((M[j] > 0) & (M[k] > 0))
            if shared.size == 0:
                continue
            t = shared[rng.randint(shared.size)]
            lacking = np.flatnonzero(M[:, t] == 0)
            if lacking.size == 0:
                continue
            l = lacking[rng.randint(lacking.size)]
        else:
            j, l = rng.randint(K), rng.randint(K)
            if j == l:
                continue
            give = np.flatnonzero((M[j] > 0) & (M[l] == 0))  # t: j has, l lacks
            if give.size == 0:
                continue
            t = give[rng.randint(give.size)]
        take = np.flatnonzero((M[l] > 0) & (M[j] == 0))  # u: l has, j lacks
        if take.size == 0:
            continue
        u = take[rng.randint(take.size)]
        # overlaps of j and l with every other class k after the exchange; (j, l) is unchanged
        dj = M[:, u] - M[:, t]  # j loses t, gains u; l the opposite
        others = np.ones(K, dtype=bool)
        others[[j, l]] = False
        new_j, new_l = O[j] + dj, O[l] - dj
        delta = ((new_j**2 - O[j] ** 2) * others).sum() + ((new_l**2 - O[l] ** 2) * others).sum()
        if delta < 0:
            M[j, t], M[j, u], M[l, u], M[l, t] = 0, 1, 0, 1
            O[j, others], O[l, others] = new_j[others], new_l[others]
            O[others, j], O[others, l] = new_j[others], new_l[others]


def sparsify(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Eq. 7: S(p; m) = m * p. ``p`` [..., d] and ``m`` broadcastable to it."""
    return p * m.to(p.dtype)


def compress(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Eq. 8: C(p; m), the entries of p where m is 1, in index order.

    ``p`` [d] with ``m`` [d] -> [s]; ``p`` [n, d] with ``m`` [n, d] (one mask per row, each with
    s ones) -> [n, s].
    """
    if p.shape != m.shape:
        raise ValueError(
            f"compress: prototype shape {tuple(p.shape)} != mask shape {tuple(m.shape)}"
        )
    m = m.to(device=p.device, dtype=torch.bool)
    if p.dim() == 1:
        return p[m]
    s = int(m[0].sum())
    return p[m].reshape(p.shape[0], s)


def reconstruct(c: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """R(c; m): put the s values of ``c`` back at the mask's positions; zeros elsewhere.

    ``c`` [s] with ``m`` [d] -> [d]; ``c`` [n, s] with ``m`` [n, d] -> [n, d].
    """
    m = m.to(device=c.device, dtype=torch.bool)
    expected = int(m.sum())
    if c.numel() != expected:
        raise ValueError(f"reconstruct: {c.numel()} values do not fit a mask with {expected} ones")
    out = torch.zeros(m.shape, dtype=c.dtype, device=c.device)
    out[m] = c.reshape(-1)
    return out


def hamming_stats(masks: torch.Tensor) -> dict:
    """Pairwise Hamming distances and dimension usage of a mask set [K, d]."""
    m = masks.to(torch.float64)
    K = m.shape[0]
    ones = m.sum(1)
    overlap = m @ m.T
    ham = ones[:, None] + ones[None, :] - 2 * overlap
    usage = m.sum(0)
    if K > 1:
        iu = torch.triu_indices(K, K, offset=1)
        pair = ham[iu[0], iu[1]]
        ov = overlap[iu[0], iu[1]]
        h_min, h_mean, h_max = pair.min().item(), pair.mean().item(), pair.max().item()
        o_min, o_max = ov.min().item(), ov.max().item()
    else:
        h_min = h_mean = h_max = o_min = o_max = float("nan")
    return {
        "num_classes": K,
        "dim": m.shape[1],
        "cps_dim": int(ones[0].item()),
        "hamming_min": h_min,
        "hamming_mean": h_mean,
        "hamming_max": h_max,
        "overlap_min": o_min,
        "overlap_max": o_max,
        "usage_min": int(usage.min().item()),
        "usage_max": int(usage.max().item()),
    }


def off_mask_share(pairs, masks: torch.Tensor) -> float:
    """Share of the local prototypes' energy off their classes' masks:
    sum_ij ||p_ij * (1 - m_j)||^2 / sum_ij ||p_ij||^2 over (classes [k], p [k, d]) pairs.

    Without structure (energy spread evenly over the d dimensions) it is 1 - s/d; structurally
    sparse local prototypes (paper Fig. 2, App. A) bring it towards 0. NaN without energy.
    """
    off, total = None, None
    for classes, p in pairs:
        e = p.detach().float().pow(2)
        o, t = (e * (~masks[classes])).sum(), e.sum()
        off, total = (o, t) if off is None else (off + o, total + t)
    if off is None:
        return float("nan")
    off, total = torch.stack([off, total]).tolist()
    return off / total if total > 0 else float("nan")
