"""FedTiny (Huang et al., "Distributed Pruning Towards Tiny Neural Networks in Federated
Learning", ICDCS 2023, arXiv 2212.01977), as specified in ../shared/FEDTINY.md.

One shared architecture for every client (``Config.shared_model``; default the family's first
architecture). Masked: every Conv2d / Linear weight but the first convolution (pruning.py).

Setup, before round 0 (server): pre-train on ``fedtiny_shots`` images per class no client holds
(fewshot.py), then build C candidate masks (per-layer densities d (1 + U(-0.5, 0.5)), overall
within 2 % of ``density``, largest magnitudes), or one global magnitude mask (``mask_init=
magnitude``, the one-shot baseline). Setup rounds (each a message exchange; no training):

    round 0  clients upload nothing; download: pre-trained values at the union of the
             candidates, the dense tensors, C bitmaps (one-shot: the pruned model + its mask)
    ABNS     (mask_init=abns and the model has BatchNorm) per candidate, frozen weights, train
             mode, ``abns_passes`` passes over the client's validation subset: only BN running
             statistics move; upload them; the server averages them weighted by n_val
    select   per candidate (mask, aggregated or pre-trained BN statistics, eval mode): summed
             validation loss up; the server picks the lowest sample-weighted mean loss and
             sends its index; the global model is pre-trained weights x mask (+ BN statistics)

Training rounds: E local epochs of SGD, the mask re-applied to the weights (and any optimiser
state) after every step; upload the kept values (mask order) and the dense tensors (biases, BN
parameters and statistics); the server averages by n_i. Progressive pruning: in the round after
every dT-th training round (up to T_max) the client also uploads, for each scheduled layer, the
K_l = ceil(rate_k nnz_l) pruned positions of largest |gradient| on its last mini-batch (index
int32 + gradient); the server averages them per index (n_i-weighted, missing 0), drops the K_l
smallest kept weights and grows the K_l largest |mean gradient| (at 0). rate_k = (a/2)(1 +
cos(pi k / K_adj)); ``block`` mode adjusts one block per round from the output backwards,
``entire`` all masked layers. The mask travels as a bitmap when it changes (and to a client that
lacks it); both sides track a mask version (int metadata).

A client's validation subset: a random 10 % (at least 2) of its training split, used only by
ABNS and the selection, both before any training; training uses the whole split.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tinyproto.algorithms import compute
from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import COUNT_KEY, min_last_batch
from tinyproto.algorithms.fedtiny.pruning import (
    VAL_KEY,
    VERSION_KEY,
    bitmap_bytes,
    bn_key,
    cand_key,
    check_variances,
    float_state,
    load_float_state,
    unpack_bits,
)
from tinyproto.algorithms.fedtiny.server import FedTinyServerSide
from tinyproto.comm import Message, MessageError, check_message, expect, read_config
from tinyproto.models import count_params

VAL_FRACTION = 0.1


@dataclass
class TinyClient(ClientState):
    """A FedTiny client. ``stage``: new (holds nothing), candidates (pre-trained values and the
    C masks), bn (plus the aggregated BN statistics per candidate), model (the sparse model:
    ``masks`` at mask ``version``)."""

    stage: str = "new"
    version: int = 0
    masks: dict = field(default_factory=dict)
    candidates: list = field(default_factory=list)
    pretrained: dict = field(default_factory=dict)
    cand_bn: list = field(default_factory=list)


class FedTiny(FedTinyServerSide):
    name = "fedtiny"

    def init_client(self, cid: int, model: torch.nn.Module) -> TinyClient:
        shared = copy.deepcopy(self.initial)  # homogeneous: the engine's client model is unused
        opt = torch.optim.SGD(shared.parameters(), lr=self.cfg.lr)
        return TinyClient(cid=cid, model=shared, optimizer=opt)

    # -- client: one round --------------------------------------------------------------------
    def client_round(self, state: TinyClient, data: ClientData, rnd: int, generator):
        if state.stage == "new":
            return Message(), self.val_loss(state, data)
        val = {VAL_KEY: int(self.val_idx(state, data).numel())}
        if state.stage == "candidates" and self.abns:
            stats = self.abns_stats(state, data)
            return Message(stats, val), self.val_loss(state, data)
        if state.stage in ("candidates", "bn"):
            losses = torch.stack([self.val_loss(state, data, c, total=True) for c in range(self.C)])
            self.load_union(state)
            return Message({"loss": losses}, val), float(losses.min()) / val[VAL_KEY]
        loss, grads = self.sparse_train(state, data, rnd, generator)
        arrays = {n: p.detach()[state.masks[n]].clone() for n, p in self.params(state).items()}
        arrays.update({n: t for n, t in float_state(state.model).items() if n in self.dense_spec})
        arrays.update(grads)
        return Message(arrays, {COUNT_KEY: data.num_train, VERSION_KEY: state.version}), loss

    def params(self, state: TinyClient) -> dict[str, torch.Tensor]:
        named = dict(state.model.named_parameters())
        return {n: named[n] for n in self.masked}

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
        for c in range(self.C):
            self.load_candidate(state, c)
            passes = self.cfg.fedtiny.abns_passes
            adapt_bn(state.model, lambda: self.val_batches(state, data), passes)
            buffers = dict(state.model.named_buffers())
            out.update({bn_key(c, n): buffers[n].detach().clone() for n in self.bn_names})
        self.load_union(state)
        return out

    def load_candidate(self, state: TinyClient, c: int) -> None:
        """Pre-trained weights x candidate c's mask; BN statistics aggregated (ABNS) or
        pre-trained."""
        tensors = dict(state.pretrained)
        for n in self.masked:
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
        K = self.adjust_sizes(rnd, {n: int(m.sum()) for n, m in masks.items()})
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

    # -- client: downloads ----------------------------------------------------------------------
    def receive(self, state: TinyClient, download: Message) -> None:
        """Check the whole download before changing anything (a refused one changes nothing)."""
        check_message(download, "server", config={VERSION_KEY: int})
        kind = self.package_kind(download)
        ok = {
            "candidates": ("new",),
            "bn": ("candidates",) if self.abns else (),
            "choice": ("bn",) if self.abns else ("candidates",),
            "model": ("model",),
            "model+masks": ("new", "candidates", "bn", "model"),
        }[kind]
        if state.stage not in ok:
            raise MessageError(
                f"message from server: a {kind} download for a client at stage {state.stage!r} "
                f"(field {next(iter(download.arrays), 'none')!r})"
            )
        getattr(self, "receive_" + kind.replace("+", "_"))(state, download)

    def receive_candidates(self, state: TinyClient, msg: Message) -> None:
        spec = {
            cand_key(c, n): (torch.uint8, (bitmap_bytes(self.sizes[n]),))
            for c in range(self.C)
            for n in self.masked
        }
        spec.update({n: ("float", (None,)) for n in self.masked})
        spec.update(self.dense_spec)
        t = expect(msg, "server", spec, device=self.device)
        check_variances(t, "server")
        cands = [{n: self.unpack(t, cand_key(c, n), n) for n in self.masked} for c in range(self.C)]
        pre = {n: t[n].clone() for n in self.dense_spec}
        for n in self.masked:
            union = torch.stack([c[n] for c in cands]).any(0)
            if t[n].numel() != int(union.sum()):
                raise MessageError(
                    f"message from server: field {n!r} has {t[n].numel()} values for the "
                    f"{int(union.sum())} positions of the candidates' union"
                )
            w = torch.zeros(union.shape, device=self.device)
            w[union] = t[n]
            pre[n] = w
        state.pretrained, state.candidates, state.stage = pre, cands, "candidates"
        self.load_union(state)

    def receive_bn(self, state: TinyClient, msg: Message) -> None:
        spec = {bn_key(c, n): s for c in range(self.C) for n, s in self.bn_spec.items()}
        t = expect(msg, "server", spec, device=self.device)
        check_variances(t, "server")
        state.cand_bn = [{n: t[bn_key(c, n)].clone() for n in self.bn_names} for c in range(self.C)]
        state.stage = "bn"

    def receive_choice(self, state: TinyClient, msg: Message) -> None:
        c = int(expect(msg, "server", {"choice": ("int", (1,))}, device=self.device)["choice"])
        if not 0 <= c < self.C:
            raise MessageError(f"message from server: field 'choice' = {c}, outside [0, {self.C})")
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
        spec = {f"mask/{n}": (torch.uint8, (bitmap_bytes(self.sizes[n]),)) for n in self.masked}
        t = expect(msg, "server", spec, partial=True, device=self.device)
        masks = {n: self.unpack(t, f"mask/{n}", n) for n in self.masked}
        self.load_model(state, msg, masks, read_config(msg, "server", VERSION_KEY, int))

    def load_model(self, state: TinyClient, msg: Message, masks: dict, version: int) -> None:
        spec = {n: ("float", (int(masks[n].sum()),)) for n in self.masked}
        spec.update(self.dense_spec)
        if any(k.startswith("mask/") for k in msg.arrays):
            spec.update({f"mask/{n}": (torch.uint8, (None,)) for n in self.masked})
        t = expect(msg, "server", spec, device=self.device)
        check_variances(t, "server")
        tensors = {n: t[n] for n in self.dense_spec}
        for n in self.masked:
            w = torch.zeros(masks[n].shape, device=self.device)
            w[masks[n]] = t[n]
            tensors[n] = w
        load_float_state(state.model, tensors)
        state.masks = masks
        self.enter_model(state, version)

    def enter_model(self, state: TinyClient, version: int) -> None:
        state.version, state.stage = version, "model"
        state.candidates, state.pretrained, state.cand_bn = [], {}, []

    def unpack(self, t: dict, key: str, name: str) -> torch.Tensor:
        try:
            return unpack_bits(t[key], self.sizes[name]).view(
                self.initial.get_parameter(name).shape
            )
        except ValueError as e:
            raise MessageError(f"message from server: field {key!r}: {e}") from None

    # -- what the engine reports ----------------------------------------------------------------
    def client_cost(self, state: TinyClient, data: ClientData) -> dict:
        kept = {n: int(m.sum()) for n, m in state.masks.items()} or None
        cfg = self.cfg
        return compute.trained_cost(state.trained(), data, cfg.batch_size, cfg.local_epochs, kept)

    def report(self, states, data) -> dict:
        S, plan = self.server, self.plan()
        out = super().report(states, data)
        rounds = max(self.cfg.rounds, 1)
        out.update(
            density_kept=sum(plan.kept) / sum(plan.sizes),
            masked_weights=sum(plan.sizes),
            kept_weights=sum(plan.kept),
            setup_rounds=self.setup_rounds,
            chosen_candidate=S.chosen,
            candidate_losses=list(S.losses),
            mask_bytes_per_round=sum(S.mask_bytes.values()) / rounds,
            index_list_bytes_per_round=sum(S.index_list_bytes.values()) / rounds,
            adjustments=len(self.schedule),
            kept_per_layer={n: [k, size] for n, k, size in zip(self.masked, plan.kept, plan.sizes)},
            archs={self.initial.arch: count_params(self.initial)},  # every client's model
        )
        return out


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
        out[f"gidx/{n}"] = top.to(torch.int32)
        out[f"grad/{n}"] = g[top].clone()
    return out
