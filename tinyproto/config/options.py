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

Each field keeps its flat name (``GROUP_OF``) for the command line, ``config.json`` and the run
id, so ``--fml-alpha`` sets ``Config.fml.alpha`` and old run folders keep their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyproto.config.profiles import (
    FEDTINY_ALGORITHMS,
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
    # server average of the memes: "uniform" (1/N, HtFLlib) or "samples" (n_i / n);
    # None: the algorithm's default (ALGORITHM_DEFAULTS)
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


@dataclass(frozen=True)
class FedTinyOptions:
    """FedTiny (../shared/FEDTINY.md); defaults are the authors' code's, density the issue's."""

    density: float = 0.01  # target share of the masked weights kept
    mask_init: str = "abns"  # abns | select (ABNS off) | magnitude (one-shot, no candidates)
    progressive: bool = True  # progressive pruning (prune/grow adjustments) on
    prune_mode: str = "block"  # block: one block per adjustment, output first | entire
    candidates: int = 5  # C, the candidate pool
    shots: int = 5  # server-side labelled images per class
    pretrain_epochs: int = 3  # server pre-training epochs on them
    abns_passes: int = 10  # forward passes over the validation set per candidate
    adjust_every: int = 10  # dT
    adjust_until: int = 100  # T_max
    adjust_rate: float = 0.1  # a, the cosine schedule's initial rate

    def unused(self) -> list[tuple[str, str]]:
        """(flat name, why) of each option set away from its default that this variant never
        reads: refused, as any option an algorithm does not read."""
        base = FedTinyOptions()
        why = []
        if self.mask_init == "magnitude":
            why += [(n, "mask_init=magnitude has no candidate pool")
                    for n in ("candidates",) if getattr(self, n) != getattr(base, n)]
        if self.mask_init != "abns" and self.abns_passes != base.abns_passes:
            why.append(("abns_passes", f"mask_init={self.mask_init} runs no ABNS"))
        if not self.progressive:
            why += [(n, "progressive pruning is off")
                    for n in ("prune_mode", "adjust_every", "adjust_until", "adjust_rate")
                    if getattr(self, n) != getattr(base, n)]
        return [(FLAT_NAMES.get(n, n), w) for n, w in why]


# group name -> (options class, algorithms that read it)
GROUPS: dict[str, tuple[type, tuple[str, ...]]] = {
    "proto": (PrototypeOptions, PROTOTYPE_ALGORITHMS),
    "tinyproto": (TinyProtoOptions, TINYPROTO_ALGORITHMS),
    "fedtgp": (FedTGPOptions, SERVER_TRAINING_ALGORITHMS),
    "feddistill": (FedDistillOptions, ("feddistill",)),
    "fml": (FMLOptions, ("fml",)),
    "lg": (LGOptions, ("lg-fedavg",)),
    "fedkd": (FedKDOptions, ("fedkd",)),
    "shared": (SharedModelOptions, SHARED_MODEL_ALGORITHMS),
    "fedtiny": (FedTinyOptions, FEDTINY_ALGORITHMS),
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
    "fml_weighting": ("fml", "weighting"),
    "lg_head_init": ("lg", "head_init"),
    "fedkd_t_start": ("fedkd", "t_start"),
    "fedkd_t_end": ("fedkd", "t_end"),
    "shared_model": ("shared", "model"),
    "density": ("fedtiny", "density"),
    "mask_init": ("fedtiny", "mask_init"),
    "progressive": ("fedtiny", "progressive"),
    "prune_mode": ("fedtiny", "prune_mode"),
    "fedtiny_candidates": ("fedtiny", "candidates"),
    "fedtiny_shots": ("fedtiny", "shots"),
    "pretrain_epochs": ("fedtiny", "pretrain_epochs"),
    "abns_passes": ("fedtiny", "abns_passes"),
    "adjust_every": ("fedtiny", "adjust_every"),
    "adjust_until": ("fedtiny", "adjust_until"),
    "adjust_rate": ("fedtiny", "adjust_rate"),
}
FLAT_NAMES = {"candidates": "fedtiny_candidates", "shots": "fedtiny_shots"}  # FedTiny's renames
