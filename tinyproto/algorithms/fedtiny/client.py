"""FedTiny's client side: its state between rounds (``TinyClient``) and its steps.

A client joins empty, receives the candidate pool (pre-trained values at the candidates'
union, C bitmaps), sends ABNS statistics and candidate losses on its validation subset, then
trains the chosen sparse model with the mask re-applied after every step (and, in adjustment
rounds, uploads its top pruned gradients). It reads the run-wide constants (constants.py) and
the ``TinyClient`` passed in only; what it sends and accepts follows protocol.py.

A client's validation subset: a seeded random 10 % (at least 2) of its training split, used
only by ABNS and the selection, both before any training; training uses the whole split.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tinyproto.algorithms import compute
from tinyproto.algorithms.base import ClientData, ClientState, Context
from tinyproto.algorithms.common import COUNT_KEY, min_last_batch
from tinyproto.algorithms.fedtiny.constants import FedTinyConstants
from tinyproto.algorithms.fedtiny.protocol import (
    CHOICE_KEY,
    LOSS_KEY,
    STAGE_AFTER,
    VAL_KEY,
    VERSION_KEY,
    Download,
    EnumValues,
    Field,
    Stage,
    Upload,
    bn_key,
    cand_key,
    client_accepts,
    download_kind,
    field_of,
    gidx_key,
    grad_key,
    mask_key,
    upload_for,
)
from tinyproto.algorithms.fedtiny.pruning import (
    bitmap_bytes,
    check_variances,
    float_state,
    load_float_state,
    unpack_bits,
)
from tinyproto.comm import Message, MessageError, check_message, expect, read_config

VAL_FRACTION = 0.1


@dataclass
class TinyClient(EnumValues, ClientState):
    """A FedTiny client. ``stage`` (protocol.Stage; stored as its value string): new (holds
    nothing), candidates (pre-trained values and the C masks), bn (plus the aggregated BN
    statistics per candidate), model (the sparse model: ``masks`` at mask ``version``)."""

    stage: Stage = Stage.NEW
    version: int = 0
    masks: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    pretrained: dict = field(default_factory=dict)
    cand_bn: list = field(default_factory=list)


class FedTinyClient:
    """The client's steps over a ``TinyClient`` passed in (``Algorithm``'s client side:
    ``init_client``, ``client_round``, ``receive``; and its costs)."""

    def __init__(self, consts: FedTinyConstants, ctx: Context):
        self.k = consts
        self.cfg = ctx.config
        self.device = ctx.device

    def init_client(self, cid: int) -> TinyClient:
        shared = copy.deepcopy(self.k.initial)  # homogeneous: one architecture, weights by message
        opt = torch.optim.SGD(shared.parameters(), lr=self.cfg.lr)
        return TinyClient(cid=cid, model=shared, optimizer=opt)

    # -- one round ------------------------------------------------------------------------------
    def client_round(self, state: TinyClient, data: ClientData, rnd: int, generator):
        kind = upload_for(state.stage, self.k.abns)
        if kind is Upload.JOIN:
            return Message(), self.val_loss(state, data)
        val = {VAL_KEY: int(self.val_idx(state, data).numel())}
        if kind is Upload.BN:
            stats = self.abns_stats(state, data)
            return Message(stats, val), self.val_loss(state, data)
        if kind is Upload.LOSS:
            losses = torch.stack(
                [self.val_loss(state, data, c, total=True) for c in range(self.k.C)]
            )
            self.load_union(state)
            return Message({LOSS_KEY: losses}, val), float(losses.min()) / val[VAL_KEY]
        loss, grads = self.sparse_train(state, data, rnd, generator)
        arrays = {n: p.detach()[state.masks[n]].clone() for n, p in self.params(state).items()}
        arrays.update({n: t for n, t in float_state(state.model).items() if n in self.k.dense_spec})
        arrays.update(grads)
        return Message(arrays, {COUNT_KEY: data.num_train, VERSION_KEY: state.version}), loss

    def params(self, state: TinyClient) -> dict[str, torch.Tensor]:
        named = dict(state.model.named_parameters())
        return {n: named[n] for n in self.k.masked}

    def val_idx(self, state: TinyClient, data: ClientData) -> torch.Tensor:
        """The client's validation subset: a seeded random 10 % (>= 2) of its training split."""
        n = data.num_train
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + state.cid * 7_919 + 17)
        m = min(n, max(2, math.ceil(VAL_FRACTION * n)))
        return data.split.train_idx[
            torch.randperm(n, generator=gen)[:m].to(data.split.train_idx.device)
        ]

    def val_batches(self, state: TinyClient, data: ClientData):
        idx, B = self.val_idx(state, data), self.cfg.batch_size
        starts = list(range(0, idx.numel(), B))
        if len(starts) > 1 and idx.numel() - starts[-1] < min_last_batch([state.model], B):
            starts.pop()
        for i, s in enumerate(starts):
            b = idx[s : starts[i + 1] if i + 1 < len(starts) else idx.numel()]
            yield data.dataset.images(b), data.dataset.y[b]

    @torch.no_grad()
    def val_loss(self, state, data, candidate: int | None = None, total: bool = False):
        """Cross-entropy on the validation subset (eval mode) of the model the client holds, or
        of candidate ``candidate``; the sum as a float32 tensor with ``total``, else the mean."""
        if candidate is not None:
            self.load_candidate(state, candidate)
        state.model.eval()
        loss = torch.zeros((), device=self.device)
        n = 0
        for x, y in self.val_batches(state, data):
            loss += F.cross_entropy(state.model(x)[1], y, reduction="sum")
            n += len(y)
        return loss if total else float(loss) / max(n, 1)

    @torch.no_grad()
    def abns_stats(self, state: TinyClient, data: ClientData) -> dict[str, torch.Tensor]:
        """ABNS step 2: per candidate, frozen masked weights, train mode, forward passes over the
        validation subset; only the BN running means and variances move. Returns them."""
        out = {}
        for c in range(self.k.C):
            self.load_candidate(state, c)
            passes = self.cfg.fedtiny.abns_passes
            adapt_bn(state.model, lambda: self.val_batches(state, data), passes)
            buffers = dict(state.model.named_buffers())
            out.update({bn_key(c, n): buffers[n].detach().clone() for n in self.k.bn_names})
        self.load_union(state)
        return out

    def load_candidate(self, state: TinyClient, c: int) -> None:
        """Pre-trained weights x candidate c's mask; BN statistics aggregated (ABNS) or
        pre-trained."""
        tensors = dict(state.pretrained)
        for n in self.k.masked:
            tensors[n] = state.pretrained[n] * state.candidates[c][n]
        if state.cand_bn:
            tensors.update(state.cand_bn[c])
        load_float_state(state.model, tensors)

    def load_union(self, state: TinyClient) -> None:
        load_float_state(state.model, state.pretrained)

    def sparse_train(self, state: TinyClient, data: ClientData, rnd: int, generator):
        """E epochs of SGD, the mask re-applied after every step. In an adjustment round the
        last mini-batch's gradients at the pruned positions give the top-K_l uploads."""
        cfg, model, opt = self.cfg, state.model, state.optimizer
        params, masks = self.params(state), state.masks
        K = self.k.adjust_sizes(rnd, {n: int(m.sum()) for n, m in masks.items()})
        model.train()
        min_last = min_last_batch([model], cfg.batch_size)
        grads, total, steps = {}, 0.0, 0
        for epoch in range(cfg.local_epochs):
            batches = data.train_batches(cfg.batch_size, generator, min_last)
            batch = next(batches, None)
            while batch is not None:
                x, y = batch
                batch = next(batches, None)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x)[1], y)
                loss.backward()
                if K and epoch == cfg.local_epochs - 1 and batch is None:
                    grads = top_gradients(params, masks, K)
                opt.step()
                apply_masks(params, masks, opt)
                total += loss.detach()
                steps += 1
        return float(total / max(steps, 1)), grads

    # -- downloads ------------------------------------------------------------------------------
    def receive(self, state: TinyClient, download: Message) -> None:
        """Check the whole download before changing anything (a refused one changes nothing)."""
        check_message(download, "server", config={VERSION_KEY: int})
        kind = download_kind(download, "server")
        if state.stage not in client_accepts(kind, self.k.abns):
            raise MessageError(
                f"message from server: a {kind.value} download for a client at stage "
                f"{state.stage.value!r} (field {next(iter(download.arrays), 'none')!r})"
            )
        receiver = {
            Download.CANDIDATES: self.receive_candidates,
            Download.BN: self.receive_bn,
            Download.CHOICE: self.receive_choice,
            Download.MODEL: self.receive_model,
            Download.MODEL_MASKS: self.receive_model_masks,
        }[kind]
        receiver(state, download)

    def receive_candidates(self, state: TinyClient, msg: Message) -> None:
        k = self.k
        spec = {
            cand_key(c, n): (torch.uint8, (bitmap_bytes(k.sizes[n]),))
            for c in range(k.C)
            for n in k.masked
        }
        spec.update({n: ("float", (None,)) for n in k.masked})
        spec.update(k.dense_spec)
        t = expect(msg, "server", spec, device=self.device)
        check_variances(t, "server")
        cands = [{n: self.unpack(t, cand_key(c, n), n) for n in k.masked} for c in range(k.C)]
        pre = {n: t[n].clone() for n in k.dense_spec}
        for n in k.masked:
            union = torch.stack([c[n] for c in cands]).any(0)
            if t[n].numel() != int(union.sum()):
                raise MessageError(
                    f"message from server: field {n!r} has {t[n].numel()} values for the "
                    f"{int(union.sum())} positions of the candidates' union"
                )
            w = torch.zeros(union.shape, device=self.device)
            w[union] = t[n]
            pre[n] = w
        state.pretrained, state.candidates = pre, cands
        state.stage = STAGE_AFTER[Download.CANDIDATES]
        self.load_union(state)

    def receive_bn(self, state: TinyClient, msg: Message) -> None:
        k = self.k
        t = expect(msg, "server", k.bn_fields(), device=self.device)
        check_variances(t, "server")
        state.cand_bn = [{n: t[bn_key(c, n)].clone() for n in k.bn_names} for c in range(k.C)]
        state.stage = STAGE_AFTER[Download.BN]

    def receive_choice(self, state: TinyClient, msg: Message) -> None:
        spec = {CHOICE_KEY: ("int", (1,))}
        c = int(expect(msg, "server", spec, device=self.device)[CHOICE_KEY])
        if not 0 <= c < self.k.C:
            raise MessageError(
                f"message from server: field {CHOICE_KEY!r} = {c}, outside [0, {self.k.C})"
            )
        version = read_config(msg, "server", VERSION_KEY, int)
        self.load_candidate(state, c)
        state.masks = {n: m.clone() for n, m in state.candidates[c].items()}
        self.enter_model(state, version)

    def receive_model(self, state: TinyClient, msg: Message) -> None:
        version = read_config(msg, "server", VERSION_KEY, int)
        if version != state.version:
            raise MessageError(
                f"message from server: mask version {version} without its mask (the client "
                f"holds version {state.version})"
            )
        self.load_model(state, msg, state.masks, version)

    def receive_model_masks(self, state: TinyClient, msg: Message) -> None:
        k = self.k
        spec = {mask_key(n): (torch.uint8, (bitmap_bytes(k.sizes[n]),)) for n in k.masked}
        t = expect(msg, "server", spec, partial=True, device=self.device)
        masks = {n: self.unpack(t, mask_key(n), n) for n in k.masked}
        self.load_model(state, msg, masks, read_config(msg, "server", VERSION_KEY, int))

    def load_model(self, state: TinyClient, msg: Message, masks: dict, version: int) -> None:
        k = self.k
        spec = {n: ("float", (int(masks[n].sum()),)) for n in k.masked}
        spec.update(k.dense_spec)
        if any(field_of(key) is Field.MASK for key in msg.arrays):
            spec.update({mask_key(n): (torch.uint8, (None,)) for n in k.masked})
        t = expect(msg, "server", spec, device=self.device)
        check_variances(t, "server")
        tensors = {n: t[n] for n in k.dense_spec}
        for n in k.masked:
            w = torch.zeros(masks[n].shape, device=self.device)
            w[masks[n]] = t[n]
            tensors[n] = w
        load_float_state(state.model, tensors)
        state.masks = masks
        self.enter_model(state, version)

    def enter_model(self, state: TinyClient, version: int) -> None:
        state.version, state.stage = version, STAGE_AFTER[Download.MODEL]
        state.candidates, state.pretrained, state.cand_bn = [], {}, []

    def unpack(self, t: dict, key: str, name: str) -> torch.Tensor:
        try:
            return unpack_bits(t[key], self.k.sizes[name]).view(
                self.k.initial.get_parameter(name).shape
            )
        except ValueError as e:
            raise MessageError(f"message from server: field {key!r}: {e}") from None

    # -- what the engine reports ----------------------------------------------------------------
    def client_cost(self, state: TinyClient, data: ClientData) -> dict:
        kept = {n: int(m.sum()) for n, m in state.masks.items()} or None
        cfg = self.cfg
        return compute.trained_cost(state.trained(), data, cfg.batch_size, cfg.local_epochs, kept)


