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
and its training-sample count n_i (int tensor: bytes, not floats). The server averages the
memes weighted by n_i and sends the average to every client, which loads it into its meme.
Per round: 2 * N * |meme| floats (paper Table 2). Inference: each client's local model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, Context, train_local
from tinyproto.algorithms.lg_fedavg import COUNT_SPEC, count_tensor, read_count, weighted_mean
from tinyproto.comm import Message, expect
from tinyproto.config import ConfigError
from tinyproto.models import ARCHS, FAMILIES, ClientModel, build_model, count_params

GRAD_CLIP = 10.0  # HtFLlib: "prevent divergency on specifical tasks"


def shared_arch(ctx: Context) -> str:
    """The shared model's architecture: ``shared_model`` or the family's first architecture."""
    cfg = ctx.config
    arch = cfg.shared_model or FAMILIES[cfg.family][0]
    if arch not in ARCHS:
        raise ConfigError(f"invalid shared_model={arch!r}: one of {', '.join(ARCHS)} or none")
    return arch


def build_shared(ctx: Context) -> ClientModel:
    """The shared model's initial weights: the same for every client, from the run's seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.config.seed * 7_919 + 2_000_003)
        model = build_model(
            shared_arch(ctx),
            num_classes=ctx.num_classes,
            feature_dim=ctx.feature_dim,
            in_channels=ctx.in_channels,
            image_size=ctx.image_size,
        )
    return model.to(ctx.device)


def kl_htfllib(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(logits)), element-wise mean as ``nn.KLDivLoss()``."""
    p = target_logits.softmax(dim=1)
    return (p * (F.log_softmax(target_logits, dim=1) - F.log_softmax(logits, dim=1))).mean()


def param_spec(model: torch.nn.Module) -> dict[str, tuple]:
    return {name: ("float", tuple(p.shape)) for name, p in model.named_parameters()}


@torch.no_grad()
def load_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(params[name])


class FML(Algorithm):
    name = "fml"
    aux_name = "meme"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.initial = build_shared(ctx)
        self.shared_params = count_params(self.initial)  # engine: expected_cost's model_params
        self.spec = param_spec(self.initial)

    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        state = super().init_client(cid, model)
        shared = copy.deepcopy(self.initial)
        state.aux[self.aux_name] = shared
        state.aux_optimizers[self.aux_name] = torch.optim.SGD(shared.parameters(), lr=self.cfg.lr)
        return state

    # -- client ---------------------------------------------------------------------------------
    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        a, b = self.cfg.fml_alpha, self.cfg.fml_beta

        def loss_fn(st, x, y):
            _, out_l = st.model(x)
            _, out_m = st.aux[self.aux_name](x)
            loss_l = a * F.cross_entropy(out_l, y) + (1 - a) * kl_htfllib(out_l, out_m.detach())
            loss_m = b * F.cross_entropy(out_m, y) + (1 - b) * kl_htfllib(out_m, out_l.detach())
            return loss_l + loss_m, loss_l

        loss = train_local(state, data, self.cfg, generator, loss_fn, clip=GRAD_CLIP)
        meme = state.aux[self.aux_name]
        tensors = {name: p.detach().clone() for name, p in meme.named_parameters()}
        tensors["num_train"] = count_tensor(data.num_train, next(meme.parameters()).device)
        return Message(tensors), loss

    def receive(self, state: ClientState, download: Message) -> None:
        params = expect(download, "server", self.spec, device=self.device)
        load_params(state.aux[self.aux_name], params)

    # -- server ---------------------------------------------------------------------------------
    def check_upload(self, msg: Message, sender: str):
        t = expect(msg, sender, {**self.spec, **COUNT_SPEC}, bound=self.bound, device=self.device)
        return t, read_count(msg, sender)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        weights = [n for _, n in uploads.values()]
        avg = {k: weighted_mean([t[k] for t, _ in uploads.values()], weights) for k in self.spec}
        msg = Message(avg)
        return {cid: msg for cid in uploads}
