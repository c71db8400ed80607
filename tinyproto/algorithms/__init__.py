"""The algorithms: one module each, typed client and server state, steps over messages.

    base.py        the protocol (Algorithm, ClientState, ServerState, Context, ClientData)
    common.py      local training, class means, per-class messages, FedAvg, the shared model
    compute.py     FLOPs and step memory counted from the models (summary.json's report)
    svd.py         FedKD's SVD compression
    <name>.py      one algorithm each; fedtiny/ is a package (FedTiny has several roles)

Each class declares what it sends in closed form (``Algorithm.expected_cost``). May import:
comm, config, data, models, cps, aps, timing; never runtime or anything above it.
"""

from __future__ import annotations

from tinyproto.algorithms.base import Algorithm, ClientData, ClientState, Context, ServerState
from tinyproto.algorithms.fedavg import FedAvg
from tinyproto.algorithms.feddistill import FedDistill
from tinyproto.algorithms.fedkd import FedKD
from tinyproto.algorithms.fedproto import FedProto
from tinyproto.algorithms.fedtgp import FedTGP
from tinyproto.algorithms.fedtiny.algorithm import FedTiny
from tinyproto.algorithms.fml import FML
from tinyproto.algorithms.lg_fedavg import LGFedAvg
from tinyproto.algorithms.local import Local
from tinyproto.algorithms.tinyproto_fp import TinyProtoFP
from tinyproto.algorithms.tinyproto_ft import TinyProtoFT

REGISTRY: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (
        Local,
        FedProto,
        FedTGP,
        TinyProtoFP,
        TinyProtoFT,
        FedDistill,
        LGFedAvg,
        FML,
        FedKD,
        FedAvg,
        FedTiny,
    )
}


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered class of algorithm ``name``; ValueError naming the ones there are."""
    if name not in REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; have {', '.join(REGISTRY)}")
    return REGISTRY[name]


def expected_cost(algorithm: str, **kw) -> int | float:
    """Floats per round, all clients, both directions (paper Table 2), as ``algorithm``'s class
    declares it (``Algorithm.expected_cost``: the keywords and what they mean)."""
    return algorithm_class(algorithm).expected_cost(**kw)


def build_algorithm(ctx: Context) -> Algorithm:
    name = ctx.config.algorithm
    if name not in REGISTRY:
        raise ValueError(f"algorithm {name!r} is not implemented; have {', '.join(REGISTRY)}")
    return REGISTRY[name](ctx)


__all__ = [
    "Algorithm",
    "ClientData",
    "ClientState",
    "Context",
    "REGISTRY",
    "ServerState",
    "algorithm_class",
    "build_algorithm",
    "expected_cost",
]
