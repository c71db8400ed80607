"""The algorithm table: everything the configuration knows about an algorithm, one entry each.

``BUILTIN`` holds one :class:`AlgorithmSpec` per algorithm, in the order every list of
algorithms has. Run ids hash configs, and what an entry says (its groups, its defaults) decides
what a config of that algorithm holds: changing a built-in entry renames its runs.

Everything the config layer used to spell out per algorithm is derived from the *live* table
(``BUILTIN`` plus what :func:`tinyproto.config.register_algorithm` added at run time), at each
use:

    ALGORITHMS                  algorithm_names()
    PROTOTYPE_ALGORITHMS        readers("proto")       the prototype regulariser (lam, proto_pass)
    TINYPROTO_ALGORITHMS        readers("tinyproto")   CPS and APS
    SERVER_TRAINING_ALGORITHMS  readers("fedtgp")      a trainable server (FedTGP's)
    SHARED_MODEL_ALGORITHMS     readers("shared")      a model every client shares
    FEDTINY_ALGORITHMS          readers("fedtiny")     FedTiny's pruning options
    MU_TARGET                   mu_targets()           APS's product rule, per algorithm
    ALGORITHM_DEFAULTS          algorithm_defaults()   options whose default is per algorithm
    GROUPS' readers, each Param's ``applies``          who reads an option group / trait

The uppercase names are computed on every attribute access (module ``__getattr__`` here, in
``profiles`` and in the package), so ``tinyproto.config.ALGORITHMS`` always says what is
registered now; ``from tinyproto.config import ALGORITHMS`` takes a snapshot, as any import of
a value does.

The class is named by a string ``"module:Class"`` that ``tinyproto.algorithms`` resolves with
importlib when the algorithm is first built: the config layer never imports an algorithm (an
algorithm registered at run time may give its class object instead). This module imports
nothing of tinyproto: the rest of the config layer builds on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

TRAITS = ("uses_train_local", "dense_models", "secure_sum")  # the boolean fields of AlgorithmSpec


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the configuration knows about one algorithm.

    ``groups``: the option groups it reads (``tinyproto.config.options``: proto, tinyproto,
    fedtgp, feddistill, fml, lg, fedkd, shared, fedtiny); a group it does not read must stay at
    its defaults, and the traits the old name lists stood for follow from it (``reads``).
    ``defaults``: options whose default is this algorithm's own, {flat name: value}, applied
    when the option is left unset (None); each must belong to a group in ``groups``.
    ``mu_target``: APS's product rule, mu x (training samples per class); required when the
    algorithm reads the ``tinyproto`` group. ``uses_train_local``: its clients train through
    ``algorithms.common.train_local`` (``precision`` and ``client_workers`` apply).
    ``dense_models``: its compute and memory follow from the dense models alone
    (``runtime.costs``); FedTiny's depend on the mask it chooses. ``secure_sum``: its server
    needs only the per-class sums of the uploads (and how many clients hold each class), so
    ``secure_agg`` (``tinyproto.comm.secagg``) can hide every single upload from it.
    """

    name: str
    cls: str | type  # "package.module:Class"; a class object only for run-time registration
    groups: tuple[str, ...] = ()
    defaults: tuple[tuple[str, object], ...] | Mapping[str, object] = ()
    mu_target: float | None = None
    uses_train_local: bool = True
    dense_models: bool = True
    secure_sum: bool = False

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if not (isinstance(self.name, str) and self.name and self.name == self.name.strip()):
            raise ValueError(f"AlgorithmSpec name must be a non-empty string, got {self.name!r}")
        if isinstance(self.cls, str):
            module, sep, attr = self.cls.partition(":")
            if not (sep and module and attr.isidentifier()):
                raise ValueError(
                    f"AlgorithmSpec {self.name!r}: cls must be 'package.module:Class', "
                    f"got {self.cls!r}"
                )
        elif not isinstance(self.cls, type):
            raise ValueError(f"AlgorithmSpec {self.name!r}: cls must be a string or a class")
        if isinstance(self.groups, str) or not all(isinstance(g, str) for g in self.groups):
            raise ValueError(f"AlgorithmSpec {self.name!r}: groups must be a tuple of names")
        set_("groups", tuple(self.groups))
        pairs = self.defaults.items() if isinstance(self.defaults, Mapping) else self.defaults
        set_("defaults", tuple((str(k), v) for k, v in pairs))
        for trait in TRAITS:
            if not isinstance(getattr(self, trait), bool):
                raise ValueError(f"AlgorithmSpec {self.name!r}: {trait} must be true or false")
        mu = self.mu_target
        if mu is not None and not (
            isinstance(mu, (int, float))
            and not isinstance(mu, bool)
            and math.isfinite(mu)
            and mu > 0
        ):
            raise ValueError(f"AlgorithmSpec {self.name!r}: mu_target must be a number > 0")

    def reads(self, group: str) -> bool:
        return group in self.groups


