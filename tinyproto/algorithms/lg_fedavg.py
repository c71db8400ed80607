"""LG-FedAvg (Liang et al., 2020, "Think Locally, Act Globally"), heterogeneous-model version.

Bodies (feature extractors f_i) stay local; only the head h_i = Linear(d, K) is federated. After
local training (CE, 1 epoch) client i uploads its head's weight [K, d] and bias [K] (d*K + K
floats) and its number of training samples n_i as an int tensor (counted in bytes, not floats).
The server averages the heads FedAvg-style, weighted by n_i / sum_j n_j, and sends the averaged
head to every client, which loads it into its own head. Per round: 2 * N * (d*K + K) floats
(paper Table 2; the paper's Table 1 counts the weights only, 2 * N * d * K).
Inference: each client's own model (argmax of its head), as in HtFLlib.

The helpers ``read_count`` and ``weighted_mean`` are shared with FML and FedKD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, train_local
from tinyproto.comm import Message, MessageError, expect

COUNT_KEY = "num_train"


def count_tensor(n: int, device) -> torch.Tensor:
    """n_i as it crosses the network: a one-element int64 tensor (bytes, not floats)."""
    return torch.tensor([int(n)], dtype=torch.long, device=device)


COUNT_SPEC = {COUNT_KEY: ("int", (1,))}


def read_count(msg: Message, sender: str) -> int:
    """The sender's training-sample count n_i (>= 1) from its upload (an int64 [1] tensor)."""
    expect(msg, sender, COUNT_SPEC, partial=True)
    n = int(msg[COUNT_KEY].item())
    if n < 1:
        raise MessageError(f"message from {sender}: field {COUNT_KEY!r} = {n}, expected >= 1")
    return n


def weighted_mean(tensors: list[torch.Tensor], weights: list[int]) -> torch.Tensor:
    """sum_i w_i t_i / sum_i w_i (FedAvg)."""
    total = float(sum(weights))
    out = torch.zeros_like(tensors[0])
    for t, w in zip(tensors, weights):
        out.add_(t, alpha=w / total)
    return out


def ce_loss(state: ClientState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(state.model(x)[1], y)


class LGFedAvg(Algorithm):
    name = "lg-fedavg"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.K = ctx.num_classes
        self.d = ctx.feature_dim
        self.spec = {"weight": ("float", (self.K, self.d)), "bias": ("float", (self.K,))}

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        loss = train_local(state, data, self.cfg, generator, ce_loss)
        head = state.model.head
        msg = Message(
            {
                "weight": head.weight.detach().clone(),
                "bias": head.bias.detach().clone(),
                COUNT_KEY: count_tensor(data.num_train, head.weight.device),
            }
        )
        return msg, loss

    def receive(self, state: ClientState, download: Message) -> None:
        head = expect(download, "server", self.spec, device=self.device)
        with torch.no_grad():
            state.model.head.weight.copy_(head["weight"])
            state.model.head.bias.copy_(head["bias"])

    # -- server ---------------------------------------------------------------------------------
    def check_upload(self, msg: Message, sender: str):
        t = expect(msg, sender, {**self.spec, **COUNT_SPEC}, bound=self.bound, device=self.device)
        return t, read_count(msg, sender)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        weights = [n for _, n in uploads.values()]
        avg = {k: weighted_mean([t[k] for t, _ in uploads.values()], weights) for k in self.spec}
        msg = Message(avg)
        return {cid: msg for cid in uploads}
