"""Per-algorithm options: one small frozen dataclass per group, owned by the algorithms using it.

    proto      PrototypeOptions   FedProto, FedTGP, TinyProto-FP/FT   lam (Eq. 5/6/11)
    tinyproto  TinyProtoOptions   TinyProto-FP/FT                      CPS (s, masks), APS (mu)
    fedtgp     FedTGPOptions      FedTGP, TinyProto-FT                 server training
    feddistill FedDistillOptions  FedDistill                           gamma
    fml        FMLOptions         FML                                  alpha, beta
    fedkd      FedKDOptions       FedKD                                SVD energy thresholds
    shared     SharedModelOptions FML, FedKD                           the shared model

Each field keeps its flat name (``GROUP_OF``) for the command line, ``config.json`` and the run
id, so ``--fml-alpha`` sets ``Config.fml.alpha`` and old run folders keep their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyproto.config.profiles import (
    PROTOTYPE_ALGORITHMS,
    SERVER_TRAINING_ALGORITHMS,
    SHARED_MODEL_ALGORITHMS,
    TINYPROTO_ALGORITHMS,
)


@dataclass(frozen=True)
class PrototypeOptions:
    lam: float = 10.0  # weight of the prototype regulariser (Eq. 5/6/11)
    # where local prototypes p_ij come from: "train" (features of the local training passes,
    # as HtFLlib and the authors' code), "eval" (a second, eval-mode pass after training);
    # None: the algorithm's default (PROTO_PASS_DEFAULT), resolved by Config
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


@dataclass(frozen=True)
class FedKDOptions:
    t_start: float = 0.95
    t_end: float = 0.98


@dataclass(frozen=True)
class SharedModelOptions:
    model: str | None = None  # None: the family's first architecture


# group name -> (options class, algorithms that read it)
GROUPS: dict[str, tuple[type, tuple[str, ...]]] = {
    "proto": (PrototypeOptions, PROTOTYPE_ALGORITHMS),
    "tinyproto": (TinyProtoOptions, TINYPROTO_ALGORITHMS),
    "fedtgp": (FedTGPOptions, SERVER_TRAINING_ALGORITHMS),
    "feddistill": (FedDistillOptions, ("feddistill",)),
    "fml": (FMLOptions, ("fml",)),
    "fedkd": (FedKDOptions, ("fedkd",)),
    "shared": (SharedModelOptions, SHARED_MODEL_ALGORITHMS),
}

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
    "fedkd_t_start": ("fedkd", "t_start"),
    "fedkd_t_end": ("fedkd", "t_end"),
    "shared_model": ("shared", "model"),
}
