"""FedTiny's pruning arithmetic (../shared/FEDTINY.md): which weights are masked and in which
blocks, what travels dense (and the float-state helpers that copy it in and out of a model,
also used by dense FedAvg), candidate and magnitude masks, prune/grow, bitmaps (a mask on the
wire), the cosine schedule, and the closed-form cost (``SparsePlan``, ``sparse_round_costs``).

A mask is a bool tensor shaped like its weight; ``kept`` (k_l) is its number of ones and ``size``
(n_l) its number of elements. Masked tensors: every Conv2d and Linear weight except the first
convolution; biases, BatchNorm parameters and statistics stay dense. Everything here is pure:
no global state, randomness only from the generators passed in; no message field names (those
are protocol.py's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinyproto.comm.message import MessageError

RELATIVE_TOLERANCE = 0.02  # a candidate's overall density is within 2 % of the target
MAX_DRAWS = 10_000  # per candidate, before the density is declared unreachable
INDEX_BYTES = 4  # a kept index in the index-list alternative, and in adjustment uploads


# -- which tensors are masked, in which blocks ---------------------------------------------------


def maskable(model: nn.Module) -> list[str]:
    """Names of the masked weights: every Conv2d / Linear weight but the first convolution."""
    names, first_conv = [], True
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and first_conv:
            first_conv = False
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            names.append(f"{name}.weight")
    return names


def dense_state(model: nn.Module, masked: list[str]) -> dict[str, tuple[int, ...]]:
    """{name: shape} of what travels dense: unmasked parameters and float buffers (BN stats)."""
    out = {n: tuple(p.shape) for n, p in model.named_parameters() if n not in masked}
    out.update({n: tuple(b.shape) for n, b in model.named_buffers() if b.is_floating_point()})
    return out


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters and float buffers (BN statistics), by name: what a
    homogeneous FedAvg averages (num_batches_tracked, an int, stays local)."""
    out = {n: p.detach().clone() for n, p in model.named_parameters()}
    out.update({n: b.clone() for n, b in model.named_buffers() if b.is_floating_point()})
    return out


@torch.no_grad()
def load_float_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy tensors into the named parameters / buffers of ``model`` (no reference is kept)."""
    named = dict(model.named_parameters())
    named.update(dict(model.named_buffers()))
    for name, t in tensors.items():
        named[name].copy_(t.view_as(named[name]))


def check_variances(tensors: dict[str, torch.Tensor], sender: str) -> None:
    """BatchNorm running variances are >= 0 (a negative one turns every feature into NaN)."""
    for name, t in tensors.items():
        if name.endswith("running_var") and t.numel() and bool((t < 0).any()):
            raise MessageError(
                f"message from {sender}: field {name!r} holds a negative variance "
                f"({float(t.min()):.3g})"
            )


def bn_stats(model: nn.Module) -> list[str]:
    """Names of the BatchNorm running means and variances (what ABNS adapts and uploads)."""
    bn = nn.modules.batchnorm._BatchNorm
    return [
        f"{name}.{stat}"
        for name, m in model.named_modules()
        if isinstance(m, bn) and m.track_running_stats
        for stat in ("running_mean", "running_var")
    ]


def blocks(model: nn.Module, masked: list[str]) -> list[list[str]]:
    """Masked layers grouped into blocks, the output's block first (``block`` mode's order).

    A block is a child of the feature extractor (a Sequential's children count one by one); the
    head joins the last block ("last stage + fc", then the stage before, ...).
    """
    order: list[str] = []
    members: dict[str, list[str]] = {}
    for name in masked:
        parts = name.split(".")
        key = parts[0]
        if parts[0] == "base" and len(parts) > 2:
            key = ".".join(parts[:2])
            child = model.get_submodule(key)
            if isinstance(child, nn.Sequential) and len(parts) > 3:
                key = ".".join(parts[:3])
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(name)
    groups = [members[k] for k in order]
    if len(groups) > 1 and order[-1] == "head":
        head = groups.pop()
        groups[-1] = groups[-1] + head
    return groups[::-1]


# -- masks ---------------------------------------------------------------------------------------


def top_k_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest |w| (ties: lower flat index first), as a mask shaped like w."""
    flat = w.detach().abs().flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=w.device)
    mask[order[:k]] = True
    return mask.view_as(w)


