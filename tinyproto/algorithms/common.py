"""Pieces more than one algorithm uses: local training, per-class means, per-class messages,
FedAvg over named arrays with n_i as metadata, and the shared model of FML and FedKD."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyproto import aps, timing
from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, Context
from tinyproto.comm import Bound, Message, MessageError, expect, read_config, secagg
from tinyproto.config import Config, ConfigError
from tinyproto.config.participation import participation
from tinyproto.models import ARCHS, FAMILIES, ClientModel, build_model

GRAD_CLIP = 10.0  # HtFLlib's FML / FedKD: "prevent divergency on specifical tasks"
COUNT_KEY = "num_train"  # n_i, a client's training-sample count: an int config entry


# -- client side: training and what it reports ---------------------------------------------------


@timing.timed("train")
def train_local(
    state: ClientState,
    data: ClientData,
    cfg: Config,
    generator: torch.Generator,
    loss_fn,
    clip: float | None = None,
) -> float:
    """``cfg.local_epochs`` epochs of SGD over the client's shuffled training split.

    Steps every (module, optimiser) pair of ``state.trained()`` together (e.g. FML's local model
    and meme). ``loss_fn(state, x, y)`` returns the scalar to minimise, or a pair (to minimise,
    to report) when several models train on separated losses. ``clip`` bounds each module's
    gradient norm (HtFLlib's FML/FedKD). Returns the mean reported loss.
    """
    pairs = state.trained()
    for m, _ in pairs:
        m.train()
    min_last = min_last_batch([m for m, _ in pairs], cfg.batch_size)
    amp = autocast_type(cfg, next(pairs[0][0].parameters()).device)
    total, steps = 0.0, 0
    for _ in range(cfg.local_epochs):
        for x, y in data.train_batches(cfg.batch_size, generator, min_last):
            if amp is None:
                out = loss_fn(state, x, y)
            else:  # forward passes and losses in bfloat16 where autocast allows it
                with torch.autocast(amp, dtype=torch.bfloat16):
                    out = loss_fn(state, x, y)
            loss, reported = out if isinstance(out, tuple) else (out, out)
            for _, opt in pairs:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                for m, _ in pairs:
                    torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
            for _, opt in pairs:
                opt.step()
            total += reported.detach()
            steps += 1
    return float(total / max(steps, 1))


def autocast_type(cfg: Config, device: torch.device) -> str | None:
    """The device type local training autocasts to bfloat16 on (``precision="bf16"``), or None.

    Only the forward passes and losses of local training are autocast: weights, gradients and
    optimiser steps stay float32, and whatever leaves a client (prototypes, logit sums,
    weights) is float32, as the server's message checks require."""
    if cfg.precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"invalid precision={cfg.precision!r} on device {device.type!r}: bfloat16 autocast "
            "runs on cpu or cuda; use precision='fp32'"
        )
    return device.type


