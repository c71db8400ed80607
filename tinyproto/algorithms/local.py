"""Local training only (no federation): the floor every federated method should beat."""

from __future__ import annotations

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState
from tinyproto.algorithms.common import ce_loss, train_local
from tinyproto.comm import Message


class Local(Algorithm):
    name = "local"

    @classmethod
    def expected_cost(cls, **_) -> int | float:
        """Nothing is sent."""
        return 0

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        return Message(), train_local(state, data, self.cfg, generator, ce_loss)