def candidate_masks(
    weights: dict[str, torch.Tensor], density: float, count: int, rng: np.random.RandomState
) -> list[dict[str, torch.Tensor]]:
    """Step 0: ``count`` masks; each draws d_l = d (1 + U(-0.5, 0.5)) per layer, redrawn until
    the overall density is within 2 % of d, and keeps the max(floor(d_l n_l), 1) largest |w|."""
    sizes = np.array([w.numel() for w in weights.values()], dtype=np.int64)
    out = []
    for c in range(count):
        best = None
        for _ in range(MAX_DRAWS):
            d_l = np.minimum(density * (1 + rng.uniform(-0.5, 0.5, len(sizes))), 1.0)
            kept = np.maximum(np.floor(d_l * sizes).astype(np.int64), 1)
            overall = kept.sum() / sizes.sum()
            if best is None or abs(overall - density) < abs(best - density):
                best = overall
            if abs(overall - density) <= RELATIVE_TOLERANCE * density:
                break
        else:
            raise ValueError(
                f"invalid density={density:g}: no per-layer draw of candidate {c} reaches it "
                f"within 2 % (closest {best:.4g}; the masked layers hold {int(sizes.sum())} "
                "weights, at least one kept per layer)"
            )
        out.append({n: top_k_mask(w, int(k)) for (n, w), k in zip(weights.items(), kept)})
    return out


def magnitude_mask(weights: dict[str, torch.Tensor], density: float) -> dict[str, torch.Tensor]:
    """One-shot global magnitude pruning: the round(d x sum n_l) largest |w| over all masked
    layers, at least one (its largest) per layer. Ties: earlier layer, lower index first."""
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    sizes = [w.numel() for w in weights.values()]
    total = max(round(density * flat.numel()), len(sizes))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    start = 0
    for n in sizes:  # the floor: each layer's largest weight
        top = torch.sort(flat[start : start + n], descending=True, stable=True).indices[0]
        keep[start + int(top)] = True
        start += n
    rest = torch.sort(flat.masked_fill(keep, -1.0), descending=True, stable=True).indices
    keep[rest[: total - len(sizes)]] = True
    out, start = {}, 0
    for (name, w), n in zip(weights.items(), sizes):
        out[name] = keep[start : start + n].view_as(w).clone()
        start += n
    return out


