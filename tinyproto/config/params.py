"""The constraint table: one ``Param`` per flat option name (type, range, choices, users, help).

The same table checks a Config (:func:`check_value`, used by ``Config.validate``) and generates
the command line (``tinyproto.cli``), so a flag and its check cannot drift apart.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace

from tinyproto.config import registry
from tinyproto.config.fedtiny import FEDTINY_FLAGS
from tinyproto.config.options import GROUP_OF
from tinyproto.config.profiles import (
    AUTO,
    COUNT_MAX,
    DATASETS,
    FLOAT_MAX,
    PROFILES,
    SEED_MAX,
    ConfigError,  # noqa: F401 (re-exported)
    _fail,
)


@dataclass(frozen=True)
class Param:
    """What one Config field accepts, whom it concerns, and how the CLI shows it.

    ``kind``: "int", "float", "bool", "str" or "choice". ``low``/``high`` bound numbers
    (``low_open``: strictly above ``low``). ``none``/``auto``: the strings/values None and "auto"
    are allowed too (what they mean is in ``help``). ``applies``: the algorithms that read the
    field (None: all); a value other than the default on any other algorithm is refused, since
    it would change the run id and nothing else. It comes from ``users``: a tuple, or a callable
    asked at each use (``registry.Users``: the readers of an option group, or the algorithms
    with a trait, from the live algorithm table). Every option of a group (``GROUP_OF``) gets
    its group's readers (below), so no Param names algorithms.
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
    users: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    cli: bool = True
    high_open: bool = False
    text: str | None = None  # overrides the generated "what is allowed" (before auto/none)
    parse: Callable | None = None  # kind "str": raises ValueError for a value it refuses

    @property
    def applies(self) -> tuple[str, ...] | None:
        """The algorithms that read this field now (None: all)."""
        return self.users() if callable(self.users) else self.users

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
G_TINYNET = "FedTiny: distributed pruning to a sparse model"
G_OPS = "operation (not part of the run id)"
_TRAINED = registry.Users(trait="uses_train_local")  # clients trained by train_local


def _vector_senders() -> tuple[str, ...]:
    """Algorithms whose messages are class-wise vectors (prototypes or logits)."""
    return tuple(
        n for n in registry.algorithm_names()
        if registry.reads(n, "proto") or registry.reads(n, "feddistill")
    )


def _payload_codec(value):
    from tinyproto.comm.codecs import parse  # local import: torch

    return parse(value)


_VECTORS = _vector_senders
_PREC, _COMPILE = ("fp32", "bf16"), ("off", "default", "reduce-overhead")

