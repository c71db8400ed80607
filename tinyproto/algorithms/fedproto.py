"""FedProto (Tan et al., AAAI 2022), with TinyProto's CPS and APS as independent switches.

Client i trains with CE + lam * MSE(f_i(x), target_y) (Eq. 5/6), then uploads its local
prototypes p_ij (Eq. 3) for the classes it holds. The server averages them per class over the
holders (Eq. 9) and sends every client the global prototypes; inference is Eq. 12.

Switches (Config): ``cps_dim`` (CPS, Eq. 7/8: only C(.; m_j) crosses the network, clients
regularise towards R(P_j; m_j)), ``mu`` (APS: clients upload n_ij p_ij; the server sums; clients
use mu * P~_j, Eq. 11). With both on this is TinyProto-FP (see tinyproto_fp.py).
"""

from __future__ import annotations

import torch

from tinyproto import aps, cps
from tinyproto.algorithms.base import (
    Algorithm,
    ClientData,
    ClientState,
    check_class_vectors,
    class_table,
    local_prototypes,
    nearest_prototype,
    prototype_loss,
    train_local,
)
from tinyproto.comm import Message


class FedProto(Algorithm):
    name = "fedproto"
    prototype_based = True
    client_side_scaling = True  # FP: clients apply mu; FT applies it on the server (App. C)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.K = ctx.num_classes
        self.d = ctx.feature_dim
        self.masks = ctx.masks
        self.mu = ctx.mu
        self.width = self.d if self.masks is None else int(self.masks[0].sum())

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        target = state.memory.get("target")
        has = state.memory.get("has_target")
        lam = self.cfg.lam

        def loss_fn(st, x, y):
            z, logits = st.model(x)
            return prototype_loss(z, logits, y, target, has, lam)

        loss = train_local(state, data, self.cfg, generator, loss_fn)
        classes, p, n = local_prototypes(state.model, data, self.K)
        state.memory["local_prototypes"] = (classes, p)  # kept for figures, never uploaded
        return self.make_upload(classes, p, n), loss

    def make_upload(self, classes: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> Message:
        """p_ij -> n_ij p_ij (APS) -> C(.; m_j) (CPS). No class counts leave the client."""
        v = aps.scale_local(p, n) if self.mu is not None else p
        if self.masks is not None:
            v = cps.compress(v, self.masks[classes])
        return Message({"classes": classes, "protos": v.contiguous()})

    def receive(self, state: ClientState, download: Message) -> None:
        classes, v = self.check_vectors(download, "server")
        full = cps.reconstruct(v, self.masks[classes]) if self.masks is not None else v
        if self.mu is not None and self.client_side_scaling:
            full = aps.scale_global(full, self.mu)
        state.memory["target"], state.memory["has_target"] = class_table(classes, full, self.K)

    @torch.no_grad()
    def predict(self, state: ClientState, x: torch.Tensor) -> torch.Tensor:
        z = state.model.features(x)
        return nearest_prototype(z, state.memory["target"], state.memory["has_target"])

    # -- server ---------------------------------------------------------------------------------
    def check_vectors(self, msg: Message, sender: str, bound=None):
        return check_class_vectors(
            msg, sender, "protos", self.width, self.K, bound=bound, device=self.device
        )

    def check_upload(self, msg: Message, sender: str):
        return self.check_vectors(msg, sender, self.bound)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        pairs = list(uploads.values())
        if self.mu is not None:
            P, holders = aps.aggregate(pairs, self.K, divide=self.cfg.aps_divide)
        else:
            P, holders = aps.sum_by_class(pairs, self.K, mean=True)  # Eq. 9
        classes = torch.nonzero(holders).squeeze(1)
        msg = Message({"classes": classes, "protos": P[classes].contiguous()})
        return {cid: msg for cid in uploads}
