"""LG-FedAvg (Liang et al., 2020, "Think Locally, Act Globally"), heterogeneous-model version.

Bodies (feature extractors f_i) stay local; only the head h_i = Linear(d, K) is federated. After
local training (CE, 1 epoch) client i uploads its head's weight [K, d] and bias [K] (d*K + K
floats) and its number of training samples n_i (an int config entry: metadata, not payload).
The server averages the heads FedAvg-style, weighted by n_i / sum_j n_j, and sends the averaged
head to every client, which loads it into its own head. Per round: 2 * N * (d*K + K) floats
(paper Table 2; the paper's Table 1 counts the weights only, 2 * N * d * K).
Inference: each client's own model (argmax of its head), as in HtFLlib.

Round 0 (``lg_head_init``): "shared" (default, HtFLlib: the server's global head is client 0's
and is sent to everyone before the first round) starts every client from client 0's initial
head, which each client rebuilds from the run's seed (``models.client_seed``): no message is
needed; "own" keeps each client's own initial head (what this package did before the option).
"""

from __future__ import annotations

import torch

from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import (
    COUNT_KEY,
    FedAvgAlgorithm,
    ce_loss,
    load_params,
    named_params,
    train_local,
)
from tinyproto.comm import Message, expect
from tinyproto.models import client_model, client_seed


class LGFedAvg(FedAvgAlgorithm):
    name = "lg-fedavg"

    @classmethod
    def expected_cost(cls, *, num_classes, dim, num_clients, **_) -> int | float:
        """Table 2: the d x K head and its K biases, both ways, per client."""
        return 2 * num_clients * (dim * num_classes + num_classes)

    def __init__(self, ctx):
        super().__init__(ctx)
        K, d = ctx.num_classes, ctx.feature_dim
        self.spec = {"weight": ("float", (K, d)), "bias": ("float", (K,))}
        self.first_head = self._client0_head() if self.cfg.lg_head_init == "shared" else None

    def _client0_head(self) -> dict[str, torch.Tensor]:
        """Client 0's initial head, rebuilt as the engine builds client 0's model."""
        ctx, cfg = self.ctx, self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(client_seed(cfg.seed, 0))
            model = client_model(
                cfg.family,
                0,
                num_classes=ctx.num_classes,
                feature_dim=ctx.feature_dim,
                in_channels=ctx.in_channels,
                image_size=ctx.image_size,
            )
        return named_params(model.head)

    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        if self.first_head is not None:
            load_params(model.head, self.first_head)
        return super().init_client(cid, model)

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        loss = train_local(state, data, self.cfg, generator, ce_loss)
        return Message(named_params(state.model.head), {COUNT_KEY: data.num_train}), loss

    def receive(self, state: ClientState, download: Message) -> None:
        load_params(state.model.head, expect(download, "server", self.spec, device=self.device))