_PARAMS: dict[str, Param] = {
    "algorithm": Param("choice", "federated algorithm", G_RUN, choices=registry.algorithm_names),
    "profile": Param(
        "choice",
        "preset filling every unset field (smoke: CI; quick, long, hard: CPU; paper: GPU)",
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
        "seed of the Dirichlet partition and the 75/25 split (paper: 1; 'seed' in a profile: the run's seed)",
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
    "validation": Param(
        "float",
        "share of each client's training split held out as its evaluation split, for tuning: "
        "the run then trains on the rest and never evaluates on the test split (0: test split)",
        G_DATA,
        low=0,
        high=1,
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
    ),
    "proto_pass": Param(
        "choice",
        "where local prototypes come from: train (mean of the training passes' features, "
        "HtFLlib) or eval (a second pass in eval mode after training); default per algorithm",
        G_TINY,
        choices=("train", "eval"),
        none=True,
    ),
    "fml_weighting": Param(
        "choice",
        "FML: server average of the memes, uniform (1/N, HtFLlib) or samples (n_i/n)",
        G_BASE,
        choices=("uniform", "samples"),
        none=True,
    ),
    "lg_head_init": Param(
        "choice",
        "LG-FedAvg: heads at round 0, shared (all from client 0's head, HtFLlib) or own",
        G_BASE,
        choices=("shared", "own"),
        none=True,
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
    ),
    "aps_divide": Param(
        "bool",
        "divide the server's sum by the number of holders (paper Eq. 10; the authors' "
        "code does not)",
        G_TINY,
    ),
    "mask_seed": Param(
        "int",
        "seed of the CPS class masks",
        G_TINY,
        low=0,
        high=SEED_MAX,
    ),
    "server_epochs": Param(
        "int",
        "server epochs of the trainable generator per round",
        G_SERVER,
        0,
        1_000_000,
    ),
    "server_lr": Param(
        "float",
        "server learning rate",
        G_SERVER,
        low=0,
        high=FLOAT_MAX,
        low_open=True,
    ),
    "margin_threshold": Param(
        "float",
        "FedTGP's maximum adaptive margin",
        G_SERVER,
        low=0,
        high=FLOAT_MAX,
    ),
    "gamma": Param(
        "float",
        "FedDistill logit-regulariser weight",
        G_BASE,
        low=0,
        high=FLOAT_MAX,
    ),
    "fml_alpha": Param(
        "float",
        "FML: weight of the KL term in the local model's loss",
        G_BASE,
        0,
        1,
    ),
    "fml_beta": Param(
        "float",
        "FML: weight of the KL term in the shared model's loss",
        G_BASE,
        0,
        1,
    ),
    "fedkd_t_start": Param(
        "float",
        "FedKD: SVD energy threshold in the first round",
        G_BASE,
        low=0,
        high=1,
        low_open=True,
    ),
    "fedkd_t_end": Param(
        "float",
        "FedKD: SVD energy threshold in the last round",
        G_BASE,
        low=0,
        high=1,
        low_open=True,
    ),
    "shared_model": Param(
        "choice",
        "FML/FedKD/FedAvg/FedTiny shared model (none: the family's first architecture)",
        G_BASE,
        choices=_archs,
        none=True,
    ),
    **{
        name: Param(kind, help_, G_TINYNET, **bounds)
        for name, (kind, help_, bounds) in FEDTINY_FLAGS.items()
    },
    "device": Param("str", "where to train", G_OPS, text="auto, cpu, cuda, cuda:N or mps"),
    "eval_every": Param("int", "evaluate every N rounds (the last always)", G_RUN, 1, COUNT_MAX),
    "join_ratio": Param("float", "share of clients sampled per round", G_RUN, 0, 1, low_open=True),
    "drop_rate": Param("float", "chance a sampled upload is lost", G_RUN, 0, 1, high_open=True),
    "precision": Param("choice", "bf16: autocast training", G_RUN, choices=_PREC, users=_TRAINED),
    "dp_clip": Param(
        "float",
        "local DP: clip each uploaded row to this L2 norm (none: off)",
        G_RUN,
        0,
        FLOAT_MAX,
        low_open=True,
        none=True,
        users=_VECTORS,
    ),
    "dp_noise": Param(
        "float", "local DP: Gaussian noise std / dp_clip", G_RUN, 0, FLOAT_MAX, users=_VECTORS
    ),
    "secure_agg": Param(
        "bool",
        "pairwise-masked uploads: the server learns only per-class sums (docs/privacy.md)",
        G_RUN,
        users=registry.Users(trait="secure_sum"),
    ),
    "client_workers": Param(
        "int",
        "client processes (CPU; auto: one per torch thread when the run is long enough)",
        G_OPS,
        1,
        64,
        auto=True,
        users=_TRAINED,
    ),
    "compile": Param("choice", "torch.compile client models", G_RUN, choices=_COMPILE),
    "payload": Param(
        "str",
        "codec of the prototypes/logits on the wire, both ways (docs/runs.md#payload-codecs)",
        G_RUN,
        text="fp32, fp16, int8, int4 or topk:K (K >= 1)",
        parse=_payload_codec,
        users=_VECTORS,
    ),
    "checkpoint_every": Param("int", "checkpoint every N rounds (0: never)", G_OPS, 0, COUNT_MAX),
    "save_prototypes": Param("bool", "write prototypes.npz (prototype methods)", G_OPS),
    "extra": Param("str", "(key, value) pairs for extension algorithms", G_RUN, cli=False),
}
# An option of a group concerns the algorithms that read the group (AlgorithmSpec.groups).
PARAMS: dict[str, Param] = {
    name: replace(p, users=registry.Users(group=GROUP_OF[name][0])) if name in GROUP_OF else p
    for name, p in _PARAMS.items()
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
        if p.parse is not None:
            try:
                p.parse(value)
            except ValueError:
                _fail(name, value, p.describe())
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
        _fail(name, value, p.describe() if p.high_open else f"{p.describe()}, at most {_num(hi)}")
