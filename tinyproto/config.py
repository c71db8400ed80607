"""Run configuration: one frozen, validated, hashable dataclass.

A profile (smoke | quick | paper) fills the fields left unset; explicit values override it.
Algorithm-dependent defaults (CPS dim, scaling constant mu) are resolved here too, so that a
``Config`` always says exactly what runs, and its hash (the run id) changes when anything does.

Validation is declarative: :data:`PARAMS` holds one :class:`Param` per field (type, range,
choices, which algorithms use it, its help line and topic). The same table checks a ``Config``
(:meth:`Config.validate`) and generates the command line (``tinyproto.cli``), so a flag and its
check cannot drift apart. :func:`check_environment` adds what depends on the machine (device,
results folder, memory) and runs before anything is loaded or written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from tinyproto import paper

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
SERVER_TRAINING_ALGORITHMS = ("fedtgp", "tinyproto-ft")
SHARED_MODEL_ALGORITHMS = ("fml", "fedkd")
DATASETS = ("fmnist", "cifar10", "cifar100", "tinyimagenet", "synthetic")
PROFILES = ("smoke", "quick", "paper")

# Samples per dataset (train and test merged, as HtFLlib does) and image shape (C, H, W).
DATASET_SIZES = {"fmnist": 70_000, "cifar10": 60_000, "cifar100": 60_000, "tinyimagenet": 110_000}
DATASET_SHAPES = {
    "fmnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "tinyimagenet": (3, 64, 64),
    "synthetic": (1, 28, 28),
}
DATASET_CLASSES = {"fmnist": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200}
SYNTHETIC_DEFAULT_SAMPLES = 2000

# The paper's scaling constants (Sec. 5.1, METHOD.md "APS"), for the paper's full data sets.
PAPER_MU = paper.MU
# Elsewhere (another data set, or a subset of one: max_samples) mu is chosen so that
# mu * (training samples per class) equals these targets (the paper's constants give ~0.68 for
# FP and ~4.5 for FT on all three of its data sets).
MU_TARGET = {"tinyproto-fp": 0.68, "tinyproto-ft": 4.5}

AUTO = "auto"
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
COUNT_MAX = 2**31 - 1  # int32: what torch sizes and numpy index arrays hold safely
FLOAT_MAX = 1e30  # far beyond any sensible hyperparameter, far below float32 overflow

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
    raise ConfigError(f"invalid {name}={_show(value)}: {allowed}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------
# The constraint table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """What one Config field accepts, whom it concerns, and how the CLI shows it.

    ``kind``: "int", "float", "bool", "str" or "choice". ``low``/``high`` bound numbers
    (``low_open``: strictly above ``low``). ``none``/``auto``: the strings/values None and "auto"
    are allowed too (what they mean is in ``help``). ``applies``: the algorithms that read the
    field (None: all); a value other than the default on any other algorithm is refused, since
    it would change the run id and nothing else.
    """

    kind: str
    help: str
    group: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple | Callable[[], tuple] | None = None
    none: bool = False
    auto: bool = False
    applies: tuple[str, ...] | None = None
    cli: bool = True
    high_open: bool = False
    text: str | None = None  # overrides the generated "what is allowed" (before auto/none)

    def allowed_choices(self) -> tuple:
        return self.choices() if callable(self.choices) else tuple(self.choices or ())

    def describe(self) -> str:
        """What is allowed, as said in errors and in ``--help``."""
        if self.text is not None:
            text = self.text
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.allowed_choices()))
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        else:
            noun = "an integer" if self.kind == "int" else "a finite number"
            lo, hi = self.low, self.high
            if hi is not None and hi in (FLOAT_MAX, COUNT_MAX):
                hi = None  # technical ceilings: said only when a value exceeds them
            if lo is not None and hi is not None:
                left = "(" if self.low_open else "["
                right = ")" if self.high_open else "]"
                text = f"{noun} in {left}{_num(lo)}, {_num(hi)}{right}"
            elif lo is not None:
                text = f"{noun} {'>' if self.low_open else '>='} {_num(lo)}"
            else:
                text = noun
        extras = [x for x, ok in (("auto", self.auto), ("none", self.none)) if ok]
        return text + "".join(f" or {x}" for x in extras)


def _num(x) -> str:
    if isinstance(x, int) and x >= 2**20:
        return f"2**{x.bit_length()}-1" if (x + 1) & x == 0 else str(x)
    return f"{x:g}" if isinstance(x, float) else str(x)


def _families() -> tuple:
    from tinyproto.models import FAMILIES  # local import: models pulls in torchvision

    return tuple(sorted(FAMILIES))


def _archs() -> tuple:
    from tinyproto.models import ARCHS

    return tuple(ARCHS)


G_RUN = "experiment"
G_DATA = "data and partition"
G_MODEL = "models and local training"
G_TINY = "prototypes: regulariser, CPS and APS (TinyProto)"
G_SERVER = "server training (FedTGP, TinyProto-FT)"
G_BASE = "other baselines"
G_OPS = "operation (not part of the run id)"

PARAMS: dict[str, Param] = {
    "algorithm": Param("choice", "federated algorithm", G_RUN, choices=ALGORITHMS),
    "profile": Param(
        "choice",
        "preset filling every unset field (smoke: CI, quick: CPU, paper)",
        G_RUN,
        choices=PROFILES,
    ),
    "dataset": Param(
        "choice",
        "data set",
        G_DATA,
        choices=DATASETS,
    ),
    "seed": Param("int", "training seed (model init, shuffling)", G_RUN, low=0, high=SEED_MAX),
    "rounds": Param("int", "federated rounds", G_RUN, 1, COUNT_MAX),
    "num_clients": Param("int", "number of clients", G_DATA, 1, 100_000),
    "alpha": Param(
        "float",
        "Dirichlet label-skew concentration (smaller: more skewed)",
        G_DATA,
        low=0,
        high=FLOAT_MAX,
        low_open=True,
    ),
    "partition_seed": Param(
        "int",
        "seed of the Dirichlet partition and the 75/25 split (paper: 1)",
        G_DATA,
        low=0,
        high=SEED_MAX,
    ),
    "least_samples": Param(
        "int",
        "redraw the partition until every client holds at least this many samples",
        G_DATA,
        1,
        COUNT_MAX,
    ),
    "train_fraction": Param(
        "float",
        "share of each client's data used for training (rest: its test split)",
        G_DATA,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    "max_samples": Param(
        "int",
        "stratified subset of the data set (0 or none: all; synthetic: its size)",
        G_DATA,
        low=0,
        high=COUNT_MAX,
        none=True,
    ),
    "num_classes": Param(
        "int",
        "classes of the synthetic data set (real data sets know their own)",
        G_DATA,
        low=2,
        high=100_000,
    ),
    "data_dir": Param(
        "str",
        "folder holding the data set files (none: $TINYPROTO_DATA, else Debian's "
        "package / the cache); an explicit folder is never replaced by another source",
        G_OPS,
        none=True,
    ),
    "family": Param(
        "choice",
        "model family: ht0 (paper), cnn4 (CPU), or one architecture for all",
        G_MODEL,
        choices=_families,
    ),
    "feature_dim": Param("int", "prototype dimension d", G_MODEL, 1, 1_000_000),
    "local_epochs": Param("int", "local epochs per round", G_MODEL, 1, 10_000),
    "batch_size": Param("int", "local mini-batch size", G_MODEL, 1, 1_000_000),
    "lr": Param("float", "client SGD learning rate", G_MODEL, low=0, high=FLOAT_MAX, low_open=True),
    "lam": Param(
        "float",
        "weight of the prototype regulariser (Eq. 5/6/11)",
        G_TINY,
        low=0,
        high=FLOAT_MAX,
        applies=PROTOTYPE_ALGORITHMS,
    ),
    "cps_dim": Param(
        "int",
        "CPS dim s (auto: d/10; none: CPS off)",
        G_TINY,
        low=1,
        high=1_000_000,
        text="an integer in [1, feature_dim]",
        none=True,
        auto=True,
        applies=TINYPROTO_ALGORITHMS,
    ),
    "mu": Param(
        "float",
        "APS scaling constant (auto: paper value or mu*n_class = 0.68 FP / 4.5 FT; none: APS off)",
        G_TINY,
        low=0,
        high=FLOAT_MAX,
        low_open=True,
        none=True,
        auto=True,
        applies=TINYPROTO_ALGORITHMS,
    ),
    "aps_divide": Param(
        "bool",
        "divide the server's sum by the number of holders (paper Eq. 10; the authors' "
        "code does not)",
        G_TINY,
        applies=TINYPROTO_ALGORITHMS,
    ),
    "mask_seed": Param(
        "int",
        "seed of the CPS class masks",
        G_TINY,
        low=0,
        high=SEED_MAX,
        applies=TINYPROTO_ALGORITHMS,
    ),
    "server_epochs": Param(
        "int",
        "server epochs of the trainable generator per round",
        G_SERVER,
        0,
        1_000_000,
        applies=SERVER_TRAINING_ALGORITHMS,
    ),
    "server_lr": Param(
        "float",
        "server learning rate",
        G_SERVER,
        low=0,
        high=FLOAT_MAX,
        low_open=True,
        applies=SERVER_TRAINING_ALGORITHMS,
    ),
    "margin_threshold": Param(
        "float",
        "FedTGP's maximum adaptive margin",
        G_SERVER,
        low=0,
        high=FLOAT_MAX,
        applies=SERVER_TRAINING_ALGORITHMS,
    ),
    "gamma": Param(
        "float",
        "FedDistill logit-regulariser weight",
        G_BASE,
        low=0,
        high=FLOAT_MAX,
        applies=("feddistill",),
    ),
    "fml_alpha": Param(
        "float",
        "FML: weight of the KL term in the local model's loss",
        G_BASE,
        0,
        1,
        applies=("fml",),
    ),
    "fml_beta": Param(
        "float",
        "FML: weight of the KL term in the shared model's loss",
        G_BASE,
        0,
        1,
        applies=("fml",),
    ),
    "fedkd_t_start": Param(
        "float",
        "FedKD: SVD energy threshold in the first round",
        G_BASE,
        low=0,
        high=1,
        low_open=True,
        applies=("fedkd",),
    ),
    "fedkd_t_end": Param(
        "float",
        "FedKD: SVD energy threshold in the last round",
        G_BASE,
        low=0,
        high=1,
        low_open=True,
        applies=("fedkd",),
    ),
    "shared_model": Param(
        "choice",
        "FML/FedKD shared model (none: the family's first architecture)",
        G_BASE,
        choices=_archs,
        none=True,
        applies=SHARED_MODEL_ALGORITHMS,
    ),
    "device": Param("str", "where to train", G_OPS, text="auto, cpu, cuda, cuda:N or mps"),
    "eval_every": Param("int", "evaluate every N rounds (the last always)", G_RUN, 1, COUNT_MAX),
    "checkpoint_every": Param("int", "checkpoint every N rounds (0: never)", G_OPS, 0, COUNT_MAX),
    "save_prototypes": Param("bool", "write prototypes.npz (prototype methods)", G_OPS),
    "extra": Param("str", "(key, value) pairs for extension algorithms", G_RUN, cli=False),
}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _normalise(value):
    """numpy scalars -> Python ints/floats (so that the run id's JSON is stable)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if _is_int(value):
        return int(value)
    if _is_real(value) and not isinstance(value, float):
        return float(value)
    return value


def check_value(name: str, value, param: Param | None = None) -> None:
    """Type, finiteness, range and choices of one field; raises ConfigError naming it."""
    p = param or PARAMS[name]
    if value is None:
        if not p.none:
            _fail(name, value, p.describe())
        return
    if p.auto and value == AUTO:
        return
    if p.kind == "bool":
        if not isinstance(value, bool):
            _fail(name, value, "true or false (a bool, not a string or number)")
        return
    if p.kind in ("str", "choice") and not isinstance(value, str):
        _fail(name, value, p.describe())
    if p.kind == "choice":
        if value not in p.allowed_choices():
            _fail(name, value, p.describe())
        return
    if p.kind == "str":
        if "\x00" in value or (name != "device" and not value):
            _fail(name, value, "a non-empty string without NUL characters")
        return
    if p.kind == "int" and not _is_int(value):
        _fail(name, value, p.describe())
    if p.kind == "float":
        if not _is_real(value):
            _fail(name, value, p.describe())
        if not math.isfinite(value):
            _fail(name, value, p.describe() + " (NaN and inf are refused)")
    lo, hi = p.low, p.high
    if lo is not None and (value <= lo if p.low_open else value < lo):
        _fail(name, value, p.describe())
    if hi is not None and (value >= hi if p.high_open else value > hi):
        _fail(name, value, f"{p.describe()}, at most {_num(hi)}")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Everything that decides a run's numbers (plus a few operational knobs).

    Fields left at ``None`` (or ``"auto"`` for ``cps_dim`` and ``mu``) are filled by the profile
    and by the algorithm. ``cps_dim=None`` switches CPS off; ``mu=None`` switches APS off.
    Construction validates every field against :data:`PARAMS` and the cross-field rules, and
    raises :class:`ConfigError` with one line naming the parameter, the value and what is allowed.
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
        for f in fields(self):  # numpy scalars from grids behave like Python numbers
            set_(f.name, _normalise(getattr(self, f.name)))
        check_value("profile", self.profile)
        check_value("algorithm", self.algorithm)
        # Fields a profile fills: an explicit value for an algorithm that ignores it is refused.
        for key, value in PROFILE_DEFAULTS[self.profile].items():
            if value is not None and getattr(self, key) is None:
                set_(key, value)
        if self.max_samples == 0:  # explicit "use every sample"
            set_("max_samples", None)
        if isinstance(self.data_dir, os.PathLike):
            set_("data_dir", os.fspath(self.data_dir))
        if isinstance(self.extra, list):
            set_("extra", tuple(tuple(x) if isinstance(x, list) else x for x in self.extra))
        tiny = self.algorithm in TINYPROTO_ALGORITHMS
        if self.cps_dim == AUTO:
            fd = self.feature_dim
            set_("cps_dim", max(1, fd // 10) if tiny and _is_int(fd) else None)
        if self.mu == AUTO and not tiny:
            set_("mu", None)
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Every field against PARAMS, then the rules that tie fields together."""
        for f in fields(self):
            if f.name == "extra":
                continue
            check_value(f.name, getattr(self, f.name))
        self._check_extra()
        self._check_applies()
        self._check_consistency()

    def _check_extra(self) -> None:
        if not isinstance(self.extra, tuple):
            _fail("extra", self.extra, "a tuple of (key, value) pairs")
        keys = []
        for item in self.extra:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                _fail("extra", item, "(key, value) pairs with string keys")
            v = item[1]
            ok = v is None or isinstance(v, (str, bool)) or _is_int(v)
            ok = ok or (isinstance(v, float) and math.isfinite(v))
            if not ok:
                _fail(f"extra[{item[0]!r}]", v, "a string, bool, integer, finite float or none")
            keys.append(item[0])
        if len(set(keys)) != len(keys):
            _fail("extra", self.extra, "each key at most once")

    def _check_applies(self) -> None:
        """A non-default value of a field the algorithm never reads is a silent no-op: refuse."""
        defaults = {f.name: f.default for f in fields(self)}
        profile_filled = PROFILE_DEFAULTS[self.profile]
        for name, p in PARAMS.items():
            if p.applies is None or self.algorithm in p.applies:
                continue
            value = getattr(self, name)
            if name in ("cps_dim", "mu"):
                neutral = (None,)
            elif name in profile_filled:
                neutral = (profile_filled[name],)
            else:
                neutral = (defaults[name],)
            if value not in neutral:
                users = ", ".join(p.applies)
                _fail(name, value, f"only {users} use it; algorithm {self.algorithm} does not")
        if self.dataset != "synthetic" and self.num_classes != defaults["num_classes"]:
            _fail(
                "num_classes",
                self.num_classes,
                f"only dataset=synthetic takes it; {self.dataset} has its own classes",
            )

    def _check_consistency(self) -> None:
        if self.cps_dim is not None and self.cps_dim > self.feature_dim:
            _fail("cps_dim", self.cps_dim, f"an integer in [1, feature_dim={self.feature_dim}]")
        if self.aps_divide and self.mu is None:
            _fail("aps_divide", True, "divides APS's sum; APS is off (mu=None)")
        if self.fedkd_t_start > self.fedkd_t_end:
            _fail("fedkd_t_start", self.fedkd_t_start, "0 < fedkd_t_start <= fedkd_t_end <= 1")
        n = self.num_samples()
        if self.max_samples is not None and self.max_samples < 2 * self.num_clients:
            _fail(
                "max_samples",
                self.max_samples,
                f"an integer >= 2 * num_clients = {2 * self.num_clients}, or none",
            )
        if n < 2 * self.num_clients:
            _fail(
                "num_clients",
                self.num_clients,
                f"at most {n // 2} ({self.dataset} has {n} samples; each client needs 2)",
            )
        if self.least_samples * self.num_clients > n:
            _fail(
                "least_samples",
                self.least_samples,
                f"at most {n // self.num_clients} ({n} samples over {self.num_clients} clients)",
            )
        dev = self.device
        ok = dev in (AUTO, "cpu", "cuda", "mps") or (
            dev.startswith("cuda:") and dev[5:].isdigit() and len(dev) <= 10
        )
        if not ok:
            _fail("device", dev, "auto, cpu, cuda, cuda:N or mps")

    def num_samples(self) -> int:
        """Samples the run partitions (the whole data set, or max_samples of it)."""
        if self.dataset == "synthetic":
            return self.max_samples or SYNTHETIC_DEFAULT_SAMPLES
        full = DATASET_SIZES[self.dataset]
        return full if self.max_samples is None else min(self.max_samples, full)

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
        """The scaling constant this run uses: explicit, the paper's, or by the 0.68 / 4.5 rule.

        The paper's constants belong to its full data sets; on a subset (``max_samples``) or on
        another data set mu follows the product rule mu x (training samples per class) = 0.68
        (FP) or 4.5 (FT), so that the scaled target keeps the paper's magnitude.
        """
        if self.mu is None:
            return None
        if self.mu != AUTO:
            return float(self.mu)
        full_data = self.max_samples is None or self.max_samples >= DATASET_SIZES.get(
            self.dataset, math.inf
        )
        if (self.algorithm, self.dataset) in PAPER_MU and full_data:
            return PAPER_MU[(self.algorithm, self.dataset)]
        if not train_samples_per_class > 0:
            raise ConfigError(
                f"invalid mu='auto': the product rule needs training samples per class > 0, "
                f"got {train_samples_per_class}"
            )
        target = MU_TARGET.get(self.algorithm, MU_TARGET["tinyproto-fp"])
        return float(f"{target / train_samples_per_class:.2g}")


def config_from_dict(d: dict) -> Config:
    """A Config from its ``to_dict()`` (e.g. a run's config.json); ConfigError on bad content."""
    if not isinstance(d, dict):
        raise ConfigError(f"invalid config: expected a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(map(str, unknown))}")
    d = dict(d)
    if isinstance(d.get("extra"), list):
        d["extra"] = tuple(tuple(x) if isinstance(x, list) else x for x in d["extra"])
    return Config(**d)


# --------------------------------------------------------------------------------------------
# The machine: device, results folder, memory
# --------------------------------------------------------------------------------------------


def check_device(name: str):
    """The torch.device for ``name``; ConfigError if it is not available on this machine."""
    import torch

    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            _fail("device", name, "auto or cpu: no CUDA device is available on this machine")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            _fail("device", name, f"cuda:0..cuda:{n - 1} ({n} CUDA devices here)")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            _fail("device", name, "auto or cpu: MPS is not available on this machine")
    return torch.device(name)


def check_writable_folder(path: str | Path, name: str = "results") -> None:
    """``path`` is (or can become) a writable folder; nothing is created.

    The nearest existing ancestor must be a folder we may write into: a probe file is created
    and removed there (permission bits alone lie for root and on read-only mounts).
    """
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        _fail(name, str(path), "a folder (this path is a file)")
    probe_dir = path
    while not probe_dir.exists():
        parent = probe_dir.parent
        if parent == probe_dir:
            break
        probe_dir = parent
    if not probe_dir.is_dir():
        _fail(name, str(path), f"a folder path ({probe_dir} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".tinyproto-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        _fail(name, str(path), f"a writable folder ({probe_dir}: {e.strerror or e})")


def available_memory(device) -> int | None:
    """Bytes free for a run on ``device`` (None where it cannot be read)."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_memory(config: Config) -> dict:
    """Bytes a run keeps resident: every client's model (weights, gradients, optimizer state;
    the shared model too for FML/FedKD), the data set, and one batch of activations.

    Models are built on PyTorch's meta device: exact parameter counts, no memory used.
    """
    import torch

    from tinyproto.models import FAMILIES, client_model

    c, h, w = DATASET_SHAPES[config.dataset]
    k = DATASET_CLASSES.get(config.dataset, config.num_classes)
    archs = FAMILIES[config.family]
    per_arch = {}
    with torch.device("meta"):
        for i, arch in enumerate(archs[: config.num_clients]):
            m = client_model(
                config.family,
                i,
                num_classes=k,
                feature_dim=config.feature_dim,
                in_channels=c,
                image_size=h,
            )
            per_arch[arch] = sum(p.numel() for p in m.parameters())
    params = sum(per_arch[archs[i % len(archs)]] for i in range(config.num_clients))
    if config.algorithm in SHARED_MODEL_ALGORITHMS:
        shared = per_arch.get(config.shared_model or archs[0], max(per_arch.values()))
        params += shared * config.num_clients
    model_bytes = params * 4 * 3  # weights, gradients, SGD/aux state
    data_bytes = config.num_samples() * c * h * w
    activation_bytes = config.batch_size * max(1024, 64 * h * w) * 4 * 8
    return {
        "params": params,
        "bytes": model_bytes + data_bytes + activation_bytes,
        "model_bytes": model_bytes,
        "data_bytes": data_bytes,
    }


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_environment(config: Config, root: str | Path | None = None):
    """What this machine must offer the run; returns its torch.device. ConfigError/DataError.

    Runs before anything is loaded or written: device availability, the results folder, the
    explicit data source, and an estimate of the memory the run needs.
    """
    device = check_device(config.device)
    if root is not None:
        check_writable_folder(root, "results")
    from tinyproto import data as _data

    checker = getattr(_data, "check_data_source", None)
    if checker is not None:
        checker(config.dataset, config.data_dir)
    est = estimate_memory(config)
    free = available_memory(device)
    if free is not None and est["bytes"] > free:
        raise ConfigError(
            f"invalid feature_dim={config.feature_dim} with num_clients={config.num_clients}: "
            f"the run needs about {_gb(est['bytes'])} ({est['params']:,} model parameters, "
            f"{_gb(est['data_bytes'])} of data) but {device} has {_gb(free)} free; "
            "lower feature_dim, num_clients or max_samples"
        )
    return device
