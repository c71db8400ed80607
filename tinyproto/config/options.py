"""Per-algorithm options: one small frozen dataclass per group, owned by the algorithms using it.

    proto      PrototypeOptions   FedProto, FedTGP, TinyProto-FP/FT   lam (Eq. 5/6/11)
    tinyproto  TinyProtoOptions   TinyProto-FP/FT                      CPS (s, masks), APS (mu)
    fedtgp     FedTGPOptions      FedTGP, TinyProto-FT                 server training
    feddistill FedDistillOptions  FedDistill                           gamma
    fml        FMLOptions         FML                                  alpha, beta, weighting
    lg         LGOptions          LG-FedAvg                            the heads at round 0
    fedkd      FedKDOptions       FedKD                                SVD energy thresholds
    shared     SharedModelOptions FML, FedKD, FedAvg, FedTiny          the shared model
    fedtiny    FedTinyOptions     FedTiny                              density, ABNS, pruning

Who reads a group is said by each algorithm's entry in ``registry`` (``AlgorithmSpec.groups``;
the table above is what the built-in ones say, ``GROUPS`` computes it from the live table).
Each field keeps its flat name (``GROUP_OF``) for the command line, ``config.json`` and the run
id, so ``--fml-alpha`` sets ``Config.fml.alpha`` and old run folders keep their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyproto.config import registry
from tinyproto.config.fedtiny import FIELDS as FEDTINY_FIELDS
from tinyproto.config.fedtiny import FedTinyOptions


@dataclass(frozen=True)
class PrototypeOptions:
    lam: float = 10.0  # weight of the prototype regulariser (Eq. 5/6/11)
    # where local prototypes p_ij come from: "train" (features of the local training passes,
    # as HtFLlib and the authors' code), "eval" (a second, eval-mode pass after training);
    # None: the algorithm's default (AlgorithmSpec.defaults), resolved by Config
    proto_pass: str | None = None


@dataclass(frozen=True)
class TinyProtoOptions:
    cps: bool = True  # class-wise prototype sparsification on
    cps_dim: int | None = None  # s; None: d // 10 (resolved by Config)
    aps: bool = True  # adaptive prototype scaling on
    mu: float | None = None  # None: the paper's value, or mu x n_class = 0.68 (FP) / 4.5 (FT)
    aps_divide: bool = False  # paper Eq. 10 divides the sum by |N_j|; the authors' code does not
    mask_seed: int = 0


@dataclass(frozen=True)
class FedTGPOptions:
    server_epochs: int | None = None  # None: the profile's
    server_lr: float = 0.01
    margin_threshold: float = 100.0


@dataclass(frozen=True)
class FedDistillOptions:
    gamma: float = 1.0  # logit-regulariser weight (paper Table 4)


@dataclass(frozen=True)
class FMLOptions:
    alpha: float = 0.5
    beta: float = 0.5
    # server average of the memes: "uniform" (1/N, HtFLlib) or "samples" (n_i / n);
    # None: the algorithm's default (AlgorithmSpec.defaults)
    weighting: str | None = None


@dataclass(frozen=True)
class LGOptions:
    # heads at round 0: "shared" (every client starts from client 0's head, HtFLlib) or
    # "own" (each its own initialisation); None: the algorithm's default
    head_init: str | None = None


@dataclass(frozen=True)
class FedKDOptions:
    t_start: float = 0.95
    t_end: float = 0.98


@dataclass(frozen=True)
class SharedModelOptions:
    model: str | None = None  # None: the family's first architecture


# group name -> options class (a Config field each); who reads a group: the algorithm table
# (tinyproto.config.registry, AlgorithmSpec.groups)
OPTION_GROUPS: dict[str, type] = {
    "proto": PrototypeOptions,
    "tinyproto": TinyProtoOptions,
    "fedtgp": FedTGPOptions,
    "feddistill": FedDistillOptions,
    "fml": FMLOptions,
    "lg": LGOptions,
    "fedkd": FedKDOptions,
    "shared": SharedModelOptions,
    "fedtiny": FedTinyOptions,
}


def groups() -> dict[str, tuple[type, tuple[str, ...]]]:
    """group name -> (options class, algorithms that read it), from the live algorithm table."""
    return {g: (cls, registry.readers(g)) for g, cls in OPTION_GROUPS.items()}


# flat name (CLI flag, config.json, run id) -> (group, field)
GROUP_OF: dict[str, tuple[str, str]] = {
    "lam": ("proto", "lam"),
    "proto_pass": ("proto", "proto_pass"),
    "cps_dim": ("tinyproto", "cps_dim"),
    "mu": ("tinyproto", "mu"),
    "aps_divide": ("tinyproto", "aps_divide"),
    "mask_seed": ("tinyproto", "mask_seed"),
    "server_epochs": ("fedtgp", "server_epochs"),
    "server_lr": ("fedtgp", "server_lr"),
    "margin_threshold": ("fedtgp", "margin_threshold"),
    "gamma": ("feddistill", "gamma"),
    "fml_alpha": ("fml", "alpha"),
    "fml_beta": ("fml", "beta"),
    "fml_weighting": ("fml", "weighting"),
    "lg_head_init": ("lg", "head_init"),
    "fedkd_t_start": ("fedkd", "t_start"),
    "fedkd_t_end": ("fedkd", "t_end"),
    "shared_model": ("shared", "model"),
    **{name: ("fedtiny", attr) for name, attr in FEDTINY_FIELDS.items()},
}


def __getattr__(name: str):
    if name == "GROUPS":  # computed at each access: registered algorithms are among the readers
        return groups()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
