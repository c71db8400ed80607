"""Run configuration: one frozen, validated, hashable dataclass.

A profile (smoke | quick | paper) fills the fields left unset; explicit values override it.
Algorithm-dependent defaults (CPS dim, scaling constant mu) are resolved here too, so that a
``Config`` always says exactly what runs, and its hash (the run id) changes when anything does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields

ALGORITHMS = (
    "local",
    "fedproto",
    "fedtgp",
    "tinyproto-fp",
    "tinyproto-ft",
    "feddistill",
    "lg-fedavg",
    "fml",
    "fedkd",
)
PROTOTYPE_ALGORITHMS = ("fedproto", "fedtgp", "tinyproto-fp", "tinyproto-ft")
TINYPROTO_ALGORITHMS = ("tinyproto-fp", "tinyproto-ft")
DATASETS = ("fmnist", "cifar10", "cifar100", "tinyimagenet", "synthetic")
PROFILES = ("smoke", "quick", "paper")

# The paper's scaling constants (Sec. 5.1, METHOD.md "APS").
PAPER_MU = {
    ("tinyproto-fp", "cifar10"): 1.5e-4,
    ("tinyproto-fp", "cifar100"): 1.5e-3,
    ("tinyproto-fp", "tinyimagenet"): 1.5e-3,
    ("tinyproto-ft", "cifar10"): 1e-3,
    ("tinyproto-ft", "cifar100"): 1e-2,
    ("tinyproto-ft", "tinyimagenet"): 1e-2,
}
# For other datasets mu is chosen so that mu * (training samples per class) equals these
# targets (the paper's constants give ~0.68 for FP and ~4.5 for FT on all three datasets).
MU_TARGET = {"tinyproto-fp": 0.68, "tinyproto-ft": 4.5}

AUTO = "auto"

# Profile presets: the fields a profile decides when the user leaves them unset.
PROFILE_DEFAULTS: dict[str, dict] = {
    "smoke": dict(
        dataset="fmnist",
        family="cnn4",
        num_clients=4,
        alpha=0.5,
        rounds=3,
        feature_dim=40,
        max_samples=600,
        server_epochs=5,
        eval_every=1,
        checkpoint_every=0,
    ),
    "quick": dict(
        dataset="fmnist",
        family="cnn4",
        num_clients=20,
        alpha=0.1,
        rounds=15,
        feature_dim=500,
        max_samples=24000,
        server_epochs=100,
        eval_every=1,
        checkpoint_every=5,
    ),
    "paper": dict(
        dataset="cifar10",
        family="ht0",
        num_clients=20,
        alpha=0.1,
        rounds=300,
        feature_dim=500,
        max_samples=None,
        server_epochs=100,
        eval_every=1,
        checkpoint_every=10,
    ),
}


class ConfigError(ValueError):
    """Invalid user input; ``str(e)`` is one line naming the parameter, value and what is allowed."""


def _fail(name: str, value, allowed: str):
    raise ConfigError(f"invalid {name}={value!r}: {allowed}")


@dataclass(frozen=True)
class Config:
    """Everything that decides a run's numbers (plus a few operational knobs).

    Fields left at ``None`` (or ``"auto"`` for ``cps_dim`` and ``mu``) are filled by the profile
    and by the algorithm. ``cps_dim=None`` switches CPS off; ``mu=None`` switches APS off.
    """

    algorithm: str = "tinyproto-fp"
    dataset: str | None = None
    profile: str = "quick"
    family: str | None = None
    num_clients: int | None = None
    alpha: float | None = None
    rounds: int | None = None
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.01
    feature_dim: int | None = None
    cps_dim: int | None | str = AUTO
    mu: float | None | str = AUTO
    aps_divide: bool = False  # paper Eq. 10 divides the sum by |N_j|; the authors' code does not
    lam: float = 10.0
    seed: int = 0
    partition_seed: int = 1
    least_samples: int = 1  # Dirichlet redraw rule (METHOD.md: 1; HtFLlib's scripts use 40)
    mask_seed: int = 0
    train_fraction: float = 0.75
    max_samples: int | None = None  # subsample the dataset (0 = all samples)
    num_classes: int = 10  # only for dataset=synthetic; real datasets know their own
    server_epochs: int | None = None  # FedTGP / TinyProto-FT server training
    server_lr: float = 0.01
    margin_threshold: float = 100.0
    gamma: float = 1.0  # FedDistill logit-regulariser weight (paper Table 4)
    fml_alpha: float = 0.5
    fml_beta: float = 0.5
    fedkd_t_start: float = 0.95
    fedkd_t_end: float = 0.98
    shared_model: str | None = None  # FML/FedKD shared model; None = family's first model
    device: str = AUTO
    eval_every: int | None = None
    checkpoint_every: int | None = None
    data_dir: str | None = None
    save_prototypes: bool = True
    extra: tuple = field(default=())  # (key, value) pairs for extension algorithms; in the run id

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.profile not in PROFILES:
            _fail("profile", self.profile, f"one of {', '.join(PROFILES)}")
        for key, value in PROFILE_DEFAULTS[self.profile].items():
            if getattr(self, key) is None:
                set_(key, value)
        if self.max_samples == 0:  # explicit "use every sample"
            set_("max_samples", None)
        if self.cps_dim == AUTO:
            tiny = self.algorithm in TINYPROTO_ALGORITHMS
            set_("cps_dim", max(1, self.feature_dim // 10) if tiny else None)
        if self.mu == AUTO:
            set_("mu", AUTO if self.algorithm in TINYPROTO_ALGORITHMS else None)
        self.validate()

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            _fail("algorithm", self.algorithm, f"one of {', '.join(ALGORITHMS)}")
        if self.dataset not in DATASETS:
            _fail("dataset", self.dataset, f"one of {', '.join(DATASETS)}")
        from tinyproto.models import FAMILIES  # local import: models pulls in torchvision

        if self.family not in FAMILIES:
            _fail("family", self.family, f"one of {', '.join(sorted(FAMILIES))}")
        if self.shared_model is not None and self.shared_model not in FAMILIES:
            _fail("shared_model", self.shared_model, "an architecture name or none")
        if not isinstance(self.gamma, (int, float)) or self.gamma < 0:
            _fail("gamma", self.gamma, "a number >= 0")
        for name in ("fml_alpha", "fml_beta"):
            if not 0 <= getattr(self, name) <= 1:
                _fail(name, getattr(self, name), "a number in [0, 1]")
        positive_ints = ("num_clients", "rounds", "local_epochs", "batch_size", "feature_dim")
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                _fail(name, v, "an integer >= 1")
        for name in ("alpha", "lr", "server_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                _fail(name, v, "a number > 0")
        if not isinstance(self.lam, (int, float)) or self.lam < 0:
            _fail("lam", self.lam, "a number >= 0")
        if self.cps_dim is not None:
            if not isinstance(self.cps_dim, int) or isinstance(self.cps_dim, bool):
                _fail("cps_dim", self.cps_dim, "an integer in [1, feature_dim] or none")
            if not 1 <= self.cps_dim <= self.feature_dim:
                _fail("cps_dim", self.cps_dim, f"an integer in [1, feature_dim={self.feature_dim}]")
            if self.algorithm not in PROTOTYPE_ALGORITHMS:
                _fail("cps_dim", self.cps_dim, "CPS applies to prototype algorithms only")
        if self.mu is not None and self.mu != AUTO:
            if not isinstance(self.mu, (int, float)) or not self.mu > 0:
                _fail("mu", self.mu, "a number > 0, 'auto' or none")
        if self.mu is not None and self.algorithm not in PROTOTYPE_ALGORITHMS:
            _fail("mu", self.mu, "prototype scaling applies to prototype algorithms only")
        if not 0 < self.train_fraction < 1:
            _fail("train_fraction", self.train_fraction, "a number in (0, 1)")
        if self.max_samples is not None and (
            not isinstance(self.max_samples, int) or self.max_samples < self.num_clients * 2
        ):
            _fail("max_samples", self.max_samples, "an integer >= 2 * num_clients, or none")
        if not isinstance(self.least_samples, int) or self.least_samples < 1:
            _fail("least_samples", self.least_samples, "an integer >= 1")
        if self.num_classes < 2:
            _fail("num_classes", self.num_classes, "an integer >= 2")
        for name in ("eval_every",):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                _fail(name, v, "an integer >= 1")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            _fail("checkpoint_every", self.checkpoint_every, "an integer >= 0 (0 = never)")
        if not isinstance(self.server_epochs, int) or self.server_epochs < 0:
            _fail("server_epochs", self.server_epochs, "an integer >= 0")
        if not 0 < self.fedkd_t_start <= self.fedkd_t_end <= 1:
            _fail("fedkd_t_start", self.fedkd_t_start, "0 < fedkd_t_start <= fedkd_t_end <= 1")
        if self.device != AUTO and not (
            self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"
        ):
            _fail("device", self.device, "auto, cpu, cuda[:N] or mps")

    # -- identity -----------------------------------------------------------------------------
    # Fields that do not change the numbers a run produces: left out of the run id.
    OPERATIONAL = ("device", "checkpoint_every", "data_dir", "save_prototypes")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def run_id(self) -> str:
        payload = {k: v for k, v in self.to_dict().items() if k not in self.OPERATIONAL}
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.algorithm}-{self.dataset}-{digest}"

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def uses_cps(self) -> bool:
        return self.cps_dim is not None

    @property
    def uses_aps(self) -> bool:
        return self.mu is not None

    def resolve_mu(self, train_samples_per_class: float) -> float | None:
        """The scaling constant this run uses: explicit, the paper's, or by the 0.68 / 4.5 rule."""
        if self.mu is None:
            return None
        if self.mu != AUTO:
            return float(self.mu)
        if (self.algorithm, self.dataset) in PAPER_MU:
            return PAPER_MU[(self.algorithm, self.dataset)]
        target = MU_TARGET.get(self.algorithm, MU_TARGET["tinyproto-fp"])
        return float(f"{target / train_samples_per_class:.2g}")


def config_from_dict(d: dict) -> Config:
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    d = dict(d)
    if isinstance(d.get("extra"), list):
        d["extra"] = tuple(tuple(x) for x in d["extra"])
    return Config(**d)
