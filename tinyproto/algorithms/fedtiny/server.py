"""FedTiny's server side: its state between rounds (``TinyServer``) and its steps.

Before round 0 the server pre-trains the shared model on its few-shot set (fewshot.py) and
builds the candidate pool (or the one-shot magnitude mask); then it runs the ABNS and selection
exchanges, then sparse FedAvg with progressive pruning. It answers each upload by its kind
(protocol.py: join, ABNS statistics, candidate losses, a trained model). It reads the run-wide
constants (constants.py) and its own state only; the steps take that state as an argument.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from tinyproto import comm
from tinyproto.algorithms.base import Context, ServerState
from tinyproto.algorithms.common import read_count, weighted_mean
from tinyproto.algorithms.fedtiny.constants import FedTinyConstants
from tinyproto.algorithms.fedtiny.fewshot import pretrain, server_shots
from tinyproto.algorithms.fedtiny.protocol import (
    CHOICE_KEY,
    LOSS_KEY,
    SERVER_ACCEPTS,
    VAL_KEY,
    VERSION_KEY,
    Download,
    EnumValues,
    Field,
    Phase,
    Upload,
    bn_key,
    cand_key,
    field_of,
    gidx_key,
    grad_key,
    mask_key,
    reply_to,
    upload_kind,
)
from tinyproto.algorithms.fedtiny.pruning import (
    INDEX_BYTES,
    SparsePlan,
    candidate_masks,
    check_variances,
    float_state,
    magnitude_mask,
    pack_bits,
    prune_grow,
)
from tinyproto.comm import Message, MessageError, expect, read_config
from tinyproto.config import ConfigError
from tinyproto.models import count_params


@dataclass
class TinyServer(EnumValues, ServerState):
    """The server between rounds. ``pretrained``/``candidates``/``bn_agg`` live until the mask
    is chosen; then ``values`` (kept weights per masked layer, in mask order), ``dense`` and
    ``masks`` are the global sparse model, at mask ``version``. ``phase`` is stored as its
    value string."""

    phase: Phase = Phase.SELECT  # what the server waits for
    pretrained: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    bn_agg: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # per candidate: sample-weighted mean loss
    chosen: int = -1
    values: dict = field(default_factory=dict)
    dense: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    version: int = 0
    client_versions: dict = field(default_factory=dict)
    union: list = field(default_factory=list)  # |union of the candidates| per layer
    candidate_kept: int = 0
    mask_bytes: dict = field(default_factory=dict)  # round -> bitmap bytes sent
    index_list_bytes: dict = field(default_factory=dict)  # round -> the index-list alternative


class FedTinyServer:
    """The server's steps over a ``TinyServer`` passed in (``Algorithm``'s server side:
    ``init_server``, ``check_upload``, ``aggregate``; and what the engine reports)."""

    def __init__(self, consts: FedTinyConstants, ctx: Context):
        self.k = consts
        self.ctx = ctx
        self.cfg = ctx.config
        self.device = ctx.device
        # the largest |value| an upload may carry: N of them must sum to a finite float32
        self.bound = comm.sum_bound(ctx.num_clients)

    # -- before round 0: pre-training and the candidate pool ------------------------------------
    def init_server(self) -> TinyServer:
        k, cfg, opts = self.k, self.cfg, self.cfg.fedtiny
        model = pretrain(copy.deepcopy(k.initial), *server_shots(self.ctx), cfg)
        pre = float_state(model)
        weights = {name: pre[name] for name in k.masked}
        rng = np.random.RandomState(cfg.seed * 7_919 + 4_000_037)
        try:
            cands = (
                candidate_masks(weights, opts.density, k.C, rng)
                if k.select
                else [magnitude_mask(weights, opts.density)]
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        S = TinyServer(pretrained=pre, candidates=cands)
        S.union = [int(torch.stack([c[name] for c in cands]).any(0).sum()) for name in k.masked]
        S.candidate_kept = int(sum(int(m.sum()) for c in cands for m in c.values()))
        S.phase = Phase.BN if k.abns else Phase.SELECT
        if not k.select:
            self.choose(S, 0)
        return S

    def choose(self, S: TinyServer, c: int) -> None:
        """The global model: pre-trained weights times candidate c's mask, with the aggregated
        BN statistics (ABNS) or the pre-trained ones; the setup state is dropped."""
        k = self.k
        S.chosen, S.masks = c, S.candidates[c]
        S.values = {n: S.pretrained[n][S.masks[n]].clone() for n in k.masked}
        S.dense = {n: S.pretrained[n].clone() for n in k.dense_spec}
        if k.abns:
            S.dense.update({n: t.clone() for n, t in S.bn_agg[c].items()})
        S.phase, S.version = Phase.TRAIN, 1
        S.pretrained, S.candidates, S.bn_agg = {}, [], []

    # -- uploads --------------------------------------------------------------------------------
    def check_upload(self, S: TinyServer, msg: Message, sender: str):
        """(kind, checked tensors, weight, mask version) of one upload, or MessageError."""
        k, kind = self.k, upload_kind(msg, sender)
        if kind not in SERVER_ACCEPTS[S.phase]:
            field_ = next(iter(msg.arrays))
            raise MessageError(
                f"message from {sender}: field {comm.show(field_)} belongs to a {kind.value} "
                f"upload, but the server waits for {S.phase.value} uploads (no mask chosen yet)"
            )
        if kind is Upload.JOIN:
            return kind, {}, 0, 0
        if kind is Upload.BN:
            if not k.abns:
                raise MessageError(
                    f"message from {sender}: unexpected field {comm.show(next(iter(msg.arrays)))} "
                    "(this run exchanges no BN statistics)"
                )
            t = expect(msg, sender, k.bn_fields(), bound=self.bound, device=self.device)
            check_variances(t, sender)
            return kind, t, read_positive(msg, sender, VAL_KEY), 0
        if kind is Upload.LOSS:
            spec = {LOSS_KEY: ("float", (k.C,))}
            t = expect(msg, sender, spec, bound=self.bound, device=self.device)
            if bool((t[LOSS_KEY] < 0).any()):
                raise MessageError(
                    f"message from {sender}: field {LOSS_KEY!r} holds a negative loss"
                )
            return kind, t, read_positive(msg, sender, VAL_KEY), 0
        kept = self.kept(S)
        spec = {n: ("float", (kept[n],)) for n in k.masked}
        spec.update(k.dense_spec)
        for n in k.masked:
            if grad_key(n) in msg.arrays or gidx_key(n) in msg.arrays:
                spec[grad_key(n)], spec[gidx_key(n)] = ("float", (None,)), (torch.int32, (None,))
        t = expect(msg, sender, spec, bound=self.bound, device=self.device)
        check_variances(t, sender)
        version = read_config(msg, sender, VERSION_KEY, int)
        return kind, t, read_count(msg, sender), version

    def aggregate(self, S: TinyServer, uploads: dict, rnd: int) -> dict[int, Message]:
        k = self.k
        by_kind: dict[Upload, dict] = {}
        for cid, (kind, t, n, version) in uploads.items():
            by_kind.setdefault(kind, {})[cid] = (t, n, version)
        chosen_now = False
        if S.phase is Phase.BN and Upload.BN in by_kind:
            ups = by_kind[Upload.BN].values()
            S.bn_agg = [
                {
                    n: weighted_mean([t[bn_key(c, n)] for t, _, _ in ups], [w for _, w, _ in ups])
                    for n in k.bn_names
                }
                for c in range(k.C)
            ]
            S.phase = Phase.SELECT
        elif S.phase is Phase.SELECT and Upload.LOSS in by_kind:
            ups = list(by_kind[Upload.LOSS].values())
            total = torch.stack([t[LOSS_KEY] for t, _, _ in ups]).sum(0)
            S.losses = (total / sum(w for _, w, _ in ups)).tolist()
            self.choose(S, int(np.argmin(S.losses)))  # first of equal losses
            chosen_now = True
        elif S.phase is Phase.TRAIN and Upload.TRAIN in by_kind:
            current = {c: u for c, u in by_kind[Upload.TRAIN].items() if u[2] == S.version}
            self.train_step(S, current, rnd)
        return self.downloads(S, uploads, rnd, chosen_now)

    def train_step(self, S: TinyServer, current: dict, rnd: int) -> None:
        """FedAvg of the uploads at the current mask version; in an adjustment round, then
        prune/grow the scheduled layers by the uploaded gradients (mean per index, missing 0)."""
        k = self.k
        K = k.adjust_sizes(rnd, self.kept(S)) if current else {}
        for cid, (t, _, _) in current.items():
            self.check_gradients(t, S.masks, K, comm.sender_name(cid))
        if not current:
            return
        weights = [n for _, n, _ in current.values()]
        ups = [t for t, _, _ in current.values()]
        S.values = {n: weighted_mean([t[n] for t in ups], weights) for n in k.masked}
        S.dense = {n: weighted_mean([t[n] for t in ups], weights) for n in k.dense_spec}
        if not K:
            return
        total = float(sum(weights))
        for name in K:
            score = torch.zeros(k.sizes[name], device=self.device)
            for t, w in zip(ups, weights):
                score.index_add_(0, t[gidx_key(name)].long(), t[grad_key(name)] * (w / total))
            w_full = torch.zeros(k.sizes[name], device=self.device)
            mask = S.masks[name].flatten()
            w_full[mask] = S.values[name]
            new_w, new_mask = prune_grow(w_full, mask, score.abs(), K[name])
            S.masks[name] = new_mask.view_as(S.masks[name])
            S.values[name] = new_w[new_mask]
        S.version += 1

    def check_gradients(self, t: dict, masks: dict, K: dict[str, int], sender: str) -> None:
        """An adjustment upload holds, per scheduled layer, exactly K_l (index, gradient) pairs
        at distinct, currently pruned positions; outside adjustment rounds, none."""
        sizes = self.k.sizes
        for name in self.k.masked:
            has = grad_key(name) in t
            if has != (name in K):
                state = "unexpected: not an adjustment of this layer" if has else "missing"
                raise MessageError(f"message from {sender}: field {grad_key(name)!r} {state}")
            if not has:
                continue
            idx, g = t[gidx_key(name)], t[grad_key(name)]
            where = f"message from {sender}: field {gidx_key(name)!r}"
            if idx.numel() != K[name] or g.numel() != K[name]:
                raise MessageError(
                    f"{where} has {idx.numel()} indices and {g.numel()} gradients, expected "
                    f"K = {K[name]} of each"
                )
            if idx.numel() == 0:
                continue
            if int(idx.min()) < 0 or int(idx.max()) >= sizes[name]:
                raise MessageError(f"{where} holds an index outside [0, {sizes[name]})")
            if idx.unique().numel() != idx.numel():
                raise MessageError(f"{where} repeats an index")
            if bool(masks[name].flatten()[idx.long()].any()):
                raise MessageError(f"{where} names a kept weight (only pruned ones may grow)")

    # -- downloads ------------------------------------------------------------------------------
    def downloads(self, S: TinyServer, uploads: dict, rnd: int, chosen_now: bool) -> dict:
        """Each sender's reply (protocol.reply_to), one package per kind; tallies the bitmap
        bytes sent and their index-list alternative."""
        packages: dict[Download, Message] = {}
        out, kinds = {}, {}
        for cid, (upload, _, _, _) in uploads.items():
            stale = S.client_versions.get(cid) != S.version
            kind = reply_to(upload, S.phase, chosen_now, stale)
            if kind not in packages:
                packages[kind] = self.package(S, kind)
            out[cid], kinds[cid] = packages[kind], kind
            if S.phase is Phase.TRAIN:
                S.client_versions[cid] = S.version
        bitmaps = (Field.MASK, Field.CAND)
        S.mask_bytes[rnd] = sum(
            t.numel() for m in out.values() for k, t in m.arrays.items() if field_of(k) in bitmaps
        )
        alt = {
            Download.CANDIDATES: S.candidate_kept,
            Download.MODEL_MASKS: sum(self.kept(S).values()),
        }
        S.index_list_bytes[rnd] = INDEX_BYTES * sum(alt.get(kind, 0) for kind in kinds.values())
        return out

    def kept(self, S: TinyServer) -> dict[str, int]:
        return {n: int(S.masks[n].sum()) for n in S.masks}

    def package(self, S: TinyServer, kind: Download) -> Message:
        """One download: the candidate pool, the ABNS statistics, the choice, or the model."""
        k = self.k
        if kind is Download.CANDIDATES:
            arrays = {}
            for n in k.masked:
                union = torch.stack([c[n] for c in S.candidates]).any(0)
                arrays[n] = S.pretrained[n][union].clone()
                for c, cand in enumerate(S.candidates):
                    arrays[cand_key(c, n)] = pack_bits(cand[n])
            arrays.update({n: S.pretrained[n].clone() for n in k.dense_spec})
            return Message(arrays)
        if kind is Download.BN:
            return Message(
                {
                    bn_key(c, n): t.clone()
                    for c, stats in enumerate(S.bn_agg)
                    for n, t in stats.items()
                }
            )
        if kind is Download.CHOICE:
            choice = torch.tensor([S.chosen], dtype=torch.int64, device=self.device)
            return Message({CHOICE_KEY: choice}, {VERSION_KEY: S.version})
        arrays = {n: S.values[n].clone() for n in k.masked}
        arrays.update({n: S.dense[n].clone() for n in k.dense_spec})
        if kind is Download.MODEL_MASKS:
            arrays.update({mask_key(n): pack_bits(S.masks[n]) for n in k.masked})
        return Message(arrays, {VERSION_KEY: S.version})

    # -- what the engine reports ----------------------------------------------------------------
    def plan(self, S: TinyServer) -> SparsePlan:
        """The closed form's inputs for this run (sizes, the chosen mask's counts)."""
        kept = self.kept(S) if S.masks else dict.fromkeys(self.k.masked, 0)
        return self.k.plan(kept, S.union, S.candidate_kept)

    def summary(self, S: TinyServer) -> dict:
        """The run's sparse facts: densities, the choice, the bitmap bytes, the schedule."""
        k, plan = self.k, self.plan(S)
        rounds = max(self.cfg.rounds, 1)
        return dict(
            density_kept=sum(plan.kept) / sum(plan.sizes),
            masked_weights=sum(plan.sizes),
            kept_weights=sum(plan.kept),
            setup_rounds=k.setup_rounds,
            chosen_candidate=S.chosen,
            candidate_losses=list(S.losses),
            mask_bytes_per_round=sum(S.mask_bytes.values()) / rounds,
            index_list_bytes_per_round=sum(S.index_list_bytes.values()) / rounds,
            adjustments=len(k.schedule),
            kept_per_layer={n: [kk, size] for n, kk, size in zip(k.masked, plan.kept, plan.sizes)},
            archs={k.initial.arch: count_params(k.initial)},  # every client's model
        )


def read_positive(msg: Message, sender: str, key: str) -> int:
    n = read_config(msg, sender, key, int)
    if n < 1:
        raise MessageError(f"message from {sender}: config entry {key!r} = {n}, expected >= 1")
    return n
