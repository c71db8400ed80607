"""What every algorithm shares: client state, the local training loop, prototypes, evaluation.

An algorithm is a class with a client side and a server side that talk only through
``Message`` objects (tinyproto.comm):

    upload, loss = algo.client_round(state, data, rnd)    # local training, then the upload
    downloads    = algo.server_round(uploads, rnd)         # {client id: Message}
    algo.receive(state, downloads[cid])                    # the client stores what it got
    predictions  = algo.predict(state, x)                  # inference (Eq. 12 for prototypes)

The engine runs these in process; a distributed runtime can serialise the same messages.

Trust: ``server_round`` is the same for every algorithm: it refuses the round's container and
sender ids (``comm.collect_uploads``), then every upload (``check_upload``: exact dtypes and
shapes, no undeclared field, finite values within the algorithm's magnitude ``bound``), all
before any server state is touched; then ``aggregate`` runs on a snapshot-protected state and
its downloads must be finite (``comm.check_downloads``), else the state is rolled back. Clients
check their download the same way in ``receive``. Every refusal is a one-line MessageError.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tinyproto.comm import (
    Bound,
    Message,
    MessageError,
    check_downloads,
    check_message,
    collect_uploads,
    expect,
    sender_name,
    sum_bound,
)
from tinyproto.config import Config
from tinyproto.data import ClientSplit, Dataset

EVAL_BATCH = 1024


@dataclass
class Context:
    """Run-wide facts an algorithm needs (shared by server and clients before training)."""

    config: Config
    num_classes: int
    feature_dim: int
    device: torch.device
    masks: torch.Tensor | None = None  # [K, d] bool, CPS on
    mu: float | None = None  # APS scaling constant, APS on
    in_channels: int = 1
    image_size: int = 28
    num_clients: int = 1


@dataclass
class ClientData:
    """A client's view of the device-resident dataset: index sets only."""

    dataset: Dataset
    split: ClientSplit

    @property
    def num_train(self) -> int:
        return int(self.split.train_idx.numel())

    @property
    def num_test(self) -> int:
        return int(self.split.test_idx.numel())

    def train_batches(self, batch_size: int, generator: torch.Generator):
        """Shuffled mini-batches of the training split (last partial batch kept).

        A last batch of a single sample is merged into the one before it: BatchNorm cannot
        train on one value per channel (MobileNetV2 / ShuffleNetV2 / EfficientNet end in 1x1 maps).
        """
        idx = self.split.train_idx
        n = idx.numel()
        perm = torch.randperm(n, generator=generator).to(idx.device)
        starts = list(range(0, n, batch_size))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else n
            b = idx[perm[start:stop]]
            yield self.dataset.images(b), self.dataset.y[b]

    def batches(self, which: str, batch_size: int = EVAL_BATCH):
        idx = self.split.train_idx if which == "train" else self.split.test_idx
        for start in range(0, idx.numel(), batch_size):
            b = idx[start : start + batch_size]
            yield self.dataset.images(b), self.dataset.y[b]


@dataclass
class ClientState:
    """Everything a client keeps between rounds; checkpointed as a whole."""

    cid: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    memory: dict[str, Any] = field(default_factory=dict)  # tensors received / derived
    aux: dict[str, torch.nn.Module] = field(default_factory=dict)  # e.g. FML's meme model
    aux_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "memory": self.memory,
            "aux": {k: m.state_dict() for k, m in self.aux.items()},
            "aux_optimizers": {k: o.state_dict() for k, o in self.aux_optimizers.items()},
        }

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.memory = sd["memory"]
        for k, m in self.aux.items():
            m.load_state_dict(sd["aux"][k])
        for k, o in self.aux_optimizers.items():
            o.load_state_dict(sd["aux_optimizers"][k])


