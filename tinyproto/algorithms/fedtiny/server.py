"""FedTiny's run-wide constants and its server side (the client side: fedtiny.py).

The server pre-trains the shared model on its few-shot set, builds the candidate pool (or the
one-shot magnitude mask), runs the ABNS and selection exchanges, then sparse FedAvg with
progressive pruning. It answers each upload by what the upload shows of its sender: an empty
upload (a client that holds nothing yet), ABNS statistics, candidate losses, or a trained model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tinyproto import comm
from tinyproto.algorithms.base import Algorithm, Context, ServerState
from tinyproto.algorithms.common import (
    COUNT_KEY,
    build_shared,
    read_count,
    weighted_mean,
)
from tinyproto.algorithms.fedtiny.fewshot import pretrain, server_shots
from tinyproto.algorithms.fedtiny.pruning import (
    INDEX_BYTES,
    VAL_KEY,
    VERSION_KEY,
    SparsePlan,
    adjust_count,
    adjustment_rounds,
    blocks,
    bn_key,
    bn_stats,
    cand_key,
    candidate_masks,
    check_variances,
    cosine_rate,
    dense_state,
    float_state,
    magnitude_mask,
    maskable,
    pack_bits,
    prune_grow,
    sparse_round_costs,
)
from tinyproto.comm import Message, MessageError, expect, read_config
from tinyproto.config import ConfigError
from tinyproto.config.participation import is_partial


@dataclass
class TinyServer(ServerState):
    """The server between rounds. ``pretrained``/``candidates``/``bn_agg`` live until the mask
    is chosen; then ``values`` (kept weights per masked layer, in mask order), ``dense`` and
    ``masks`` are the global sparse model, at mask ``version``."""

    phase: str = "select"  # bn | select | train: what the server waits for
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


class FedTinyServerSide(Algorithm):
    """Constants both sides derive from the Config, and the server's steps."""

    server_state = TinyServer
    upload_config = {COUNT_KEY: int, VAL_KEY: int, VERSION_KEY: int}

    @classmethod
    def expected_cost(cls, *, num_classes, dim, num_clients, classes_present, cps_dim=None,
                      model_params=None, kept_floats=None, sparse=None) -> int | float:
        """The rounds differ (setup exchanges, adjustment uploads): the mean over the run's
        rounds of ``pruning.sparse_round_costs(sparse)`` (``sparse``: the run's SparsePlan)."""
        if sparse is None:
            raise ValueError("expected_cost('fedtiny') needs sparse (a pruning.SparsePlan)")
        rounds = sparse_round_costs(sparse)
        return sum(r["upload_floats"] + r["download_floats"] for r in rounds) / max(len(rounds), 1)

    def __init__(self, ctx: Context):
        opts = ctx.config.fedtiny
        self.initial = build_shared(ctx)  # every client's model object; weights come by message
        self.masked = maskable(self.initial)
        params = dict(self.initial.named_parameters())
        self.sizes = {n: params[n].numel() for n in self.masked}
        self.dense_spec = {
            n: ("float", s) for n, s in dense_state(self.initial, self.masked).items()
        }
        self.bn_names = bn_stats(self.initial)
        buffers = dict(self.initial.named_buffers())
        self.bn_spec = {n: ("float", tuple(buffers[n].shape)) for n in self.bn_names}
        self.abns = opts.mask_init == "abns" and bool(self.bn_names)
        self.select = opts.mask_init != "magnitude"
        self.C = opts.candidates if self.select else 1
        self.setup_rounds = 1 + int(self.abns) + int(self.select)
        self.blocks = blocks(self.initial, self.masked)
        train_rounds = ctx.config.rounds - self.setup_rounds
        ts = adjustment_rounds(train_rounds, opts.adjust_every, opts.adjust_until)
        ts = ts if opts.progressive else []
        self.schedule = {}  # absolute round -> (rate, layers adjusted)
        for k, t in enumerate(ts):
            layers = (
                self.masked if opts.prune_mode == "entire" else self.blocks[k % len(self.blocks)]
            )
            self.schedule[self.setup_rounds + t] = (
                cosine_rate(k, len(ts), opts.adjust_rate),
                layers,
            )
        super().__init__(ctx)

    def adjust_sizes(self, rnd: int, kept: dict[str, int]) -> dict[str, int]:
        """{layer: K_l} of round ``rnd``'s adjustment ({} when it adjusts nothing)."""
        if rnd not in self.schedule:
            return {}
        rate, layers = self.schedule[rnd]
        return {n: adjust_count(rate, kept[n], self.sizes[n]) for n in layers}

    # -- before round 0: pre-training and the candidate pool ------------------------------------
    def init_server(self) -> TinyServer:
        cfg, opts = self.cfg, self.cfg.fedtiny
        model = pretrain(copy.deepcopy(self.initial), *server_shots(self.ctx), cfg)
        pre = float_state(model)
        weights = {name: pre[name] for name in self.masked}
        rng = np.random.RandomState(cfg.seed * 7_919 + 4_000_037)
        try:
            cands = (
                candidate_masks(weights, opts.density, self.C, rng)
                if self.select
                else [magnitude_mask(weights, opts.density)]
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        S = TinyServer(pretrained=pre, candidates=cands)
        S.union = [int(torch.stack([c[name] for c in cands]).any(0).sum()) for name in self.masked]
        S.candidate_kept = int(sum(int(m.sum()) for c in cands for m in c.values()))
        S.phase = "bn" if self.abns else "select"
        if not self.select:
            self.choose(S, 0)
        return S

    def choose(self, S: TinyServer, c: int) -> None:
        """The global model: pre-trained weights times candidate c's mask, with the aggregated
        BN statistics (ABNS) or the pre-trained ones; the setup state is dropped."""
        S.chosen, S.masks = c, S.candidates[c]
        S.values = {n: S.pretrained[n][S.masks[n]].clone() for n in self.masked}
        S.dense = {n: S.pretrained[n].clone() for n in self.dense_spec}
        if self.abns:
            S.dense.update({n: t.clone() for n, t in S.bn_agg[c].items()})
        S.phase, S.version = "train", 1
        S.pretrained, S.candidates, S.bn_agg = {}, [], []

    # -- uploads --------------------------------------------------------------------------------
    def upload_kind(self, msg: Message) -> str:
        keys = list(msg.arrays)
        if not keys:
            return "join"
        if any(isinstance(k, str) and k.startswith("bn") for k in keys):
            return "bn"
        return "loss" if "loss" in keys else "train"

    def check_upload(self, msg: Message, sender: str):
        S, kind = self.server, self.upload_kind(msg)
        allowed = {"bn": ("join", "bn"), "select": ("join", "bn", "loss")}.get(S.phase)
        if allowed is not None and kind not in allowed:
            field_ = next(iter(msg.arrays))
            raise MessageError(
                f"message from {sender}: field {comm.show(field_)} belongs to a {kind} upload, "
                f"but the server waits for {S.phase} uploads (no mask chosen yet)"
            )
        if kind == "join":
            return kind, {}, 0, 0
        if kind == "bn":
            if not self.abns:
                raise MessageError(
                    f"message from {sender}: unexpected field {comm.show(next(iter(msg.arrays)))} "
                    "(this run exchanges no BN statistics)"
                )
            spec = {bn_key(c, n): s for c in range(self.C) for n, s in self.bn_spec.items()}
            t = expect(msg, sender, spec, bound=self.bound, device=self.device)
            check_variances(t, sender)
            return kind, t, read_positive(msg, sender, VAL_KEY), 0
        if kind == "loss":
            t = expect(
                msg, sender, {"loss": ("float", (self.C,))}, bound=self.bound, device=self.device
            )
            if bool((t["loss"] < 0).any()):
                raise MessageError(f"message from {sender}: field 'loss' holds a negative loss")
            return kind, t, read_positive(msg, sender, VAL_KEY), 0
        kept = self.kept(S)
        spec = {n: ("float", (kept[n],)) for n in self.masked}
        spec.update(self.dense_spec)
        for n in self.masked:
            if f"grad/{n}" in msg.arrays or f"gidx/{n}" in msg.arrays:
                spec[f"grad/{n}"], spec[f"gidx/{n}"] = ("float", (None,)), (torch.int32, (None,))
        t = expect(msg, sender, spec, bound=self.bound, device=self.device)
        check_variances(t, sender)
        version = read_config(msg, sender, VERSION_KEY, int)
        return kind, t, read_count(msg, sender), version

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        S = self.server
        by_kind: dict[str, dict] = {}
        for cid, (kind, t, n, version) in uploads.items():
            by_kind.setdefault(kind, {})[cid] = (t, n, version)
        chosen_now = False
        if S.phase == "bn" and "bn" in by_kind:
            ups = by_kind["bn"].values()
            S.bn_agg = [
                {
                    n: weighted_mean([t[bn_key(c, n)] for t, _, _ in ups], [w for _, w, _ in ups])
                    for n in self.bn_names
                }
                for c in range(self.C)
            ]
            S.phase = "select"
        elif S.phase == "select" and "loss" in by_kind:
            ups = list(by_kind["loss"].values())
            total = torch.stack([t["loss"] for t, _, _ in ups]).sum(0)
            S.losses = (total / sum(w for _, w, _ in ups)).tolist()
            self.choose(S, int(np.argmin(S.losses)))  # first of equal losses
            chosen_now = True
        elif S.phase == "train" and "train" in by_kind:
            current = {c: u for c, u in by_kind["train"].items() if u[2] == S.version}
            self.train_step(S, current, rnd)
        return self.downloads(S, uploads, rnd, chosen_now)

    def train_step(self, S: TinyServer, current: dict, rnd: int) -> None:
        """FedAvg of the uploads at the current mask version; in an adjustment round, then
        prune/grow the scheduled layers by the uploaded gradients (mean per index, missing 0)."""
        K = self.adjust_sizes(rnd, self.kept(S)) if current else {}
        for cid, (t, _, _) in current.items():
            self.check_gradients(t, S.masks, K, comm.sender_name(cid))
        if not current:
            return
        weights = [n for _, n, _ in current.values()]
        ups = [t for t, _, _ in current.values()]
        S.values = {n: weighted_mean([t[n] for t in ups], weights) for n in self.masked}
        S.dense = {n: weighted_mean([t[n] for t in ups], weights) for n in self.dense_spec}
        if not K:
            return
        total = float(sum(weights))
        for name in K:
            score = torch.zeros(self.sizes[name], device=self.device)
            for t, w in zip(ups, weights):
                score.index_add_(0, t[f"gidx/{name}"].long(), t[f"grad/{name}"] * (w / total))
            w_full = torch.zeros(self.sizes[name], device=self.device)
            mask = S.masks[name].flatten()
            w_full[mask] = S.values[name]
            new_w, new_mask = prune_grow(w_full, mask, score.abs(), K[name])
            S.masks[name] = new_mask.view_as(S.masks[name])
            S.values[name] = new_w[new_mask]
        S.version += 1

    def check_gradients(self, t: dict, masks: dict, K: dict[str, int], sender: str) -> None:
        """An adjustment upload holds, per scheduled layer, exactly K_l (index, gradient) pairs
        at distinct, currently pruned positions; outside adjustment rounds, none."""
        for name in self.masked:
            has = f"grad/{name}" in t
            if has != (name in K):
                state = "unexpected: not an adjustment of this layer" if has else "missing"
                raise MessageError(f"message from {sender}: field 'grad/{name}' {state}")
            if not has:
                continue
            idx, g = t[f"gidx/{name}"], t[f"grad/{name}"]
            where = f"message from {sender}: field 'gidx/{name}'"
            if idx.numel() != K[name] or g.numel() != K[name]:
                raise MessageError(
                    f"{where} has {idx.numel()} indices and {g.numel()} gradients, expected "
                    f"K = {K[name]} of each"
                )
            if idx.numel() == 0:
                continue
            if int(idx.min()) < 0 or int(idx.max()) >= self.sizes[name]:
                raise MessageError(f"{where} holds an index outside [0, {self.sizes[name]})")
            if idx.unique().numel() != idx.numel():
                raise MessageError(f"{where} repeats an index")
            if bool(masks[name].flatten()[idx.long()].any()):
                raise MessageError(f"{where} names a kept weight (only pruned ones may grow)")

    # -- downloads ------------------------------------------------------------------------------
    def downloads(self, S: TinyServer, uploads: dict, rnd: int, chosen_now: bool) -> dict:
        packages: dict[str, Message] = {}

        def package(kind: str) -> Message:
            if kind not in packages:
                packages[kind] = self.package(S, kind)
            return packages[kind]

        out = {}
        for cid, (kind, _, _, _) in uploads.items():
            if S.phase in ("bn", "select"):
                out[cid] = package("candidates" if kind == "join" else "bn")
                continue
            if kind == "loss" and chosen_now:
                out[cid] = package("choice")
            else:
                stale = S.client_versions.get(cid) != S.version
                out[cid] = package("model+masks" if stale else "model")
            S.client_versions[cid] = S.version
        bitmap = ("mask/", "cand")
        S.mask_bytes[rnd] = sum(
            t.numel() for m in out.values() for k, t in m.arrays.items() if k.startswith(bitmap)
        )
        alt = {"candidates": S.candidate_kept, "model+masks": sum(self.kept(S).values())}
        S.index_list_bytes[rnd] = INDEX_BYTES * sum(
            alt.get(kind, 0) for kind in (self.package_kind(m) for m in out.values())
        )
        return out

    @staticmethod
    def package_kind(msg: Message) -> str:
        keys = list(msg.arrays)
        if "choice" in keys:
            return "choice"
        if any(k.startswith("cand") for k in keys):
            return "candidates"
        if any(k.startswith("bn") for k in keys):
            return "bn"
        return "model+masks" if any(k.startswith("mask/") for k in keys) else "model"

    def kept(self, S: TinyServer) -> dict[str, int]:
        return {n: int(S.masks[n].sum()) for n in S.masks}

    def package(self, S: TinyServer, kind: str) -> Message:
        """One download: the candidate pool, the ABNS statistics, the choice, or the model."""
        if kind == "candidates":
            arrays = {}
            for n in self.masked:
                union = torch.stack([c[n] for c in S.candidates]).any(0)
                arrays[n] = S.pretrained[n][union].clone()
                for c, cand in enumerate(S.candidates):
                    arrays[cand_key(c, n)] = pack_bits(cand[n])
            arrays.update({n: S.pretrained[n].clone() for n in self.dense_spec})
            return Message(arrays)
        if kind == "bn":
            return Message(
                {
                    bn_key(c, n): t.clone()
                    for c, stats in enumerate(S.bn_agg)
                    for n, t in stats.items()
                }
            )
        if kind == "choice":
            choice = torch.tensor([S.chosen], dtype=torch.int64, device=self.device)
            return Message({"choice": choice}, {VERSION_KEY: S.version})
        arrays = {n: S.values[n].clone() for n in self.masked}
        arrays.update({n: S.dense[n].clone() for n in self.dense_spec})
        if kind == "model+masks":
            arrays.update({f"mask/{n}": pack_bits(S.masks[n]) for n in self.masked})
        return Message(arrays, {VERSION_KEY: S.version})

    # -- what the engine reports ----------------------------------------------------------------
    def plan(self) -> SparsePlan:
        """The closed form's inputs for this run (sizes, the chosen mask's counts)."""
        S = self.server
        kept = self.kept(S) if S.masks else dict.fromkeys(self.masked, 0)
        index = {n: i for i, n in enumerate(self.masked)}
        opts = self.cfg.fedtiny
        return SparsePlan(
            num_clients=self.ctx.num_clients,
            rounds=self.cfg.rounds,
            sizes=tuple(self.sizes[n] for n in self.masked),
            kept=tuple(kept[n] for n in self.masked),
            union=tuple(S.union),
            candidate_kept=S.candidate_kept,
            dense=sum(math.prod(s) for _, s in self.dense_spec.values()),
            bn=sum(math.prod(s) for _, s in self.bn_spec.values()),
            candidates=self.C,
            abns=self.abns,
            select=self.select,
            progressive=opts.progressive,
            mode=opts.prune_mode,
            layer_blocks=tuple(tuple(index[n] for n in b) for b in self.blocks),
            adjust_every=opts.adjust_every,
            adjust_until=opts.adjust_until,
            adjust_rate=opts.adjust_rate,
        )

    def expected_floats(self, classes_present: int) -> float | None:
        """The closed form's mean per round; None under partial participation (who is at
        which setup stage then depends on the draw)."""
        if is_partial(self.cfg):
            return None
        return self.expected_cost(
            num_classes=self.ctx.num_classes,
            dim=self.ctx.feature_dim,
            num_clients=self.ctx.num_clients,
            classes_present=classes_present,
            sparse=self.plan(),
        )


def read_positive(msg: Message, sender: str, key: str) -> int:
    n = read_config(msg, sender, key, int)
    if n < 1:
        raise MessageError(f"message from {sender}: config entry {key!r} = {n}, expected >= 1")
    return n
