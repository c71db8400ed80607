"""FedKD (Wu et al., Nature Communications 2022, "Communication-efficient federated learning
via knowledge distillation"), as in HtFLlib's FedKD.

Every client keeps a local mentor (its own heterogeneous model), a copy of a shared mentee (one
architecture, ``Config.shared_model``, default the family's first; same initial weights for all)
and a private projection W_h = Linear(d, d, bias=False) that never leaves the client. Per batch,
with CE_l, CE_g the mentor's and the mentee's cross-entropies and D = CE_l + CE_g:

    L_d   = KL(p_g || p_l) / D      L_d_g = KL(p_l || p_g) / D          (adaptive distillation)
    L_h   = MSE(z_l, W_h(z_g)) / D                                       (hidden-state loss)
    mentor: CE_l + L_d + L_h        mentee: CE_g + L_d_g + L_h

KL as HtFLlib's ``nn.KLDivLoss()`` (element-wise mean). Detaches: HtFLlib detaches nothing, so
both losses' gradients reach both models and the denominator D; we let each model minimise its
own loss: in the mentor's loss the mentee side (p_g, W_h(z_g)) is detached, in the mentee's loss
the mentor side (p_l, z_l) is detached (so W_h is trained with the mentee, towards the mentor's
features), and D is detached (an adaptive weight, not a path that would raise the CEs).
Gradients are clipped to norm 10 per module, as in HtFLlib.

Communication: the mentee's parameters (``parameters()`` only; BatchNorm statistics stay local)
cross the network SVD-compressed, both directions (the FedKD paper factors the updates; HtFLlib,
whose code produced the paper's numbers, factors the parameters, and so do we): each matrix as
its truncated SVD factors with the smallest rank whose energy reaches T(r), or dense where the
factors would not be smaller (svd.py). The threshold grows linearly over the rounds,
T(r) = T_start + (r + 1) / R * (T_end - T_start) for round r = 0..R-1 (0.95 -> 0.98; HtFLlib
updates it after each round, one round later). Uploads carry n_i as an int config entry. The
server reconstructs every client's mentee, averages them weighted by n_i, compresses the
average with the same threshold and sends it to every client, which reconstructs and loads it.

Each message's metrics record the threshold, the rank and kept energy of every parameter and
the floats the SVD keeps; the server state tallies the per-round totals
(``kept_floats_per_round``; ``expected_floats`` reports their mean, which
``FedKD.expected_cost(kept_floats=...)`` checks the measurement against).
HtFLlib's decomposition differs in two details we do not copy: it factors 4-D convolution kernels
as a batch of [kh, kw] matrices (not [out, in*kh*kw]) and averages the clients uniformly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, ServerState
from tinyproto.algorithms.common import (
    COUNT_KEY,
    GRAD_CLIP,
    build_shared,
    kl_htfllib,
    load_params,
    param_spec,
    read_count,
    train_local,
    weighted_average,
)
from tinyproto.algorithms.svd import (
    FACTORS,
    Compressed,
    compress,
    decompress,
    energy_rank,
    factor_key,
    frobenius_bound,
    metric_spec,
    ranks,
    threshold,
)
from tinyproto.comm import Message, MessageError, check_message, tighter
from tinyproto.models import count_params

__all__ = [  # the codec's names, importable from here too
    "FACTORS",
    "Compressed",
    "FedKD",
    "compress",
    "decompress",
    "energy_rank",
    "factor_key",
    "ranks",
    "threshold",
]


@dataclass
class KDClient(ClientState):
    """A FedKD client: its mentor (``model``), its mentee copy and its private projection W_h."""

    mentee: torch.nn.Module
    mentee_optimizer: torch.optim.Optimizer
    w_h: torch.nn.Module
    w_h_optimizer: torch.optim.Optimizer

    def trained(self):
        return [
            (self.model, self.optimizer),
            (self.mentee, self.mentee_optimizer),
            (self.w_h, self.w_h_optimizer),
        ]


@dataclass
class KDServer(ServerState):
    """The server's tally: round -> floats the SVD kept in that round's messages, up + down."""

    kept_floats_per_round: dict[int, int] = field(default_factory=dict)


class FedKD(Algorithm):
    name = "fedkd"
    server_state = KDServer
    upload_config = {COUNT_KEY: int}

    @classmethod
    def expected_cost(cls, *, num_clients, model_params=None, kept_floats=None, **_) -> int | float:
        """What the SVD kept (``kept_floats``: the round's total over its 2N messages, as FedKD's
        compressor counts it from the ranks) when known; else the dense mentee both ways, per
        client, the no-compression upper bound 2 N x model_params."""
        if kept_floats is not None:
            return int(kept_floats)
        return 2 * num_clients * cls._needs(cls.name, model_params)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.initial = build_shared(ctx)  # every mentee starts from these weights
        self.shared_params = count_params(self.initial)  # dense size (no-compression bound)
        self.shapes = {name: s for name, (_, s) in param_spec(self.initial).items()}
        self.upload_metrics = metric_spec(self.shapes)
        # what a message may carry: each parameter dense or (>= 2-D) as its three factors
        self.fields = set(self.shapes) | {
            factor_key(n, f) for n, s in self.shapes.items() if len(s) >= 2 for f in FACTORS
        }
        # an average of such parameters sums to a finite float32 and has finite singular values
        self.bounds = {
            n: tighter(self.bound, frobenius_bound(math.prod(s))) if len(s) >= 2 else self.bound
            for n, s in self.shapes.items()
        }

    def threshold(self, rnd: int) -> float:
        c = self.cfg
        return threshold(rnd, c.rounds, c.fedkd_t_start, c.fedkd_t_end)

    # -- client ---------------------------------------------------------------------------------
    def init_client(self, cid: int, model: torch.nn.Module) -> KDClient:
        lr, d = self.cfg.lr, self.ctx.feature_dim
        mentee = copy.deepcopy(self.initial)
        w_h = torch.nn.Linear(d, d, bias=False).to(self.device)  # draws from the client's seed
        return KDClient(
            cid=cid,
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=lr),
            mentee=mentee,
            mentee_optimizer=torch.optim.SGD(mentee.parameters(), lr=lr),
            w_h=w_h,
            w_h_optimizer=torch.optim.SGD(w_h.parameters(), lr=lr),
        )

    def client_round(self, state: KDClient, data: ClientData, rnd: int, generator):
        def loss_fn(st, x, y):
            z_l, out_l = st.model(x)
            z_g, out_g = st.mentee(x)
            proj = st.w_h(z_g)
            ce_l = F.cross_entropy(out_l, y)
            ce_g = F.cross_entropy(out_g, y)
            D = (ce_l + ce_g).detach()
            loss_l = ce_l + kl_htfllib(out_l, out_g.detach()) / D
            loss_l = loss_l + F.mse_loss(z_l, proj.detach()) / D
            loss_g = ce_g + kl_htfllib(out_g, out_l.detach()) / D
            loss_g = loss_g + F.mse_loss(z_l.detach(), proj) / D
            return loss_l + loss_g, loss_l

        loss = train_local(state, data, self.cfg, generator, loss_fn, clip=GRAD_CLIP)
        T = self.threshold(rnd)
        c = compress(dict(state.mentee.named_parameters()), T)
        return c.message(T, {COUNT_KEY: data.num_train}), loss

    def receive(self, state: KDClient, download: Message) -> None:
        check_message(download, "server", self.fields)
        params, _ = decompress(download, self.shapes, "server", device=self.device)
        load_params(state.mentee, params)

    # -- server ---------------------------------------------------------------------------------
    def check_upload(self, msg: Message, sender: str):
        check_message(msg, sender, self.fields)
        params, kept = decompress(msg, self.shapes, sender, bounds=self.bounds, device=self.device)
        return params, read_count(msg, sender), kept

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        avg = weighted_average([(p, n) for p, n, _ in uploads.values()], self.shapes)
        T = self.threshold(rnd)
        try:
            c = compress(avg, T)
        except torch.linalg.LinAlgError as e:  # an SVD that does not converge: no download
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise MessageError(
                f"server: round {rnd}: fedkd could not factor the averaged mentee: {reason}"
            ) from e
        up_kept = sum(kept for _, _, kept in uploads.values())
        self.server.kept_floats_per_round[rnd] = up_kept + len(uploads) * c.kept_floats
        msg = c.message(T)
        return {cid: msg for cid in uploads}

    # -- what the engine reports ----------------------------------------------------------------
    def expected_floats(self, classes_present: int) -> float | None:
        """The SVD keeps a data-dependent share: the expectation is the mean of what it kept
        per round (the dense bound before any round)."""
        kept = self.server.kept_floats_per_round
        if kept:
            return float(np.mean(list(kept.values())))
        return super().expected_floats(classes_present)
