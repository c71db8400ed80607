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

This module composes the class the registry names, ``FedTiny``, from the run-wide constants
(constants.py), the client's steps (client.py) and the server's (server.py); the two sides share
the constants and the typed protocol (protocol.py), nothing else.
"""

from __future__ import annotations

import torch

from tinyproto.algorithms.base import Algorithm, ClientData, Context
from tinyproto.algorithms.common import COUNT_KEY
from tinyproto.algorithms.fedtiny.client import FedTinyClient, TinyClient
from tinyproto.algorithms.fedtiny.constants import FedTinyConstants
from tinyproto.algorithms.fedtiny.protocol import VAL_KEY, VERSION_KEY
from tinyproto.algorithms.fedtiny.pruning import SparsePlan, sparse_round_costs
from tinyproto.algorithms.fedtiny.server import FedTinyServer, TinyServer
from tinyproto.comm import Message
from tinyproto.config.participation import is_partial


class FedTiny(Algorithm):
    """FedTiny for the engine: ``consts`` (FedTinyConstants, what both sides derive from the
    Config), ``client_side`` (FedTinyClient) and ``server_side`` (FedTinyServer); each
    Algorithm method hands its state to the side it belongs to."""

    name = "fedtiny"
    client_state = TinyClient
    server_state = TinyServer
    upload_config = {COUNT_KEY: int, VAL_KEY: int, VERSION_KEY: int}

    @classmethod
    def expected_cost(cls, *, sparse=None, **_) -> int | float:
        """The rounds differ (setup exchanges, adjustment uploads): the mean over the run's
        rounds of ``pruning.sparse_round_costs(sparse)`` (``sparse``: the run's SparsePlan)."""
        if sparse is None:
            raise ValueError("expected_cost('fedtiny') needs sparse (a pruning.SparsePlan)")
        rounds = sparse_round_costs(sparse)
        return sum(r["upload_floats"] + r["download_floats"] for r in rounds) / max(len(rounds), 1)

    def __init__(self, ctx: Context):
        self.consts = FedTinyConstants(ctx)
        self.client_side = FedTinyClient(self.consts, ctx)
        self.server_side = FedTinyServer(self.consts, ctx)
        super().__init__(ctx)

    # -- client side ----------------------------------------------------------------------------
    def init_client(self, cid: int, model: torch.nn.Module) -> TinyClient:
        return self.client_side.init_client(cid)  # homogeneous: the engine's model is unused

    def client_round(self, state: TinyClient, data: ClientData, rnd: int, generator):
        return self.client_side.client_round(state, data, rnd, generator)

    def receive(self, state: TinyClient, download: Message) -> None:
        self.client_side.receive(state, download)

    def client_cost(self, state: TinyClient, data: ClientData) -> dict:
        return self.client_side.client_cost(state, data)

    # -- server side ----------------------------------------------------------------------------
    def init_server(self) -> TinyServer:
        return self.server_side.init_server()

    def check_upload(self, msg: Message, sender: str):
        return self.server_side.check_upload(self.server, msg, sender)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        return self.server_side.aggregate(self.server, uploads, rnd)

    # -- what the engine reports ----------------------------------------------------------------
    def plan(self) -> SparsePlan:
        """The closed form's inputs for this run (sizes, the chosen mask's counts)."""
        return self.server_side.plan(self.server)

    def report(self, states, data) -> dict:
        out = super().report(states, data)
        out.update(self.server_side.summary(self.server))
        return out

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
