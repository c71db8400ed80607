"""FML, Federated Mutual Learning (Shen et al., 2020, arXiv 2006.16765), as in HtFLlib.

Every client keeps its own (heterogeneous) local model and a copy of a shared "meme" model of
one architecture (``Config.shared_model``; default the family's first architecture, which is
what HtFLlib's code shares: ResNet-8 for Ht0). All memes start from the same weights. Per batch
both models step on deep-mutual-learning losses (alpha = beta = 0.5, ``fml_alpha``/``fml_beta``):

    loss_local = alpha * CE(out_l, y) + (1 - alpha) * KL(p_m || p_l),   p_m detached
    loss_meme  = beta  * CE(out_m, y) + (1 - beta)  * KL(p_l || p_m),   p_l detached

KL is computed as HtFLlib's ``nn.KLDivLoss()`` does, i.e. averaged over all B * K elements
(the batch-mean KL divided by K). HtFLlib detaches neither target, so each model also receives
the gradient of the other model's loss; we detach, so each model minimises its own loss (the
method as published). Gradients are clipped to norm 10 per model, as in HtFLlib.

After local training a client uploads the meme's parameters (``model.parameters()`` only, as
HtFLlib: BatchNorm running statistics never leave the client and stay local to each meme copy)
and its training-sample count n_i (an int config entry: metadata, not payload). The server
averages the memes, uniformly (``fml_weighting="uniform"``, default: HtFLlib's 1/N) or weighted
by n_i ("samples", what this package did before the option), and sends the average to every
client, which loads it into its meme.
Per round: 2 * N * |meme| floats (paper Table 2). Inference: each client's local model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import (
    COUNT_KEY,
    GRAD_CLIP,
    FedAvgAlgorithm,
    build_shared,
    kl_htfllib,
    load_params,
    named_params,
    param_spec,
    train_local,
)
from tinyproto.comm import Message, expect
from tinyproto.models import count_params


@dataclass
class MemeClient(ClientState):
    """An FML client: its own model plus its copy of the shared meme model."""

    meme: torch.nn.Module
    meme_optimizer: torch.optim.Optimizer

    def trained(self):
        return [(self.model, self.optimizer), (self.meme, self.meme_optimizer)]


class FML(FedAvgAlgorithm):
    name = "fml"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.initial = build_shared(ctx)  # every meme starts from these weights
        self.shared_params = count_params(self.initial)  # expected_cost's model_params
        self.spec = param_spec(self.initial)

    # -- client ---------------------------------------------------------------------------------
    def init_client(self, cid: int, model: torch.nn.Module) -> MemeClient:
        meme = copy.deepcopy(self.initial)
        return MemeClient(
            cid=cid,
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=self.cfg.lr),
            meme=meme,
            meme_optimizer=torch.optim.SGD(meme.parameters(), lr=self.cfg.lr),
        )

    def client_round(self, state: MemeClient, data: ClientData, rnd: int, generator):
        a, b = self.cfg.fml_alpha, self.cfg.fml_beta

        def loss_fn(st, x, y):
            _, out_l = st.model(x)
            _, out_m = st.meme(x)
            loss_l = a * F.cross_entropy(out_l, y) + (1 - a) * kl_htfllib(out_l, out_m.detach())
            loss_m = b * F.cross_entropy(out_m, y) + (1 - b) * kl_htfllib(out_m, out_l.detach())
            return loss_l + loss_m, loss_l

        loss = train_local(state, data, self.cfg, generator, loss_fn, clip=GRAD_CLIP)
        return Message(named_params(state.meme), {COUNT_KEY: data.num_train}), loss

    # -- server ---------------------------------------------------------------------------------
    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        if self.cfg.fml_weighting == "uniform":  # HtFLlib: every meme weighs 1/N
            uploads = {cid: (arrays, 1) for cid, (arrays, _) in uploads.items()}
        return super().aggregate(uploads, rnd)

    def receive(self, state: MemeClient, download: Message) -> None:
        load_params(state.meme, expect(download, "server", self.spec, device=self.device))