class Algorithm:
    """Defaults shared by all algorithms; subclasses override what differs.

    A subclass's server side is ``check_upload`` (validate one message, return what
    ``aggregate`` needs) and ``aggregate`` (the checked uploads -> {client id: download}); its
    only mutable server state is what ``server_state_dict`` returns.
    """

    name = "base"
    prototype_based = False
    upload_meta: frozenset[str] = frozenset()  # metadata entries an upload may carry (uncounted)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.cfg = ctx.config
        self.device = ctx.device
        # the largest |value| an upload may carry: N of them must sum to a finite float32
        self.bound: Bound = sum_bound(ctx.num_clients)

    # -- client side ----------------------------------------------------------------------------
    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        opt = torch.optim.SGD(model.parameters(), lr=self.cfg.lr)
        return ClientState(cid=cid, model=model, optimizer=opt)

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        raise NotImplementedError

    def receive(self, state: ClientState, download: Message) -> None:
        expect(download, "server", {}, device=self.device)

    @torch.no_grad()
    def predict(self, state: ClientState, x: torch.Tensor) -> torch.Tensor:
        """Default inference: the client's own head (argmax of logits)."""
        _, logits = state.model(x)
        return logits.argmax(1)

    # -- server side ----------------------------------------------------------------------------
    def server_round(self, uploads, rnd: int) -> dict[int, Message]:
        """One round on the server: ``uploads`` is {client id: Message} or a sequence of
        (client id, Message) pairs (as a network runtime delivers them); returns
        {client id: download} for the clients that uploaded.

        Raises MessageError (one line, naming the sender and the field) on an empty round, a
        bad or repeated sender id or a malformed upload, all checked before any server state
        changes; and on a NaN or inf the server itself produced, after rolling its state back.
        """
        messages = collect_uploads(uploads, self.ctx.num_clients, rnd)
        checked = {}
        for cid, msg in messages.items():
            check_message(msg, sender_name(cid), meta=self.upload_meta)
            checked[cid] = self.check_upload(msg, sender_name(cid))
        snapshot = copy.deepcopy(self.server_state_dict())
        try:
            downloads = self.aggregate(checked, rnd)
            check_downloads(downloads, self.name, rnd)
        except BaseException:
            self.load_server_state_dict(snapshot)
            raise
        return downloads

    def check_upload(self, msg: Message, sender: str) -> Any:
        """Validate one upload (MessageError if malformed); return what ``aggregate`` needs."""
        expect(msg, sender, {}, device=self.device)  # nothing crosses the network
        return None

    def aggregate(self, uploads: dict[int, Any], rnd: int) -> dict[int, Message]:
        """The server's step on checked uploads: {client id: download}."""
        return {cid: Message() for cid in uploads}

    def server_state_dict(self) -> dict:
        return {}

    def load_server_state_dict(self, sd: dict) -> None:
        pass


def train_local(
    state: ClientState,
    data: ClientData,
    cfg: Config,
    generator: torch.Generator,
    loss_fn,
    clip: float | None = None,
) -> float:
    """``cfg.local_epochs`` epochs of SGD over the client's shuffled training split.

    Steps the client's model and every aux model (e.g. FML's meme) together. ``loss_fn(state,
    x, y)`` returns the scalar to minimise, or a pair (to minimise, to report) when several
    models train on separated losses. ``clip`` bounds each model's gradient norm (HtFLlib's
    FML/FedKD). Returns the mean reported loss.
    """
    modules = [state.model, *state.aux.values()]
    optimizers = [state.optimizer, *state.aux_optimizers.values()]
    for m in modules:
        m.train()
    total, steps = 0.0, 0
    for _ in range(cfg.local_epochs):
        for x, y in data.train_batches(cfg.batch_size, generator):
            out = loss_fn(state, x, y)
            loss, reported = out if isinstance(out, tuple) else (out, out)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                for m in modules:
                    torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
            for opt in optimizers:
                opt.step()
            total += reported.detach()
            steps += 1
    return float(total / max(steps, 1))


@torch.no_grad()
def class_means(
    model: torch.nn.Module, data: ClientData, num_classes: int, output: str = "features"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class means of the model's features (or logits) over the training split, eval mode.

    Returns (classes [k], means [k, D], counts n_ij [k]) for the k classes the client holds.
    """
    model.eval()
    sums, counts = None, None
    for x, y in data.batches("train"):
        z = model.features(x) if output == "features" else model(x)[1]
        if sums is None:
            sums = torch.zeros(num_classes, z.shape[1], device=z.device, dtype=z.dtype)
            counts = torch.zeros(num_classes, device=z.device, dtype=torch.long)
        sums.index_add_(0, y, z)
        counts.index_add_(0, y, torch.ones_like(y))
    classes = torch.nonzero(counts).squeeze(1)
    n = counts[classes]
    return classes, sums[classes] / n.unsqueeze(1).to(sums.dtype), n


def local_prototypes(model: torch.nn.Module, data: ClientData, num_classes: int):
    """Eq. 3: p_ij, the mean feature of class j over client i's training split (eval mode)."""
    return class_means(model, data, num_classes, "features")


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


def class_table(
    classes: torch.Tensor, vectors: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter per-class vectors into a [K, D] table and a [K] mask of the classes present."""
    table = torch.zeros(num_classes, vectors.shape[1], device=vectors.device, dtype=vectors.dtype)
    table[classes] = vectors
    has = torch.zeros(num_classes, dtype=torch.bool, device=vectors.device)
    has[classes] = True
    return table, has


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
    """
    loss = F.cross_entropy(logits, y)
    if target is not None and lam > 0:
        tgt = target[y]
        if has_target is not None and not bool(has_target.all()):
            tgt = torch.where(has_target[y].unsqueeze(1), tgt, features.detach())
        loss = loss + lam * F.mse_loss(features, tgt)
    return loss


@torch.no_grad()
def nearest_prototype(features: torch.Tensor, target: torch.Tensor, has_target: torch.Tensor):
    """Eq. 12: argmin_j ||f(x) - P_j||_2 over the classes that have a global prototype."""
    classes = torch.nonzero(has_target).squeeze(1)
    dist = torch.cdist(features, target[classes])
    return classes[dist.argmin(1)]