# The built-in algorithms, in the order of every list of them (the CLI's choices, the error
# messages, the tests' parametrisation): a new one goes at the end. Run ids do not depend on it.
# Local prototypes (proto_pass): FedProto / TinyProto-FP average the features of their training
# passes (HtFLlib, the authors' code); FedTGP / TinyProto-FT make an eval-mode pass after
# training (METHOD.md). Baselines follow HtFLlib by default: FML averages the memes uniformly
# (1/N), LG-FedAvg starts every client from client 0's head. mu_target: the paper's constants
# give mu x n_class ~0.68 (FP) and ~4.5 (FT) on all three of its data sets.
BUILTIN: tuple[AlgorithmSpec, ...] = (
    AlgorithmSpec("local", "tinyproto.algorithms.local:Local"),
    AlgorithmSpec(
        "fedproto",
        "tinyproto.algorithms.fedproto:FedProto",
        groups=("proto",),
        defaults={"proto_pass": "train"},
        secure_sum=True,
    ),
    AlgorithmSpec(
        "fedtgp",
        "tinyproto.algorithms.fedtgp:FedTGP",
        groups=("proto", "fedtgp"),
        defaults={"proto_pass": "eval"},
    ),
    AlgorithmSpec(
        "tinyproto-fp",
        "tinyproto.algorithms.tinyproto_fp:TinyProtoFP",
        groups=("proto", "tinyproto"),
        defaults={"proto_pass": "train"},
        mu_target=0.68,
        secure_sum=True,
    ),
    AlgorithmSpec(
        "tinyproto-ft",
        "tinyproto.algorithms.tinyproto_ft:TinyProtoFT",
        groups=("proto", "tinyproto", "fedtgp"),
        defaults={"proto_pass": "eval"},
        mu_target=4.5,
    ),
    AlgorithmSpec(
        "feddistill",
        "tinyproto.algorithms.feddistill:FedDistill",
        groups=("feddistill",),
        secure_sum=True,
    ),
    AlgorithmSpec(
        "lg-fedavg",
        "tinyproto.algorithms.lg_fedavg:LGFedAvg",
        groups=("lg",),
        defaults={"lg_head_init": "shared"},
    ),
    AlgorithmSpec(
        "fml",
        "tinyproto.algorithms.fml:FML",
        groups=("fml", "shared"),
        defaults={"fml_weighting": "uniform"},
    ),
    AlgorithmSpec("fedkd", "tinyproto.algorithms.fedkd:FedKD", groups=("fedkd", "shared")),
    AlgorithmSpec("fedavg", "tinyproto.algorithms.fedavg:FedAvg", groups=("shared",)),
    AlgorithmSpec(
        "fedtiny",
        "tinyproto.algorithms.fedtiny.algorithm:FedTiny",
        groups=("shared", "fedtiny"),
        uses_train_local=False,
        dense_models=False,
    ),
)

BUILTIN_NAMES = tuple(s.name for s in BUILTIN)
_TABLE: dict[str, AlgorithmSpec] = {s.name: s for s in BUILTIN}