def min_last_batch(modules, batch_size: int) -> int:
    """The smallest last batch a client trains on: half a batch where BatchNorm is present
    (smaller ones are merged into the previous batch), else 2 (only a single sample merges)."""
    bn = torch.nn.modules.batchnorm._BatchNorm
    if any(isinstance(m, bn) for mod in modules for m in mod.modules()):
        return max(2, batch_size // 2)
    return 2


def ce_loss(state: ClientState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE(h_i(f_i(x)), y) on the client's own model: plain local training."""
    return F.cross_entropy(state.model(x)[1], y)


class ClassSums:
    """Running per-class sums and counts of vectors, on the vectors' device with no host
    synchronisation until :meth:`means`. ``counts``: the per-class counts :meth:`add` will see,
    when known beforehand (a client's training passes visit every sample once per epoch), so
    the hot loop only sums."""

    def __init__(self, num_classes: int, counts: torch.Tensor | None = None):
        self.K = num_classes
        self.sums: torch.Tensor | None = None
        self.counts = counts
        self.counting = counts is None

    @torch.no_grad()
    def add(self, z: torch.Tensor, y: torch.Tensor) -> None:
        z = z.detach()
        if z.dtype != torch.float32:  # bf16 autocast: sum in float32
            z = z.float()
        if self.sums is None:
            self.sums = torch.zeros(self.K, z.shape[1], device=z.device, dtype=z.dtype)
            if self.counting:
                self.counts = torch.zeros(self.K, device=z.device, dtype=torch.long)
        self.sums.index_add_(0, y, z)
        if self.counting:
            self.counts.index_add_(0, y, torch.ones_like(y))

    def means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(classes [k], means [k, D], counts [k]) for the classes seen."""
        classes = torch.nonzero(self.counts).squeeze(1)
        n = self.counts[classes]
        return classes, self.sums[classes] / n.unsqueeze(1).to(self.sums.dtype), n


@torch.no_grad()
@timing.timed("prototypes")
def class_means(
    model: torch.nn.Module, data: ClientData, num_classes: int, output: str = "features"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class means of the model's features (or logits) over the training split, eval mode.

    Returns (classes [k], means [k, D], counts n_ij [k]) for the k classes the client holds;
    features give Eq. 3's local prototypes p_ij.
    """
    model.eval()
    acc = ClassSums(num_classes)
    for x, y in data.batches("train"):
        acc.add(model.features(x) if output == "features" else model(x)[1], y)
    return acc.means()


def class_table(
    classes: torch.Tensor, vectors: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter per-class vectors into a [K, D] table and a [K] mask of the classes present."""
    table = torch.zeros(num_classes, vectors.shape[1], device=vectors.device, dtype=vectors.dtype)
    table[classes] = vectors
    has = torch.zeros(num_classes, dtype=torch.bool, device=vectors.device)
    has[classes] = True
    return table, has


def kl_htfllib(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(logits)), element-wise mean as ``nn.KLDivLoss()``."""
    p = target_logits.softmax(dim=1)
    return (p * (F.log_softmax(target_logits, dim=1) - F.log_softmax(logits, dim=1))).mean()


# -- per-class messages (prototypes, logits) ---------------------------------------------------


def check_class_vectors(
    msg: Message,
    sender: str,
    key: str,
    width: int,
    num_classes: int,
    *,
    bound: Bound | None = None,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (classes [k] int64, <key> [k, width] float32) message and nothing else;
    class ids distinct and in [0, num_classes). Returns (classes, vectors) on ``device``."""
    t = expect(
        msg,
        sender,
        {"classes": ("int", (None,)), key: ("float", (None, width))},
        bound=bound,
        device=device,
    )
    classes, v = t["classes"], t[key]
    if classes.numel() != v.shape[0]:
        raise MessageError(
            f"message from {sender}: field 'classes' has {classes.numel()} class ids for "
            f"{v.shape[0]} rows of {key!r}"
        )
    if classes.numel():
        s = classes.sort().values
        lo, hi, dup = torch.stack([s[0], s[-1], (s[1:] == s[:-1]).any().long()]).tolist()
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise MessageError(
                f"message from {sender}: field 'classes' holds class id {bad} outside "
                f"[0, {num_classes})"
            )
        if dup:
            rep = int(s[1:][s[1:] == s[:-1]][0])
            raise MessageError(f"message from {sender}: field 'classes' repeats class id {rep}")
    return classes, v


class ClassVectorAlgorithm(Algorithm):
    """An algorithm whose messages are per-class vectors, (classes [k] int64, <key> [k, width]
    float32) both ways: FedProto's prototypes, FedDistill's logits."""

    key: str  # the vectors' array name
    width: int  # their length, set in __init__

    def check_vectors(self, msg: Message, sender: str, bound: Bound | None = None):
        K = self.ctx.num_classes
        return check_class_vectors(
            msg, sender, self.key, self.width, K, bound=bound, device=self.device
        )

    # with ``secure_agg`` (an algorithm whose spec has ``secure_sum``: its server needs only the
    # per-class sums), every upload is a masked table (tinyproto.comm.secagg) and the server
    # sees only the round's sums
    mean_of_sums = True  # the server sends sum / holders per class (False: the sum itself)

    def check_upload(self, msg: Message, sender: str):
        if self.cfg.secure_agg:
            return secagg.check(msg, sender, self.ctx.num_classes, self.width)
        return self.check_vectors(msg, sender, self.bound)

    def secure_upload(self, msg: Message, rnd: int, cid: int) -> Message:
        """Client ``cid``'s class-wise upload of round ``rnd`` as a masked table (comm.secagg)."""
        sampled = participation(self.cfg, rnd).sampled
        K, seed = self.ctx.num_classes, self.cfg.seed
        return secagg.mask(msg, self.key, K, self.width, seed, rnd, cid, sampled)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        """Every client gets the per-class sums of the uploads (divided by the holders when
        ``mean_of_sums``), for the classes someone holds: from the checked (classes, vectors)
        pairs, or with ``secure_agg`` from the unmasked sum of the round's masked tables."""
        if self.cfg.secure_agg:
            sampled = participation(self.cfg, rnd).sampled
            total, holders = secagg.unmask_sum(uploads, sampled, rnd, self.width)
            total, holders = total.to(self.device), holders.to(self.device)
        else:
            total, holders = aps.sum_by_class(
                list(uploads.values()), self.ctx.num_classes, mean=False
            )
        if self.mean_of_sums:
            total = aps.per_holder(total, holders)
        msg = self.class_message(total, holders)
        return {cid: msg for cid in uploads}

    def class_message(self, P: torch.Tensor, holders: torch.Tensor) -> Message:
        """The rows of a [K, width] table for the classes that have holders."""
        classes = torch.nonzero(holders).squeeze(1)
        return Message({"classes": classes, self.key: P[classes].contiguous()})


# -- FedAvg over named arrays, weighted by n_i ---------------------------------------------------


def read_count(msg: Message, sender: str) -> int:
    """The sender's training-sample count n_i (an int >= 1) from its upload's config."""
    n = read_config(msg, sender, COUNT_KEY, int)
    if n < 1:
        raise MessageError(
            f"message from {sender}: config entry {COUNT_KEY!r} = {n}, expected >= 1"
        )
    return n


def weighted_mean(tensors: list[torch.Tensor], weights: list[int]) -> torch.Tensor:
    """sum_i w_i t_i / sum_i w_i (FedAvg)."""
    total = float(sum(weights))
    out = torch.zeros_like(tensors[0])
    for t, w in zip(tensors, weights):
        out.add_(t, alpha=w / total)
    return out


def weighted_average(pairs: list[tuple[dict[str, torch.Tensor], int]], names) -> dict:
    """FedAvg of every named array over (arrays, n_i) pairs, in the order given."""
    weights = [n for _, n in pairs]
    return {k: weighted_mean([arrays[k] for arrays, _ in pairs], weights) for k in names}


class FedAvgAlgorithm(Algorithm):
    """An algorithm whose server is FedAvg: uploads carry the arrays of ``self.spec`` and n_i
    (config), every client gets the n_i-weighted average (LG-FedAvg's heads, FML's memes)."""

    @classmethod
    def expected_cost(cls, *, num_clients, model_params=None, **_) -> int | float:
        """The shared model, both ways, per client: 2 N x model_params (FML, FedAvg)."""
        return 2 * num_clients * cls._needs(cls.name, model_params)

    upload_config = {COUNT_KEY: int}
    spec: dict[str, tuple]  # {name: (kind, shape)} of the averaged arrays, set in __init__

    def check_upload(self, msg: Message, sender: str):
        t = expect(msg, sender, self.spec, bound=self.bound, device=self.device)
        return t, read_count(msg, sender)

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        msg = Message(weighted_average(list(uploads.values()), self.spec))
        return {cid: msg for cid in uploads}


# -- the shared model of FML and FedKD ---------------------------------------------------------


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


def param_spec(model: torch.nn.Module) -> dict[str, tuple]:
    """{name: ("float", shape)} of a model's parameters (BatchNorm statistics are not any)."""
    return {name: ("float", tuple(p.shape)) for name, p in model.named_parameters()}


def named_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of a model's parameters, as they go into a message."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@torch.no_grad()
def load_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(params[name])
