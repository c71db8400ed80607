"""Secure aggregation of class-wise uploads: the server learns the per-class sums, no upload.

The count-recovery attack (``tinyproto.privacy``) reads each client's class counts from the
norms of its APS-scaled rows; local DP cannot hide them without ruining accuracy
(docs/privacy.md). But TinyProto-FP's server needs only P~_j = sum_i C(n_ij p_ij; m_j) per class
(and FedProto's and FedDistill's only the per-class sums and how many clients hold each class),
so the pairwise masking of Bonawitz et al. (CCS 2017) applies: with ``Config.secure_agg`` every
sampled client uploads one fixed-shape table that, on its own, is uniformly random, and the
tables of a round add up to the true sums.

Client i, in round r, with the round's sampled clients S (``config.participation``, which
every client can compute, as the server does):

1. builds the dense table X_i [K, w + 1]: row j is its (DP-noised, CPS-compressed, APS-scaled)
   upload row for class j and a 1 in the last column if it holds class j, zeros otherwise (so
   the class list is hidden too);
2. encodes it in fixed point on the ring Z_{2^64}: x -> round(x 2^FRACTION_BITS) (two's
   complement), refusing a value whose sum over the clients could leave the ring's range;
3. adds, for every other j in S, the mask M_ij = PRG(key_{min(i,j), max(i,j)}, r) if i < j, and
   subtracts it if i > j (mod 2^64); the masks cancel in the sum over S;
4. uploads ``{"masked": int64 [K, w + 1]}`` (8 bytes a value, K (w + 1) values, every round).

The server (``unmask_sum``) adds the uploads of S mod 2^64 and decodes the sum: the per-class
totals [K, w] and the holders [K] (the last column, which must decode to an integer in
[0, |S|], else the sum is refused: a client sent a malformed table). A missing upload of S
leaves masks in the sum, so the round is refused in one line (dropout recovery, Bonawitz's
secret-shared seeds, is not implemented; ``drop_rate`` > 0 is refused with ``secure_agg``).

What is simulated: the pair keys. In the protocol each pair agrees on key_{ij} by Diffie-Hellman
through the server; here :func:`pair_key` derives them from the run's seed and a secret
constant, which only client code reads (the server's code never does). An honest-but-curious
server is what this hides uploads from; a malicious server (lying about S, forging keys) or
malicious clients (a corrupted table corrupts the sum undetectably) are out of scope.

Fixed point: FRACTION_BITS = 24 (resolution 6e-8, as fine as float32 at 0.5; the decoded sum
differs from the float32 sum by at most |S| 2^-25 per value plus float32's own rounding) and
|value| < 2^(62 - 24) / |S| per client. The closed form of the upload's bytes: 8 K (w + 1).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from tinyproto.comm.message import Message, MessageError

FRACTION_BITS = 24
SCALE = float(2**FRACTION_BITS)
FIELD = "masked"
_SECRET = b"tinyproto secure aggregation: simulated pairwise key agreement"


def pair_key(seed: int, a: int, b: int) -> bytes:
    """The key clients ``a`` < ``b`` share (simulated key agreement: module docstring)."""
    return hashlib.sha256(_SECRET + f"|{seed}|{a}|{b}".encode()).digest()


def pair_mask(key: bytes, rnd: int, shape: tuple[int, int]) -> np.ndarray:
    """The pair's mask of round ``rnd``: uniform uint64 values from a PRG seeded by (key, rnd)."""
    words = [int.from_bytes(key[i : i + 4], "little") for i in range(0, len(key), 4)]
    gen = np.random.Generator(np.random.PCG64(words + [rnd]))
    return gen.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)


def limit(num_clients: int) -> float:
    """The largest |value| a client may mask: |S| of them must sum inside the ring's range."""
    return 2.0 ** (62 - FRACTION_BITS) / max(num_clients, 1)


def upload_bytes(num_classes: int, width: int) -> int:
    """The closed form of one masked upload's bytes (int64 [K, w + 1])."""
    return 8 * num_classes * (width + 1)


