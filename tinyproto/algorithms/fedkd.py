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
whose code produced the paper's numbers, factors the parameters, and so do we). Each parameter
with >= 2 dims is reshaped to a matrix [out, -1] and replaced by its truncated SVD factors
U_k [m, k], S_k [k], V_k [k, n], with the smallest k whose energy sum(S[:k]^2) / sum(S^2) >= T(r);
where the factors, k * (m + n + 1) floats, would not be smaller than the dense m * n matrix (or
the matrix is all zeros), it is sent dense; 1-D parameters go dense. The threshold grows
linearly over the rounds, T(r) = T_start + (r + 1) / R * (T_end - T_start) for round
r = 0..R-1 (0.95 -> 0.98; HtFLlib updates it after each round, one round later). Uploads carry
n_i as an int tensor (bytes). The server reconstructs every client's mentee, averages them
weighted by n_i, compresses the average with the same threshold and sends it to every client,
which reconstructs and loads it.

Each message's ``meta`` records the threshold, the rank and kept energy of every matrix and the
floats the SVD keeps; the server keeps the per-round totals in ``kept_floats_per_round``
(``comm.expected_cost("fedkd", kept_floats=...)`` checks the measurement against them).
HtFLlib's decomposition differs in two details we do not copy: it factors 4-D convolution kernels
as a batch of [kh, kw] matrices (not [out, in*kh*kw]) and averages the clients uniformly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, train_local
from tinyproto.algorithms.fml import (
    GRAD_CLIP,
    build_shared,
    kl_htfllib,
    load_params,
    param_spec,
)
from tinyproto.algorithms.lg_fedavg import COUNT_KEY, count_tensor, read_count, weighted_mean
from tinyproto.comm import (
    F32_MAX,
    Bound,
    Message,
    MessageError,
    check_field,
    check_message,
    check_values,
    tighter,
)
from tinyproto.models import count_params

FACTORS = ("U", "S", "V")


def factor_key(name: str, factor: str) -> str:
    return f"{name}#{factor}"


def frobenius_bound(numel: int) -> Bound:
    """|value| <= sqrt(float32 max / (4 numel)): the squared Frobenius norm of a matrix of such
    values, and so its singular values, stay finite."""
    n = max(int(numel), 1)
    return Bound(
        math.sqrt(F32_MAX / (4 * n)),
        f"sqrt(float32 max / (4 x {n} entries)), so the SVD of the average stays finite",
    )


def threshold(rnd: int, rounds: int, t_start: float, t_end: float) -> float:
    """T(r) = T_start + (r + 1) / R * (T_end - T_start), r = 0..R-1."""
    return t_start + min(rnd + 1, rounds) / rounds * (t_end - t_start)


def energy_rank(S: torch.Tensor, T: float) -> int:
    """Smallest k with sum(S[:k]^2) / sum(S^2) >= T (S descending, not all zero)."""
    cum = S.double().pow(2).cumsum(0)
    k = int(torch.searchsorted(cum, T * cum[-1]).item()) + 1
    return min(k, S.numel())


@dataclass
class Compressed:
    """A compressed parameter set: the tensors to send and what the SVD kept."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    ranks: dict[str, int | None] = field(default_factory=dict)  # None = sent dense
    energy: dict[str, float] = field(default_factory=dict)  # kept energy (1.0 when dense)
    kept_floats: int = 0

    def meta(self, T: float) -> dict:
        return {
            "threshold": T,
            "ranks": dict(self.ranks),
            "energy": dict(self.energy),
            "kept_floats": self.kept_floats,
        }


@torch.no_grad()
def compress(params: dict[str, torch.Tensor], T: float) -> Compressed:
    """Truncated SVD of every >= 2-D parameter (as [out, -1]) keeping energy >= T."""
    out = Compressed()
    for name, p in params.items():
        p = p.detach()
        if p.dim() < 2:
            out.tensors[name] = p.clone()
            out.ranks[name], out.energy[name] = None, 1.0
            out.kept_floats += p.numel()
            continue
        M = p.reshape(p.shape[0], -1)
        m, n = M.shape
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        total = float(S.double().pow(2).sum())
        k = energy_rank(S, T) if total > 0 else None
        if k is None or k * (m + n + 1) >= m * n:  # factors not smaller: dense
            out.tensors[name] = p.clone()
            out.ranks[name], out.energy[name] = None, 1.0
            out.kept_floats += m * n
            continue
        out.tensors[factor_key(name, "U")] = U[:, :k].contiguous()
        out.tensors[factor_key(name, "S")] = S[:k].contiguous()
        out.tensors[factor_key(name, "V")] = Vh[:k].contiguous()
        out.ranks[name] = k
        out.energy[name] = float(S[:k].double().pow(2).sum()) / total
        out.kept_floats += k * (m + n + 1)
    return out


def decompress(
    msg: Message,
    shapes: dict[str, tuple],
    sender: str,
    *,
    bounds: dict[str, Bound] | None = None,
    device=None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Rebuild every parameter from ``msg``; returns (params, floats the factors/dense hold).

    Every field exactly float32 and finite; with ``bounds`` (by parameter name) each dense or
    rebuilt parameter within its bound. Fields outside ``shapes`` are not looked at (callers
    refuse them with ``check_message``). Raises MessageError (one line, naming the sender and
    the field) on a malformed message.
    """
    check_message(msg, sender)
    fields, factored, kept = {}, {}, 0
    for name, shape in shapes.items():
        keys = [factor_key(name, f) for f in FACTORS]
        has_factors = [k in msg for k in keys]
        if name in msg:
            if any(has_factors):
                raise MessageError(f"message from {sender}: field {name!r} sent dense and factored")
            fields[name] = check_field(msg, sender, name, "float", shape, device)
            kept += fields[name].numel()
            continue
        if len(shape) < 2 or not any(has_factors):
            raise MessageError(f"message from {sender}: missing field {name!r}")
        m = shape[0]
        n = math.prod(shape[1:])
        kU, kS, kV = keys
        U = fields[kU] = check_field(msg, sender, kU, "float", (m, None), device)
        S = fields[kS] = check_field(msg, sender, kS, "float", (None,), device)
        V = fields[kV] = check_field(msg, sender, kV, "float", (None, n), device)
        k = U.shape[1]
        if S.shape[0] != k or V.shape[0] != k or not 1 <= k <= min(m, n):
            raise MessageError(
                f"message from {sender}: field {name!r} has inconsistent SVD factors "
                f"U{list(U.shape)} S{list(S.shape)} V{list(V.shape)}"
            )
        factored[name] = (U, S, V)
        kept += k * (m + n + 1)
    check_values(fields, sender, bounds)  # factors: finite; dense parameters: bounded too
    rebuilt = {name: ((U * S) @ V).reshape(shapes[name]) for name, (U, S, V) in factored.items()}
    check_values(rebuilt, sender, bounds, label=" rebuilt from its SVD factors")
    params = {name: fields[name] if name in fields else rebuilt[name] for name in shapes}
    return params, kept