# -- the live table and its views -----------------------------------------------------------------
def algorithm_names() -> tuple[str, ...]:
    """Every registered algorithm, built-in ones first, in table order."""
    return tuple(_TABLE)


def specs() -> tuple[AlgorithmSpec, ...]:
    return tuple(_TABLE.values())


def algorithm_spec(name) -> AlgorithmSpec | None:
    """The spec of algorithm ``name``, or None when no algorithm of that name is registered."""
    return _TABLE.get(name) if isinstance(name, str) else None


def reads(name, group: str) -> bool:
    """Whether algorithm ``name`` reads option group ``group`` (False for an unknown name)."""
    spec = algorithm_spec(name)
    return spec is not None and spec.reads(group)


def readers(group: str) -> tuple[str, ...]:
    """The algorithms that read option group ``group``, in table order."""
    return tuple(s.name for s in _TABLE.values() if s.reads(group))


def having(trait: str) -> tuple[str, ...]:
    """The algorithms whose boolean ``trait`` (one of TRAITS) is true, in table order."""
    if trait not in TRAITS:
        raise ValueError(f"unknown trait {trait!r}; have {', '.join(TRAITS)}")
    return tuple(s.name for s in _TABLE.values() if getattr(s, trait))


def mu_targets() -> dict[str, float]:
    return {s.name: s.mu_target for s in _TABLE.values() if s.mu_target is not None}


def algorithm_defaults() -> dict[str, dict[str, object]]:
    """{flat option name: {algorithm: its default}} over the registered algorithms."""
    out: dict[str, dict[str, object]] = {}
    for s in _TABLE.values():
        for key, value in s.defaults:
            out.setdefault(key, {})[s.name] = value
    return out


@dataclass(frozen=True)
class Users:
    """A ``Param``'s users, computed from the live table when asked: the readers of option
    group ``group``, or the algorithms having ``trait``."""

    group: str | None = None
    trait: str | None = None

    def __call__(self) -> tuple[str, ...]:
        return readers(self.group) if self.group is not None else having(self.trait)


# The names the config layer has always exported, each computed from the live table.
VIEWS = {
    "ALGORITHMS": algorithm_names,
    "PROTOTYPE_ALGORITHMS": lambda: readers("proto"),
    "TINYPROTO_ALGORITHMS": lambda: readers("tinyproto"),
    "SERVER_TRAINING_ALGORITHMS": lambda: readers("fedtgp"),
    "SHARED_MODEL_ALGORITHMS": lambda: readers("shared"),
    "FEDTINY_ALGORITHMS": lambda: readers("fedtiny"),
    "MU_TARGET": mu_targets,
    "ALGORITHM_DEFAULTS": algorithm_defaults,
    "PROTO_PASS_DEFAULT": lambda: algorithm_defaults().get("proto_pass", {}),
}


def view(name: str):
    """The current value of one of the VIEWS names; AttributeError for any other name."""
    if name in VIEWS:
        return VIEWS[name]()
    raise AttributeError(name)


def __getattr__(name: str):
    try:
        return view(name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# -- changing the table (checked by tinyproto.config.register_algorithm) ---------------------------
def add(spec: AlgorithmSpec) -> None:
    """Append ``spec`` to the live table, unchecked beyond its own fields and its name being
    new: use :func:`tinyproto.config.register_algorithm`, which checks it against the options."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"expected an AlgorithmSpec, got {type(spec).__name__}")
    if spec.name in _TABLE:
        raise ValueError(f"algorithm {spec.name!r} is already registered")
    _TABLE[spec.name] = spec


def remove(name: str) -> AlgorithmSpec:
    """Take an algorithm registered at run time out of the table; built-in ones stay."""
    if name in BUILTIN_NAMES:
        raise ValueError(f"algorithm {name!r} is built in; only run-time registrations go")
    if name not in _TABLE:
        raise ValueError(f"algorithm {name!r} is not registered")
    return _TABLE.pop(name)
