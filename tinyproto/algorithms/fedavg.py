"""FedAvg (McMahan et al., AISTATS 2017), dense and homogeneous: the reference FedTiny and every
pruning baseline are measured against (../shared/FEDTINY.md).

Every client trains a copy of one shared architecture (``Config.shared_model``; default the
family's first architecture, as FML's meme), all from the same initial weights, with the
package's local training (SGD, cross-entropy). After local training a client uploads its whole
model state: every parameter and the BatchNorm running statistics (float buffers;
``num_batches_tracked`` stays local), with its training-sample count n_i as an int config entry
(metadata). The server averages each tensor weighted by n_i and sends the average to every
client, which loads it. Per round: 2 N |model| floats. Inference: the global model.
"""

from __future__ import annotations

import copy

import torch

from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import (
    COUNT_KEY,
    FedAvgAlgorithm,
    build_shared,
    ce_loss,
    train_local,
)
from tinyproto.algorithms.fedtiny.pruning import check_variances, float_state, load_float_state
from tinyproto.comm import Message, expect
from tinyproto.models import count_params


class FedAvg(FedAvgAlgorithm):
    name = "fedavg"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.initial = build_shared(ctx)  # every client starts from these weights
        state = float_state(self.initial)
        self.spec = {name: ("float", tuple(t.shape)) for name, t in state.items()}
        self.shared_params = sum(t.numel() for t in state.values())  # floats of one model

    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        shared = copy.deepcopy(self.initial)  # homogeneous: the engine's client model is unused
        opt = torch.optim.SGD(shared.parameters(), lr=self.cfg.lr)
        return ClientState(cid=cid, model=shared, optimizer=opt)

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        loss = train_local(state, data, self.cfg, generator, ce_loss)
        return Message(float_state(state.model), {COUNT_KEY: data.num_train}), loss

    def report(self, states, data) -> dict:
        out = super().report(states, data)
        out["archs"] = {self.initial.arch: count_params(self.initial)}  # every client's model
        return out

    def check_upload(self, msg: Message, sender: str):
        tensors, n = super().check_upload(msg, sender)
        check_variances(tensors, sender)
        return tensors, n

    def receive(self, state: ClientState, download: Message) -> None:
        tensors = expect(download, "server", self.spec, device=self.device)
        check_variances(tensors, "server")
        load_float_state(state.model, tensors)