def mask(
    msg: Message, key: str, num_classes: int, width: int, seed: int, rnd: int, cid: int, sampled
) -> Message:
    """Client ``cid``'s masked table (steps 1-4 of the module docstring) for the class-wise
    upload ``msg`` = {"classes": [k], key: [k, width]}, in round ``rnd`` of the clients
    ``sampled``."""
    sampled = tuple(sorted(int(c) for c in sampled))
    if cid not in sampled:
        raise MessageError(f"client {cid}: secure aggregation: not among the round's clients")
    classes = msg["classes"].detach().cpu().long()
    rows = msg[key].detach().cpu().to(torch.float64)
    table = torch.zeros(num_classes, width + 1, dtype=torch.float64)
    table[classes, :width] = rows
    table[classes, width] = 1.0
    if not bool(torch.isfinite(table).all()):
        raise MessageError(f"client {cid}: secure aggregation: field {key!r} holds NaN or inf")
    bound = limit(len(sampled))
    big = float(table.abs().max())
    if big >= bound:
        raise MessageError(
            f"client {cid}: secure aggregation: a value of {big:.3g} leaves the fixed-point "
            f"range +-{bound:.3g} of {len(sampled)} clients (clip the uploads with --dp-clip)"
        )
    fixed = np.rint(table.numpy() * SCALE).astype(np.int64).view(np.uint64)
    shape = fixed.shape
    for other in sampled:
        if other == cid:
            continue
        m = pair_mask(pair_key(seed, min(cid, other), max(cid, other)), rnd, shape)
        fixed = fixed + m if cid < other else fixed - m  # uint64: arithmetic mod 2^64
    return Message({FIELD: torch.from_numpy(fixed.view(np.int64).copy())})


def check(msg: Message, sender: str, num_classes: int, width: int) -> torch.Tensor:
    """The masked table of one upload (MessageError unless it is exactly int64 [K, w + 1])."""
    names = set(msg.arrays)
    if names != {FIELD}:
        extra = ", ".join(sorted(names - {FIELD})) or "none"
        raise MessageError(
            f"message from {sender}: a secure-aggregation upload holds exactly the array "
            f"{FIELD!r}; got {sorted(names)} (unexpected: {extra})"
        )
    t = msg[FIELD]
    want = (num_classes, width + 1)
    if t.dtype != torch.int64 or tuple(t.shape) != want:
        raise MessageError(
            f"message from {sender}: field {FIELD!r} is {str(t.dtype).removeprefix('torch.')} "
            f"{list(t.shape)}, expected int64 {list(want)}"
        )
    return t


def unmask_sum(tables: dict[int, torch.Tensor], sampled, rnd: int, width: int):
    """The per-class sums [K, width] (float32) and holders [K] (int64) of the round's masked
    tables {client id: int64 [K, width + 1]}; MessageError (one line) when a client of
    ``sampled`` is missing (its masks stay in the sum) or the sum does not decode."""
    sampled = tuple(sorted(int(c) for c in sampled))
    missing = sorted(set(sampled) - set(tables))
    foreign = sorted(set(tables) - set(sampled))
    if missing or foreign:
        what = (
            f"clients {missing} sent no upload"
            if missing
            else f"clients {foreign} were not sampled"
        )
        raise MessageError(
            f"server: round {rnd + 1}: secure aggregation needs the upload of every sampled "
            f"client; {what}, so the pair masks do not cancel (dropout recovery is not "
            "implemented)"
        )
    total = np.zeros(next(iter(tables.values())).shape, dtype=np.uint64)
    for cid in sampled:
        total = total + tables[cid].detach().cpu().numpy().view(np.uint64)
    values = total.view(np.int64).astype(np.float64) / SCALE
    holders = values[:, width]
    counts = np.rint(holders)
    if not (
        np.all(np.abs(holders - counts) < 1e-6) and np.all((counts >= 0) & (counts <= len(sampled)))
    ):
        raise MessageError(
            f"server: round {rnd + 1}: the secure-aggregation sum does not decode (its holder "
            f"counts are not integers in [0, {len(sampled)}]): a client's masked table is "
            "malformed"
        )
    sums = torch.from_numpy(values[:, :width]).to(torch.float32)
    return sums, torch.from_numpy(counts.astype(np.int64))


def decode_alone(table: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a curious server reads from ONE masked table taken as unmasked fixed point:
    (classes [K], rows [K, width]) for the count-recovery attack (``tinyproto.privacy``)."""
    values = table.detach().cpu().numpy().astype(np.float64) / SCALE
    K = values.shape[0]
    return torch.arange(K), torch.from_numpy(values[:, :width])
