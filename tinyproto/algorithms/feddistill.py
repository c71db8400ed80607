"""FedDistill (Jeong et al., 2018, "Communication-Efficient On-Device Machine Learning:
Federated Distillation and Augmentation under Non-IID Private Data"), as in HtFLlib's FD.

Client i trains its own model with CE(out, y) + gamma * CE(out, softmax(L_y)), the second term
only for samples whose class y has a global logit L_y (HtFLlib's soft-target cross-entropy;
gamma = 1, paper Table 4). Round 0 has no global logits and trains with CE only. After local
training the client computes its per-class mean logits over its training split in eval mode and
uploads (classes [k], logits [k, K]) for the k classes it holds. The server averages each class
over its holders only and sends every client (classes, logits) for the classes that have holders.
Per round: K * (U + N * K) floats (paper Table 2). Inference: each client's own head.

Differences from HtFLlib: it collects the logits during training (train mode, changing weights)
and averages the soft-target term over the whole batch, giving samples without a global logit
the target softmax(own output) (zero gradient, non-zero value). We use the trained model in eval
mode, and sum the term over the samples that have a target, divided by the batch size (same
gradient as HtFLlib, without the constant entropy term in the reported loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import ClassVectorAlgorithm, class_means, class_table, train_local
from tinyproto.comm import Message


@dataclass
class DistillClient(ClientState):
    """A FedDistill client: the global per-class logits it last received."""

    global_logits: torch.Tensor | None = None  # [K, K]; rows without a holder are zero
    has_logit: torch.Tensor | None = None  # [K] bool: classes with a global logit


def soft_target_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    global_logits: torch.Tensor | None,
    has_logit: torch.Tensor | None,
    gamma: float,
) -> torch.Tensor:
    """CE(out, y) + gamma * mean over the batch of CE(out, softmax(L_y)) (0 where L_y is absent)."""
    loss = F.cross_entropy(logits, y)
    if global_logits is None or gamma == 0:
        return loss
    sel = has_logit[y]
    if not bool(sel.any()):
        return loss
    soft = global_logits[y[sel]].softmax(dim=1)
    ce = -(soft * F.log_softmax(logits[sel], dim=1)).sum(dim=1)
    return loss + gamma * ce.sum() / y.numel()


def class_mean_logits(model: torch.nn.Module, data: ClientData, num_classes: int):
    """Per-class mean logits over the training split, eval mode: (classes [k], logits [k, K])."""
    classes, logits, _ = class_means(model, data, num_classes, "logits")
    return classes, logits


class FedDistill(ClassVectorAlgorithm):
    name = "feddistill"
    client_state = DistillClient
    key = "logits"

    @classmethod
    def expected_cost(cls, *, num_classes, num_clients, classes_present, **_) -> int | float:
        """Table 2: K logits per class held, up; K x K per client, down."""
        K = num_classes
        return K * (classes_present + num_clients * K)

    def __init__(self, ctx):
        self.K = self.width = ctx.num_classes
        super().__init__(ctx)

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: DistillClient, data: ClientData, rnd: int, generator):
        target, has, gamma = state.global_logits, state.has_logit, self.cfg.gamma

        def loss_fn(st, x, y):
            return soft_target_loss(st.model(x)[1], y, target, has, gamma)

        loss = train_local(state, data, self.cfg, generator, loss_fn)
        classes, logits = class_mean_logits(state.model, data, self.K)
        return Message({"classes": classes, "logits": logits.contiguous()}), loss

    def receive(self, state: DistillClient, download: Message) -> None:
        classes, logits = self.check_vectors(download, "server")
        state.global_logits, state.has_logit = class_table(classes, logits, self.K)

    # the server: ClassVectorAlgorithm's per-class mean over the holders (secure_agg applies)