@torch.no_grad()
def adapt_bn(model: torch.nn.Module, batches, passes: int) -> None:
    """ABNS's forward passes: train mode, no gradients, ``passes`` times over ``batches()``; only
    BatchNorm running statistics (and their batch counters) change."""
    was = model.training
    model.train()
    for _ in range(passes):
        for x, _ in batches():
            model(x)
    model.train(was)


def apply_masks(params: dict, masks: dict, opt: torch.optim.Optimizer) -> None:
    """Weights (and optimiser state shaped like them, e.g. momentum) times their masks."""
    with torch.no_grad():
        for n, p in params.items():
            p.mul_(masks[n])
            for v in opt.state.get(p, {}).values():
                if isinstance(v, torch.Tensor) and v.shape == p.shape:
                    v.mul_(masks[n])


def top_gradients(params: dict, masks: dict, K: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per scheduled layer: the K_l pruned positions of largest |grad| (ties: lower index),
    ascending, as int32 indices ``gidx/<name>`` and float32 gradients ``grad/<name>``."""
    out = {}
    for n, k in K.items():
        g = params[n].grad.detach().flatten()
        pruned = torch.nonzero(~masks[n].flatten()).squeeze(1)
        top = pruned[torch.sort(g[pruned].abs(), descending=True, stable=True).indices[:k]]
        top = top.sort().values
        out[gidx_key(n)] = top.to(torch.int32)
        out[grad_key(n)] = g[top].clone()
    return out
