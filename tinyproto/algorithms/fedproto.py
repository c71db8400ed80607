"""FedProto (Tan et al., AAAI 2022), with TinyProto's CPS and APS as independent switches.

Client i trains with CE + lam * MSE(f_i(x), target_y) (Eq. 5/6), then uploads its local
prototypes p_ij (Eq. 3) for the classes it holds. ``proto_pass`` says where p_ij comes from:
"train" (FedProto / TinyProto-FP default) averages the features of the round's training
forward passes, in train mode, as HtFLlib and the authors' code do (no extra pass); "eval"
(FedTGP / TinyProto-FT default, METHOD.md) makes a second pass over the training split in eval
mode with the trained model. The server averages them per class over the
holders (Eq. 9) and sends every client the global prototypes; inference is Eq. 12.

Switches (Config): ``cps_dim`` (CPS, Eq. 7/8: only C(.; m_j) crosses the network, clients
regularise towards R(P_j; m_j)), ``mu`` (APS: clients upload n_ij p_ij; the server sums; clients
use mu * P~_j, Eq. 11). With both on this is TinyProto-FP (see tinyproto_fp.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinyproto import aps, cps
from tinyproto.algorithms.base import ClientData, ClientState
from tinyproto.algorithms.common import (
    ClassSums,
    ClassVectorAlgorithm,
    class_means,
    class_table,
    train_local,
)
from tinyproto.comm import Message


@dataclass
class ProtoClient(ClientState):
    """A prototype client: its global targets and, for the figures, its last local prototypes."""

    target: torch.Tensor | None = None  # [K, d] what it regularises towards (Eq. 6/11), R^d
    has_target: torch.Tensor | None = None  # [K] bool: classes with a global prototype
    classes: torch.Tensor | None = None  # [k] the classes it holds
    local: torch.Tensor | None = None  # [k, d] its local prototypes p_ij (never uploaded raw)


@dataclass
class Prototypes:
    """A client's prototypes as the figures show them (prototypes.npz)."""

    classes: torch.Tensor  # [k] the classes it holds
    local: torch.Tensor  # [k, d] p_ij, Eq. 3
    target: torch.Tensor  # [K, d] the global prototypes it uses (reconstructed, scaled)
    has_target: torch.Tensor  # [K] bool


def prototype_loss(
    features: torch.Tensor,
    logits: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    has_target: torch.Tensor | None,
    lam: float,
) -> torch.Tensor:
    """CE(h(f(x)), y) + lam * MSE(f(x), target_y) (Eq. 5/6/11).

    Samples whose class has no global target contribute zero to the MSE (their target is their
    own detached feature), as in FedProto's reference implementation; round 0 has no targets.
    ``has_target`` None means every class has one (callers check that once per round, not per
    step: it costs a host synchronisation).
    """
    loss = F.cross_entropy(logits, y)
    if target is not None and lam > 0:
        tgt = target[y]
        if has_target is not None:
            tgt = torch.where(has_target[y].unsqueeze(1), tgt, features.detach())
        loss = loss + lam * F.mse_loss(features, tgt)
    return loss


@torch.no_grad()
def nearest_prototype(features: torch.Tensor, target: torch.Tensor, has_target: torch.Tensor):
    """Eq. 12: argmin_j ||f(x) - P_j||_2 over the classes that have a global prototype."""
    classes = torch.nonzero(has_target).squeeze(1)
    dist = torch.cdist(features, target[classes])
    return classes[dist.argmin(1)]


class FedProto(ClassVectorAlgorithm):
    name = "fedproto"
    prototype_based = True
    client_state = ProtoClient
    client_side_scaling = True  # FP: clients apply mu; FT applies it on the server (App. C)
    key = "protos"

    @classmethod
    def expected_cost(
        cls, *, num_classes, dim, num_clients, classes_present, cps_dim=None, **_
    ) -> int | float:
        """Table 2: a d-float (s with CPS) prototype per class held, up; K per client, down."""
        width = cps_dim if cps_dim is not None else dim
        return width * (classes_present + num_clients * num_classes)

    def __init__(self, ctx):
        self.K = ctx.num_classes
        self.d = ctx.feature_dim
        self.masks = ctx.masks
        self.mu = ctx.mu
        self.width = self.d if self.masks is None else int(self.masks[0].sum())
        super().__init__(ctx)

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: ProtoClient, data: ClientData, rnd: int, generator):
        target, has, lam = state.target, state.has_target, self.cfg.lam
        if has is not None and bool(has.all()):
            has = None  # every class has a target: no masking in the loss
        from_training = self.cfg.proto_pass == "train"
        if from_training:  # every epoch visits every sample once: the counts are known
            n_all = torch.bincount(data.dataset.y[data.split.train_idx], minlength=self.K)
            seen = ClassSums(self.K, counts=n_all * self.cfg.local_epochs)

        def loss_fn(st, x, y):
            z, logits = st.model(x)
            if from_training:
                seen.add(z, y)
            return prototype_loss(z, logits, y, target, has, lam)

        loss = train_local(state, data, self.cfg, generator, loss_fn)
        if from_training:  # Eq. 3 over the training passes' features (HtFLlib, authors' code)
            classes, p, _ = seen.means()
            n = n_all[classes]  # n_ij: the sample count, not the pass count
        else:  # Eq. 3 by a second pass, eval mode, with the trained model
            classes, p, n = class_means(state.model, data, self.K)
        state.classes, state.local = classes, p
        return self.make_upload(classes, p, n), loss

    def make_upload(self, classes: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> Message:
        """p_ij -> n_ij p_ij (APS) -> C(.; m_j) (CPS). No class counts leave the client."""
        v = aps.scale_local(p, n) if self.mu is not None else p
        if self.masks is not None:
            v = cps.compress(v, self.masks[classes])
        return Message({"classes": classes, "protos": v.contiguous()})

    def receive(self, state: ProtoClient, download: Message) -> None:
        classes, v = self.check_vectors(download, "server")
        full = cps.reconstruct(v, self.masks[classes]) if self.masks is not None else v
        if self.mu is not None and self.client_side_scaling:
            full = aps.scale_global(full, self.mu)
        state.target, state.has_target = class_table(classes, full, self.K)

    @torch.no_grad()
    def predict(self, state: ProtoClient, x: torch.Tensor) -> torch.Tensor:
        if state.target is None:  # no download yet (partial participation): its own head
            return super().predict(state, x)
        return nearest_prototype(state.model.features(x), state.target, state.has_target)

    def prototypes(self, state: ProtoClient) -> Prototypes:
        """The client's last local prototypes and the global ones it uses (for the figures)."""
        return Prototypes(state.classes, state.local, state.target, state.has_target)

    # -- server ---------------------------------------------------------------------------------
    @property
    def mean_of_sums(self) -> bool:
        """APS: P~_j, the sum of the scaled uploads (divided by |N_j| only with ``aps_divide``,
        Eq. 10); without APS, the mean over the holders (Eq. 9). ``aggregate`` is
        ClassVectorAlgorithm's, so ``secure_agg`` applies."""
        return self.mu is None or bool(self.cfg.aps_divide)
