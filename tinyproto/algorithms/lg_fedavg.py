"""LG-FedAvg (Liang et al., 2020, "Think Locally, Act Globally"), heterogeneous-model version.

Bodies (feature extractors f_i) stay local; only the head h_i = Linear(d, K) is federated. After
local training (CE, 1 epoch) client i uploads its head's weight [K, d] and bias [K] (d*K + K
floats) and its number of training samples n_i (an int config entry: metadata, not payload).
The server averages the heads FedAvg-style, weighted by n_i / sum_j n_j, and sends the averaged
head to every client, which loads it into its own head. Per round: 2 * N * (d*K + K) floats
(paper Table 2; the paper's Table 1 counts the weights only, 2 * N * d * K).
Inference: each client's own model (argmax of its head), as in HtFLlib.
"""

from __future__ import annotations

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


class LGFedAvg(FedAvgAlgorithm):
    name = "lg-fedavg"

    def __init__(self, ctx):
        super().__init__(ctx)
        K, d = ctx.num_classes, ctx.feature_dim
        self.spec = {"weight": ("float", (K, d)), "bias": ("float", (K,))}

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        loss = train_local(state, data, self.cfg, generator, ce_loss)
        return Message(named_params(state.model.head), {COUNT_KEY: data.num_train}), loss

    def receive(self, state: ClientState, download: Message) -> None:
        load_params(state.model.head, expect(download, "server", self.spec, device=self.device))