class FedKD(Algorithm):
    name = "fedkd"
    aux_name = "mentee"
    upload_meta = frozenset(Compressed().meta(0.0))  # threshold, ranks, energy, kept_floats

    def __init__(self, ctx):
        super().__init__(ctx)
        self.initial = build_shared(ctx)
        self.shared_params = count_params(self.initial)  # dense size (no-compression bound)
        self.shapes = {name: s for name, (_, s) in param_spec(self.initial).items()}
        self.kept_floats_per_round: dict[int, int] = {}  # round -> floats the SVD kept, up+down
        # what a message may carry: each parameter dense or (>= 2-D) as its three factors
        self.download_fields = set(self.shapes) | {
            factor_key(n, f) for n, s in self.shapes.items() if len(s) >= 2 for f in FACTORS
        }
        self.upload_fields = self.download_fields | {COUNT_KEY}
        # an average of such parameters sums to a finite float32 and has finite singular values
        self.bounds = {
            n: tighter(self.bound, frobenius_bound(math.prod(s))) if len(s) >= 2 else self.bound
            for n, s in self.shapes.items()
        }

    def threshold(self, rnd: int) -> float:
        c = self.cfg
        return threshold(rnd, c.rounds, c.fedkd_t_start, c.fedkd_t_end)

    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        state = super().init_client(cid, model)
        mentee = copy.deepcopy(self.initial)
        d = self.ctx.feature_dim
        w_h = torch.nn.Linear(d, d, bias=False).to(self.ctx.device)
        state.aux[self.aux_name] = mentee
        state.aux["w_h"] = w_h
        lr = self.cfg.lr
        state.aux_optimizers[self.aux_name] = torch.optim.SGD(mentee.parameters(), lr=lr)
        state.aux_optimizers["w_h"] = torch.optim.SGD(w_h.parameters(), lr=lr)
        return state

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        def loss_fn(st, x, y):
            z_l, out_l = st.model(x)
            z_g, out_g = st.aux[self.aux_name](x)
            proj = st.aux["w_h"](z_g)
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
        mentee = state.aux[self.aux_name]
        c = compress(dict(mentee.named_parameters()), T)
        tensors = dict(c.tensors)
        tensors["num_train"] = count_tensor(data.num_train, next(mentee.parameters()).device)
        return Message(tensors, meta=c.meta(T)), loss

    def receive(self, state: ClientState, download: Message) -> None:
        check_message(download, "server", self.download_fields)
        params, _ = decompress(download, self.shapes, "server", device=self.device)
        load_params(state.aux[self.aux_name], params)

    # -- server ---------------------------------------------------------------------------------
    def check_upload(self, msg: Message, sender: str):
        check_message(msg, sender, self.upload_fields)
        params, kept = decompress(msg, self.shapes, sender, bounds=self.bounds, device=self.device)
        return params, kept, read_count(msg, sender)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        models = [params for params, _, _ in uploads.values()]
        weights = [n for _, _, n in uploads.values()]
        up_kept = sum(kept for _, kept, _ in uploads.values())
        avg = {name: weighted_mean([p[name] for p in models], weights) for name in self.shapes}
        T = self.threshold(rnd)
        try:
            c = compress(avg, T)
        except torch.linalg.LinAlgError as e:  # an SVD that does not converge: no download
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise MessageError(
                f"server: round {rnd}: fedkd could not factor the averaged mentee: {reason}"
            ) from e
        msg = Message(c.tensors, meta=c.meta(T))
        self.kept_floats_per_round[rnd] = up_kept + len(uploads) * c.kept_floats
        return {cid: msg for cid in uploads}

    def server_state_dict(self) -> dict:
        return {"kept_floats_per_round": dict(self.kept_floats_per_round)}

    def load_server_state_dict(self, sd: dict) -> None:
        self.kept_floats_per_round = dict(sd.get("kept_floats_per_round", {}))
