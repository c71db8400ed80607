"""FedTGP (Zhang et al., AAAI 2024): trainable global prototypes with adaptive-margin-enhanced
contrastive learning; with TinyProto's CPS and APS as switches (TinyProto-FT, App. C).

Clients train as in FedProto and upload their prototypes (computed after local training, in eval
mode, over the training split). The server owns K trainable prototypes G = TGP(k): an embedding
in R^d followed by Linear(d,d)-ReLU-Linear(d,d). Each round it trains them for ``server_epochs``
epochs (SGD, batch 32) on the uploaded prototypes with logits -||p - G_k||_2, the true class's
distance increased by the margin min(max_j gap_j, margin_threshold), where gap_j is class j's
smallest distance to another class's averaged upload; then it sends every client all K G_k.

Under APS the server multiplies the reconstructed uploads n_ij p_ij by mu before training
(server-side normalisation); clients then use the received prototypes as they are.

Trust: the server computes squared distances between d-dim prototypes, so uploads are bounded
by sqrt(float32 max / (8 d)) (divided by mu under APS) besides the sum bound; the training runs
on the server state's TGP, and a NaN or inf in its output restores the TGP and its optimiser
(``Algorithm.server_round``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyproto import aps, cps
from tinyproto.algorithms.base import ServerState
from tinyproto.algorithms.fedproto import FedProto
from tinyproto.comm import Message, square_bound, tighter


class TrainablePrototypes(nn.Module):
    """G_k = fc(relu(middle(embedding(k)))), all in R^d."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(num_classes, dim)
        self.middle = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.fc = nn.Linear(dim, dim)

    def forward(self, class_ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.middle(self.embedding(class_ids)))


def class_margin(avg: torch.Tensor, present: torch.Tensor, threshold: float) -> float:
    """min(max_j gap_j, threshold); gap_j = min distance of class j's mean upload to another's."""
    P = avg[present]
    if P.shape[0] < 2:
        return float(threshold)
    dist = torch.cdist(P, P)
    dist.fill_diagonal_(float("inf"))
    return float(min(dist.min(1).values.max().item(), threshold))


def margin_contrastive_loss(
    p: torch.Tensor, y: torch.Tensor, G: torch.Tensor, margin: float
) -> torch.Tensor:
    """CE over logits -||p - G_k||_2, with the true class's distance increased by ``margin``."""
    dist = (p.unsqueeze(1) - G.unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    dist = dist + margin * F.one_hot(y, G.shape[0]).to(dist.dtype)
    return F.cross_entropy(-dist, y)


@dataclass
class TGPServer(ServerState):
    """The server's trainable global prototypes, their optimiser and the last round's margin."""

    tgp: TrainablePrototypes
    opt: torch.optim.Optimizer
    last_margin: float = float("nan")


class FedTGP(FedProto):
    name = "fedtgp"
    client_side_scaling = False

    def __init__(self, ctx):
        super().__init__(ctx)
        # squared distances of mu-scaled uploads must stay finite, not only their sum
        self.bound = tighter(self.bound, square_bound(self.d, self.mu or 1.0))

    def init_server(self) -> TGPServer:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed * 7919 + 104729)
            tgp = TrainablePrototypes(self.K, self.d).to(self.device)
        return TGPServer(tgp, torch.optim.SGD(tgp.parameters(), lr=self.cfg.server_lr))

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        protos, labels = [], []
        for classes, v in uploads.values():
            full = cps.reconstruct(v, self.masks[classes]) if self.masks is not None else v
            if self.mu is not None:
                full = aps.scale_global(full, self.mu)  # server-side normalisation (App. C)
            protos.append(full)
            labels.append(classes)
        P = torch.cat(protos)
        y = torch.cat(labels)
        avg, holders = aps.sum_by_class(list(zip(labels, protos)), self.K, mean=True)
        margin = class_margin(avg, holders > 0, self.cfg.margin_threshold)
        server = self.server
        server.last_margin = margin

        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + rnd * 7 + 3)
        all_ids = torch.arange(self.K, device=P.device)
        server.tgp.train()
        bs = self.cfg.batch_size
        for _ in range(self.cfg.server_epochs):
            perm = torch.randperm(P.shape[0], generator=gen).to(P.device)
            for start in range(0, P.shape[0], bs):
                b = perm[start : start + bs]
                loss = margin_contrastive_loss(P[b], y[b], server.tgp(all_ids), margin)
                server.opt.zero_grad(set_to_none=True)
                loss.backward()
                server.opt.step()
        server.tgp.eval()
        with torch.no_grad():
            G = server.tgp(all_ids)
        v = cps.compress(G, self.masks) if self.masks is not None else G
        msg = Message({"classes": all_ids, "protos": v.contiguous()})
        return {cid: msg for cid in uploads}
