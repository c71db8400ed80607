"""Local training only (no federation): the floor every federated method should beat."""

from __future__ import annotations

import torch.nn.functional as F

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, train_local
from tinyproto.comm import Message


class Local(Algorithm):
    name = "local"

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        def loss_fn(st, x, y):
            return F.cross_entropy(st.model(x)[1], y)

        return Message(), train_local(state, data, self.cfg, generator, loss_fn)
