"""The algorithms: one module each, typed client and server state, steps over messages.

    base.py        the protocol (Algorithm, ClientState, ServerState, Context, ClientData)
    common.py      local training, class means, per-class messages, FedAvg, the shared model
    compute.py     FLOPs and step memory counted from the models (summary.json's report)
    svd.py         FedKD's SVD compression
    <name>.py      one algorithm each; fedtiny/ is a package (FedTiny has several roles)

An algorithm is one entry in the config's algorithm table (``tinyproto.config.registry``,
``AlgorithmSpec``), naming its class here by "module:Class"; ``REGISTRY`` resolves it, and
``register_algorithm`` adds one at run time (docs/adding-an-algorithm.md).

Each class declares what it sends in closed form (``Algorithm.expected_cost``). May import:
comm, config, data, models, cps, aps, timing; never runtime or anything above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

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
from tinyproto.config import AlgorithmSpec, algorithm_names, algorithm_spec, unregister_algorithm
from tinyproto.config import register_algorithm as config_register

# The algorithms are the entries of the config's algorithm table (tinyproto.config.registry):
# each names its class by "module:Class", resolved here (REGISTRY). The imports above only make
# the built-in classes importable from this package (tinyproto.algorithms.FedProto, ...).


def resolve(spec: AlgorithmSpec) -> type[Algorithm]:
    """The class ``spec.cls`` names (``"package.module:Class"``, imported here) or is; TypeError
    unless it is an Algorithm whose ``name`` is the spec's."""
    if isinstance(spec.cls, str):
        module, _, attr = spec.cls.partition(":")
        cls = getattr(importlib.import_module(module), attr, None)
        if cls is None:
            raise TypeError(f"algorithm {spec.name!r}: {module} has no {attr}")
    else:
        cls = spec.cls
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"algorithm {spec.name!r}: {spec.cls!r} is not an Algorithm subclass")
    if cls.name != spec.name:
        raise TypeError(
            f"algorithm {spec.name!r}: its class {cls.__qualname__} is named {cls.name!r}"
        )
    return cls


class _Registry(Mapping):
    """{name: Algorithm class} over the live algorithm table (tinyproto.config.registry):
    classes are resolved from their specs when first asked for."""

    def __getitem__(self, name: str) -> type[Algorithm]:
        spec = algorithm_spec(name)
        if spec is None:
            raise KeyError(name)
        return resolve(spec)

    def __contains__(self, name) -> bool:
        return algorithm_spec(name) is not None

    def __iter__(self):
        return iter(algorithm_names())

    def __len__(self) -> int:
        return len(algorithm_names())

    def __repr__(self) -> str:
        return f"REGISTRY({', '.join(self)})"


REGISTRY: Mapping[str, type[Algorithm]] = _Registry()


def register_algorithm(spec: AlgorithmSpec) -> type[Algorithm]:
    """Register an algorithm in one call: its spec goes into the config's table
    (``tinyproto.config.register_algorithm``: Config accepts it, every per-algorithm list shows
    it) and its class must resolve, else the registration is undone. Returns the class; undo
    with :func:`unregister_algorithm`."""
    config_register(spec)
    try:
        return resolve(spec)
    except BaseException:
        unregister_algorithm(spec.name)
        raise


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered class of algorithm ``name``; ValueError naming the ones there are."""
    if name not in REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; have {', '.join(REGISTRY)}")
    return REGISTRY[name]


def expected_cost(algorithm: str, **kw) -> int | float:
    """Floats per round, all clients, both directions (paper Table 2), as ``algorithm``'s class
    declares it. The keywords are ``Algorithm.expected_cost``'s, checked here once (a class
    names only those it reads and takes the rest as ``**_``): a misspelt one is a TypeError."""
    import inspect

    inspect.signature(Algorithm.expected_cost).bind(**kw)
    return algorithm_class(algorithm).expected_cost(**kw)


def build_algorithm(ctx: Context) -> Algorithm:
    name = ctx.config.algorithm
    if name not in REGISTRY:
        raise ValueError(f"algorithm {name!r} is not implemented; have {', '.join(REGISTRY)}")
    return REGISTRY[name](ctx)


__all__ = [
    "FML",
    "Algorithm",
    "AlgorithmSpec",
    "ClientData",
    "ClientState",
    "Context",
    "FedAvg",
    "FedDistill",
    "FedKD",
    "FedProto",
    "FedTGP",
    "FedTiny",
    "LGFedAvg",
    "Local",
    "REGISTRY",
    "ServerState",
    "TinyProtoFP",
    "TinyProtoFT",
    "algorithm_class",
    "build_algorithm",
    "expected_cost",
    "register_algorithm",
    "resolve",
    "unregister_algorithm",
]