def prune_grow(
    w: torch.Tensor, mask: torch.Tensor, score: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Progressive pruning on one layer: drop the k active weights of smallest |w|, grow the k
    pruned positions of largest ``score`` (|mean gradient|; ties: lower index), grown at 0.
    Positions just dropped are not regrown. Returns (new weight, new mask); the count is kept."""
    flat_w, flat_m, flat_s = w.flatten(), mask.flatten(), score.flatten()
    k = min(k, int(flat_m.sum()), int((~flat_m).sum()))
    new = flat_m.clone()
    if k > 0:
        active = torch.nonzero(flat_m).squeeze(1)
        drop = active[torch.sort(flat_w[active].abs(), stable=True).indices[:k]]
        pruned = torch.nonzero(~flat_m).squeeze(1)
        grow = pruned[torch.sort(flat_s[pruned], descending=True, stable=True).indices[:k]]
        new[drop] = False
        new[grow] = True
    out = flat_w * new
    out[new & ~flat_m] = 0.0
    return out.view_as(w), new.view_as(mask)


# -- bitmaps: a mask on the wire, 1 bit per weight -----------------------------------------------

_BITS = torch.tensor([1 << b for b in range(8)], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A mask as uint8 [ceil(n / 8)]: bit b of byte j is flat position 8 j + b (padding 0)."""
    flat = mask.flatten().to("cpu", torch.uint8)
    pad = (-flat.numel()) % 8
    flat = torch.cat([flat, flat.new_zeros(pad)]).view(-1, 8)
    return (flat * _BITS).sum(1, dtype=torch.uint8).to(mask.device)


def unpack_bits(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of pack_bits: bool [n] (raises ValueError if a padding bit is set)."""
    flat = ((bits.to("cpu").unsqueeze(1) & _BITS) > 0).flatten()
    if flat[n:].any():
        raise ValueError("padding bits after the last weight are set")
    return flat[:n].to(bits.device)


def bitmap_bytes(n: int) -> int:
    return -(-n // 8)


# -- the schedule --------------------------------------------------------------------------------


def cosine_rate(k: int, total: int, a: float) -> float:
    """rate_k = (a / 2) (1 + cos(pi k / K_adj))."""
    return a / 2 * (1 + math.cos(math.pi * k / total))


def adjustment_rounds(train_rounds: int, every: int, until: int) -> list[int]:
    """Training rounds t (0-based) that adjust the mask: t = r for every r >= 1 completed
    training rounds with r % dT == 0 and r <= T_max (the round after such a round r)."""
    return list(range(every, min(until, train_rounds - 1) + 1, every))


def adjust_count(rate: float, kept: int, size: int) -> int:
    """K_l = ceil(rate x nnz_l), at most the pruned positions n_l - nnz_l."""
    return min(math.ceil(rate * kept), size - kept)


# -- the closed form of what FedTiny sends ---------------------------------------------------------


@dataclass(frozen=True)
class SparsePlan:
    """What FedTiny's messages carry, from sizes alone (nothing measured from messages).

    ``sizes`` n_l and ``kept`` k_l per masked layer (k_l is constant once the mask is chosen:
    prune/grow keeps the count), ``union`` the union of the candidate masks per layer (the one
    mask of one-shot pruning), ``dense`` the floats that travel dense (unmasked parameters and
    BN statistics), ``bn`` the BN statistics of one model, ``layer_blocks`` the indices of the
    masked layers per block, output first.
    """

    num_clients: int
    rounds: int
    sizes: tuple[int, ...]
    kept: tuple[int, ...]
    union: tuple[int, ...]
    candidate_kept: int  # kept weights summed over the C candidates (index-list alternative)
    dense: int
    bn: int
    candidates: int
    abns: bool  # the ABNS exchange happens (ABNS on and the model has BatchNorm)
    select: bool  # the candidate-selection exchange happens (False: one-shot magnitude)
    progressive: bool
    mode: str  # block | entire
    layer_blocks: tuple[tuple[int, ...], ...]
    adjust_every: int
    adjust_until: int
    adjust_rate: float

    @property
    def setup_rounds(self) -> int:
        return 1 + int(self.abns) + int(self.select)

    def adjustments(self) -> list[tuple[int, dict[int, int]]]:
        """[(training round t, {layer index: K_l})] in order."""
        if not self.progressive:
            return []
        train = self.rounds - self.setup_rounds
        ts = adjustment_rounds(train, self.adjust_every, self.adjust_until)
        out = []
        for k, t in enumerate(ts):
            rate = cosine_rate(k, len(ts), self.adjust_rate)
            if self.mode == "entire":
                layers = range(len(self.sizes))
            else:
                layers = self.layer_blocks[k % len(self.layer_blocks)]
            out.append((t, {i: adjust_count(rate, self.kept[i], self.sizes[i]) for i in layers}))
        return out


def sparse_round_costs(plan: SparsePlan) -> list[dict[str, int]]:
    """Per round: up/down floats and bytes, and the bytes of the masks sent (bitmaps) with
    their index-list alternative (4 bytes per kept index), every client in every round."""
    N, C = plan.num_clients, plan.candidates
    bits = sum(bitmap_bytes(n) for n in plan.sizes)
    kept, dense = sum(plan.kept), plan.dense
    model_floats = kept + dense
    rounds: list[dict[str, int]] = []

    def add(up_f=0, down_f=0, up_extra=0, down_extra=0, masks=0, index_alt=0):
        rounds.append(
            dict(
                upload_floats=N * up_f,
                download_floats=N * down_f,
                upload_bytes=N * (4 * up_f + up_extra),
                download_bytes=N * (4 * down_f + down_extra),
                mask_bytes=N * masks,
                index_list_bytes=N * index_alt,
            )
        )

    if plan.select:  # candidates: union values + dense, C bitmaps
        union = sum(plan.union) + dense
        alt = INDEX_BYTES * plan.candidate_kept
        add(down_f=union, down_extra=C * bits, masks=C * bits, index_alt=alt)
        if plan.abns:  # C sets of BN statistics up and down
            add(up_f=C * plan.bn, down_f=C * plan.bn)
        add(up_f=C, down_extra=8)  # C summed losses up (counts are metadata), the choice down
    else:  # one-shot: the pruned model and its mask
        add(down_f=model_floats, down_extra=bits, masks=bits, index_alt=INDEX_BYTES * kept)
    adjust = dict(plan.adjustments())
    for t in range(plan.rounds - plan.setup_rounds):
        entries = sum(adjust.get(t, {}).values())
        changed = t in adjust
        add(
            up_f=model_floats + entries,
            down_f=model_floats,
            up_extra=INDEX_BYTES * entries,
            down_extra=bits if changed else 0,
            masks=bits if changed else 0,
            index_alt=INDEX_BYTES * kept if changed else 0,
        )
    return rounds[: plan.rounds]
