"""The algorithm protocol: typed client and server state, and steps that talk only in messages.

An algorithm is a class with a client side and a server side that share nothing but
``Message`` objects (tinyproto.comm.message):

    state        = algo.init_client(cid, model)              # a typed ClientState
    upload, loss = algo.client_round(state, data, rnd, gen)  # local training, then the upload
    downloads    = algo.server_round(uploads, rnd)           # {client id: Message}
    algo.receive(state, downloads[cid])                      # the client stores what it got
    correct      = algo.evaluate(state, data)                # Eq. 12 for prototype methods

Client methods read and write only the ClientState passed in; server methods only
``algo.server`` (a typed ServerState) and the uploads. Both sides may read the run-wide
constants the algorithm derives from its Context (K, d, masks, mu, bounds): a Flower ClientApp
and ServerApp derive them from the same Config. The engine runs both sides in one process; a
network runtime serialises the same messages (``Message.to_bytes``) and gets the same numbers.

Trust: ``server_round`` is the same for every algorithm: it refuses the round's container and
sender ids (``comm.collect_uploads``), then every upload (declared metadata only, then
``check_upload``: exact dtypes and shapes, no undeclared field, finite values within the
algorithm's magnitude ``bound``), all before any server state is touched; then ``aggregate``
runs and its downloads must be finite (``comm.check_downloads``), else ``algo.server`` is
restored. Clients check their download the same way in ``receive``. Every refusal is a one-line
MessageError.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import torch

from tinyproto import comm
from tinyproto.algorithms import compute
from tinyproto.comm import Bound, Message, check_downloads, check_message, collect_uploads, expect
from tinyproto.config import Config
from tinyproto.data import ClientSplit, Dataset

EVAL_BATCH = 1024
# a client's shuffled epoch is gathered in one copy (batches are then views of it) when its
# images take at most this many bytes as float32; larger splits gather batch by batch
EPOCH_GATHER_MAX_BYTES = 256 * 2**20


@dataclass
class Context:
    """Run-wide facts an algorithm needs (known to server and clients before training)."""

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

    def train_batches(self, batch_size: int, generator: torch.Generator, min_last: int = 2):
        """Shuffled mini-batches of the training split; no sample is dropped.

        A last partial batch smaller than ``min_last`` is merged into the one before it. The
        default (2) merges a single sample: nothing trains on one value per channel. Models
        with BatchNorm need more (``min_last_batch``): MobileNetV2 / ShuffleNetV2 /
        EfficientNet-B0 end in 1x1 maps, and a 2-sample batch there drives their running
        variances to 1e20-1e27 and the evaluation features to NaN (HtFLlib drops the partial
        batch instead; merging keeps every sample in every epoch).
        """
        idx = self.split.train_idx
        n = idx.numel()
        perm = torch.randperm(n, generator=generator).to(idx.device)
        starts = list(range(0, n, batch_size))
        if len(starts) > 1 and n - starts[-1] < min_last:
            starts.pop()
        order = idx[perm]
        ds = self.dataset
        whole = n * ds.sample_bytes() <= EPOCH_GATHER_MAX_BYTES
        if whole:  # one gather per epoch: the batches are views of it, the same values
            xs, ys = ds.images(order), ds.y[order]
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else n
            if whole:
                yield xs[start:stop], ys[start:stop]
            else:
                b = order[start:stop]
                yield ds.images(b), ds.y[b]

    def batches(self, which: str, batch_size: int = EVAL_BATCH):
        idx = self.split.train_idx if which == "train" else self.split.test_idx
        for start in range(0, idx.numel(), batch_size):
            b = idx[start : start + batch_size]
            yield self.dataset.images(b), self.dataset.y[b]


class StateDict:
    """``state_dict`` / ``load_state_dict`` over a dataclass's fields: modules and optimisers by
    their own state dicts, everything else (tensors, numbers, None, dicts of them) as is."""

    def state_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.state_dict() if hasattr(v, "load_state_dict") else v
        return out

    def load_state_dict(self, sd: dict) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if hasattr(v, "load_state_dict"):
                v.load_state_dict(sd[f.name])
            else:
                setattr(self, f.name, sd[f.name])


@dataclass
class ClientState(StateDict):
    """What every client keeps between rounds: its own model and optimiser. Algorithms that
    keep more declare a subclass; the whole dataclass is checkpointed."""

    cid: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def trained(self) -> list[tuple[torch.nn.Module, torch.optim.Optimizer]]:
        """The (module, optimiser) pairs local training steps together (FML adds its meme)."""
        return [(self.model, self.optimizer)]


@dataclass
class ServerState(StateDict):
    """What the server keeps between rounds (nothing, for most algorithms); checkpointed."""


class Algorithm:
    """Defaults shared by all algorithms; subclasses override what differs.

    A subclass's server side is ``check_upload`` (validate one message, return what
    ``aggregate`` needs) and ``aggregate`` (the checked uploads -> {client id: download}); its
    only mutable server state is ``self.server``, created by ``init_server``.
    """

    name = "base"
    prototype_based = False
    client_state: type[ClientState] = ClientState  # what a client keeps between rounds
    server_state: type[ServerState] = ServerState  # what the server keeps between rounds
    # metadata an upload may carry, {key: type}: config the server reads, metrics it may ignore
    upload_config: dict[str, type] = {}
    upload_metrics: dict[str, type] = {}
    shared_params: int | None = None  # the size of a model every client shares (FML, FedKD)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.cfg = ctx.config
        self.device = ctx.device
        # the largest |value| an upload may carry: N of them must sum to a finite float32
        self.bound: Bound = comm.sum_bound(ctx.num_clients)
        self.server = self.init_server()

    # -- client side ----------------------------------------------------------------------------
    def init_client(self, cid: int, model: torch.nn.Module) -> ClientState:
        opt = torch.optim.SGD(model.parameters(), lr=self.cfg.lr)
        return self.client_state(cid=cid, model=model, optimizer=opt)

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        """Local training, then the upload: returns (Message, mean training loss)."""
        raise NotImplementedError

    def secure_upload(self, msg: Message, rnd: int, cid: int) -> Message:
        """With ``secure_agg``: client ``cid``'s upload of round ``rnd`` as a masked table
        (tinyproto.comm.secagg). Only algorithms whose spec has ``secure_sum`` implement it
        (their server needs only per-class sums); the config refuses it for the others."""
        raise NotImplementedError(f"{self.name} has no secure aggregation (secure_sum)")

    def receive(self, state: ClientState, download: Message) -> None:
        expect(download, "server", {}, device=self.device)

    @torch.no_grad()
    def predict(self, state: ClientState, x: torch.Tensor) -> torch.Tensor:
        """Default inference: the client's own head (argmax of logits)."""
        _, logits = state.model(x)
        return logits.argmax(1)

    @torch.no_grad()
    def evaluate(self, state: ClientState, data: ClientData) -> int:
        """Number of correct predictions on the client's test split (batched, eval mode)."""
        state.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=data.dataset.y.device)
        for x, y in data.batches("test"):
            correct += (self.predict(state, x) == y).sum()
        return int(correct)

    # -- server side ----------------------------------------------------------------------------
    def init_server(self) -> ServerState:
        return self.server_state()

    def server_round(self, uploads, rnd: int) -> dict[int, Message]:
        """One round on the server: ``uploads`` is {client id: Message} or a sequence of
        (client id, Message) pairs (as a network runtime delivers them); returns
        {client id: download} for the clients that uploaded.

        Raises MessageError (one line, naming the sender and the field) on an empty round, a
        bad or repeated sender id or a malformed upload, all checked before any server state
        changes; and on a NaN or inf the server itself produced, after restoring its state.
        """
        messages = collect_uploads(uploads, self.ctx.num_clients, rnd)
        checked = {}
        for cid, msg in messages.items():
            sender = comm.sender_name(cid)
            check_message(msg, sender, config=self.upload_config, metrics=self.upload_metrics)
            checked[cid] = self.check_upload(msg, sender)
        snapshot = copy.deepcopy(self.server)
        try:
            downloads = self.aggregate(checked, rnd)
            check_downloads(downloads, self.name, rnd)
        except BaseException:
            self.server = snapshot
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
        return self.server.state_dict()

    def load_server_state_dict(self, sd: dict) -> None:
        self.server.load_state_dict(sd)

    # -- what the engine reports ----------------------------------------------------------------
    def report(self, states: list[ClientState], data: list[ClientData]) -> dict:
        """Per-run compute and memory (tinyproto.algorithms.compute): training FLOPs per round, FLOPs per
        image, bytes of one client step, over the models the clients train."""
        return compute.summarise([self.client_cost(st, d) for st, d in zip(states, data)])

    def client_cost(self, state: ClientState, data: ClientData) -> dict:
        """One client's costs (dense models; sparse algorithms pass their kept counts)."""
        cfg = self.cfg
        return compute.trained_cost(state.trained(), data, cfg.batch_size, cfg.local_epochs)

    @classmethod
    def expected_cost(
        cls,
        *,
        num_classes: int,
        dim: int,
        num_clients: int,
        classes_present: int,
        cps_dim: int | None = None,
        model_params: int | None = None,
        kept_floats: int | None = None,
        sparse=None,
    ) -> int | float:
        """Floats per round, all clients, both directions (paper Table 2), in closed form.

        Every algorithm declares its own (``tinyproto.algorithms.expected_cost`` looks it up by
        name). ``classes_present`` is U = sum over clients of the number of classes each
        uploads; ``model_params`` the size of a shared model (FML / FedKD / FedAvg);
        ``cps_dim`` the prototype width when CPS is on; ``kept_floats`` what FedKD's SVD kept
        in a round (no closed form exists); ``sparse`` FedTiny's ``pruning.SparsePlan``.
        A subclass names the keywords it reads and takes the rest as ``**_``."""
        raise ValueError(f"expected_cost({cls.name!r}): no closed form declared")

    @staticmethod
    def _needs(name: str, model_params: int | None) -> int:
        if model_params is None:
            raise ValueError(f"expected_cost({name!r}) needs model_params")
        return model_params

    def expected_floats(self, classes_present: int) -> float | None:
        """Paper Table 2's floats per round (both directions) for this run, to check the
        measured ones against; ``classes_present`` is U, counted on the training splits."""
        cfg = self.cfg
        try:
            return type(self).expected_cost(
                num_classes=self.ctx.num_classes,
                dim=cfg.feature_dim,
                num_clients=cfg.num_clients,
                classes_present=classes_present,
                cps_dim=cfg.cps_dim,
                model_params=self.shared_params,
            )
        except ValueError:
            return None
