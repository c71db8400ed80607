"""Everything built before round 0, the same in every runtime: data on the device, the
partition, CPS masks, mu, the algorithm, and the clients' models and states.

``setup(cfg)`` builds all clients (the engine); ``setup(cfg, clients=())`` none (the Flower
server, a bench's server side) and ``add_client`` one (a Flower SuperNode, a client worker):
a client's initial weights depend on the run's seed and its id only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from tinyproto.algorithms import Algorithm, ClientData, ClientState, Context, build_algorithm
from tinyproto.config import Config
from tinyproto.cps import make_masks
from tinyproto.data import FederatedData, dataset_for, federate
from tinyproto.models import client_model, client_seed, count_params
from tinyproto.runtime.environment import check_device


@dataclass
class Setup:
    """Everything built before round 0: data on the device, masks, models, the algorithm.

    ``states[cid]`` is client cid's typed state; the engine hands it to the algorithm's client
    methods and never reads inside it. ``archs`` maps each client architecture to its size.
    """

    config: Config
    device: torch.device
    fed: FederatedData
    ctx: Context
    algo: Algorithm
    states: list[ClientState | None]  # None: a client this process does not run (Flower)
    data: list[ClientData]
    archs: dict[str, int]

    @functools.cached_property
    def share_masks(self) -> torch.Tensor:
        """Masks the per-round ``off_mask_share`` is measured against: the run's CPS masks; for
        runs without CPS the masks CPS would use (s = d // 10, mask_seed), the reference."""
        if self.ctx.masks is not None:
            return self.ctx.masks
        K, d = self.ctx.num_classes, self.ctx.feature_dim
        return make_masks(K, d, max(1, d // 10), seed=self.config.mask_seed).to(self.device)


def setup(config: Config, clients: Iterable[int] | None = None) -> Setup:
    """Load data onto the device, partition it, make masks, build models and the algorithm.

    ``clients``: whose models and states to build (default: all); a Flower ClientApp builds its
    own, the ServerApp none. The others' entries in ``states`` are None.
    """
    cfg = config
    device = check_device(cfg.device)  # ConfigError if this machine lacks it
    torch.set_flush_denormal(True)  # denormal floats slow CPU kernels by orders of magnitude
    ds = dataset_for(cfg).to(device).prepared()  # normalised once on the device where it fits
    fed = federate(ds, cfg)  # ConfigError if no Dirichlet draw meets least_samples
    K = fed.num_classes
    masks = (
        make_masks(K, cfg.feature_dim, cfg.cps_dim, seed=cfg.mask_seed) if cfg.uses_cps else None
    )
    if masks is not None:
        masks = masks.to(device)
    n_train = sum(int(c.train_idx.numel()) for c in fed.clients)
    mu = cfg.resolve_mu(n_train / K)
    ctx = Context(
        config=cfg,
        num_classes=K,
        feature_dim=cfg.feature_dim,
        device=device,
        masks=masks,
        mu=mu,
        in_channels=ds.channels,
        image_size=ds.image_size,
        num_clients=cfg.num_clients,
    )
    algo = build_algorithm(ctx)
    data = [ClientData(ds, split) for split in fed.clients]
    S = Setup(cfg, device, fed, ctx, algo, [None] * cfg.num_clients, data, {})
    for cid in range(cfg.num_clients) if clients is None else sorted(set(clients)):
        add_client(S, cid)
    return S


def add_client(S: Setup, cid: int) -> ClientState:
    """Build client ``cid``'s model and state into ``S.states[cid]``: its initial weights
    depend on the run's seed and its id only, whichever clients were built before."""
    cfg, ctx = S.config, S.ctx
    torch.manual_seed(client_seed(cfg.seed, cid))
    model = client_model(
        cfg.family,
        cid,
        num_classes=ctx.num_classes,
        feature_dim=cfg.feature_dim,
        in_channels=ctx.in_channels,
        image_size=ctx.image_size,
    ).to(S.device)
    S.archs.setdefault(model.arch, count_params(model))
    state = S.algo.init_client(cid, model)
    if cfg.compile != "off":  # in place: state_dict keys (checkpoints, messages) stay the same
        for module, _ in state.trained():
            module.compile(mode=cfg.compile)
    S.states[cid] = state
    return state
