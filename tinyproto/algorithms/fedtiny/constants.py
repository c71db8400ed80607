"""FedTiny's run-wide constants: what client and server both derive from the Config alone.

``FedTinyConstants`` holds the shared model's initial object (its architecture and initial
weights; weights then travel by message), the masked layer names and sizes, the specs of the
dense tensors and the BN statistics, which setup exchanges run (ABNS, selection), the number
of candidates, the layer blocks and the progressive-pruning schedule; and the field specs that
both sides check messages against. A Flower ClientApp and ServerApp each build one from the
same Config. ``plan`` turns it, with the numbers only the chosen mask fixes, into the
``pruning.SparsePlan`` of the closed-form cost.
"""

from __future__ import annotations

import math

from tinyproto.algorithms.base import Context
from tinyproto.algorithms.common import build_shared
from tinyproto.algorithms.fedtiny.protocol import bn_key
from tinyproto.algorithms.fedtiny.pruning import (
    SparsePlan,
    adjust_count,
    adjustment_rounds,
    blocks,
    bn_stats,
    cosine_rate,
    dense_state,
    maskable,
)


class FedTinyConstants:
    """Constants both sides derive from the Config (nothing here changes during a run)."""

    def __init__(self, ctx: Context):
        cfg = ctx.config
        opts = cfg.fedtiny
        self.num_clients = ctx.num_clients
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
        self.rounds = cfg.rounds
        self.progressive = opts.progressive
        self.prune_mode = opts.prune_mode
        self.adjust_every = opts.adjust_every
        self.adjust_until = opts.adjust_until
        self.adjust_rate = opts.adjust_rate
        train_rounds = cfg.rounds - self.setup_rounds
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

    def adjust_sizes(self, rnd: int, kept: dict[str, int]) -> dict[str, int]:
        """{layer: K_l} of round ``rnd``'s adjustment ({} when it adjusts nothing)."""
        if rnd not in self.schedule:
            return {}
        rate, layers = self.schedule[rnd]
        return {n: adjust_count(rate, kept[n], self.sizes[n]) for n in layers}

    def bn_fields(self) -> dict[str, tuple]:
        """The spec of C sets of BN statistics (the ABNS upload and its download)."""
        return {bn_key(c, n): s for c in range(self.C) for n, s in self.bn_spec.items()}

    def plan(self, kept: dict[str, int], union: list[int], candidate_kept: int) -> SparsePlan:
        """The closed form's inputs: these constants and the counts the chosen mask fixes
        (``kept`` per masked layer, the candidates' ``union`` per layer, and the kept weights
        summed over the candidates)."""
        index = {n: i for i, n in enumerate(self.masked)}
        return SparsePlan(
            num_clients=self.num_clients,
            rounds=self.rounds,
            sizes=tuple(self.sizes[n] for n in self.masked),
            kept=tuple(kept[n] for n in self.masked),
            union=tuple(union),
            candidate_kept=candidate_kept,
            dense=sum(math.prod(s) for _, s in self.dense_spec.values()),
            bn=sum(math.prod(s) for _, s in self.bn_spec.values()),
            candidates=self.C,
            abns=self.abns,
            select=self.select,
            progressive=self.progressive,
            mode=self.prune_mode,
            layer_blocks=tuple(tuple(index[n] for n in b) for b in self.blocks),
            adjust_every=self.adjust_every,
            adjust_until=self.adjust_until,
            adjust_rate=self.adjust_rate,
        )
