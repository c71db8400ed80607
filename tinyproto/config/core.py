"""``Config``: the frozen, validated, hashable description of one run.

Run-wide fields sit at the top level; each algorithm's knobs sit in its own option group
(``cfg.tinyproto.cps_dim``, ``cfg.fml.alpha``; see ``tinyproto.config.options``). Keyword
construction also takes the flat names the command line and ``config.json`` use
(``Config(algorithm="fml", fml_alpha=0.3)``), and ``to_dict()`` / the run id use them too, so
run ids are stable across this layout. A profile (smoke | quick | paper) fills the fields left
unset; CPS's s defaults to d // 10 and is resolved at construction, so a Config says exactly what
runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field

from tinyproto.config import registry
from tinyproto.config.options import (
    GROUP_OF,
    OPTION_GROUPS,
    FedDistillOptions,
    FedKDOptions,
    FedTGPOptions,
    FedTinyOptions,
    FMLOptions,
    LGOptions,
    PrototypeOptions,
    SharedModelOptions,
    TinyProtoOptions,
)
from tinyproto.config.params import PARAMS, _fail, _is_int, _normalise, check_value
from tinyproto.config.profiles import (
    AUTO,
    DATASET_SIZES,
    FOLLOW_SEED,
    PROFILE_DEFAULTS,
    SYNTHETIC_DEFAULT_SAMPLES,
    ConfigError,
    resolve_mu,
)
from tinyproto.config.registry import AlgorithmSpec, readers, reads

# Run-wide fields and their defaults (None: the profile decides).
TOP_LEVEL = dict(
    algorithm="tinyproto-fp",
    dataset=None,
    profile="quick",
    family=None,
    num_clients=None,
    alpha=None,
    rounds=None,
    local_epochs=None,
    batch_size=32,
    lr=None,  # the profile's (0.01, as the paper; hard: 0.05)
    feature_dim=None,
    seed=0,
    partition_seed=None,  # the profile's (1, as the paper; hard: the run's seed)
    least_samples=1,  # Dirichlet redraw rule (METHOD.md: 1; HtFLlib's scripts use 40)
    train_fraction=0.75,
    validation=0.0,  # share of the training split held out as the evaluation split (tuning)
    max_samples=None,  # stratified subset (0 = all samples)
    num_classes=10,  # only for dataset=synthetic; real datasets know their own
    device=AUTO,
    eval_every=None,
    checkpoint_every=None,
    data_dir=None,
    save_prototypes=True,
    join_ratio=1.0,  # share of the clients sampled each round (HtFLlib's join_ratio)
    drop_rate=0.0,  # probability that a sampled client's upload is lost (client_drop_rate)
    precision="fp32",  # "bf16": local training's forward passes under bfloat16 autocast
    payload="fp32",  # codec of the prototypes / logits on the wire (tinyproto.comm.codecs)
    dp_clip=None,  # L2 clip per uploaded row (local DP, tinyproto.comm.dp); None: off
    dp_noise=0.0,  # Gaussian noise multiplier: std = dp_noise x dp_clip
    secure_agg=False,  # pairwise-masked uploads: the server sees only sums (comm.secagg)
    compile="off",  # torch.compile mode for the client models ("default", "reduce-overhead")
    client_workers=AUTO,  # processes training clients side by side (tinyproto.runtime.clients)
    extra=(),  # (key, value) pairs for extension algorithms; in the run id
)
SWITCHES = ("cps", "aps")  # flat names of TinyProto's two on/off switches

# Fields added after run folders existed, with the values that reproduce what runs did before
# them: at such a value a field is left out of the run id (and filled in when an older
# config.json lacks it), so adding an option never renames or orphans a finished run.
# The first value is what older runs did (filled in for the algorithms that read the field);
# every value listed is left out of the id (list the default too: the value algorithms that
# never read the field carry). Extensions add their fields here.
ADDED_FIELDS: dict[str, tuple] = {
    "proto_pass": ("eval", None),  # before it, every prototype method made an eval-mode pass
    "fml_weighting": ("samples", None),  # before it, FML averaged its memes by n_i
    "lg_head_init": ("own", None),  # before it, LG-FedAvg clients started from their own heads
    "join_ratio": (1.0,),  # before partial participation, every client took part every round
    "drop_rate": (0.0,),
    "validation": (0.0,),  # before it, every run evaluated on its clients' test splits
    "precision": ("fp32",),  # before it, everything ran in float32
    "payload": ("fp32",),  # before it, every message went as float32
    "dp_clip": (None,),  # before it, no upload was clipped or noised
    "dp_noise": (0.0,),
    "secure_agg": (False,),  # before it, the server saw every upload
    "compile": ("off",),  # before it, every model ran eagerly
    # FedTiny's group: no run predates it; at their defaults these stay out of every run id
    **{n: (getattr(FedTinyOptions(), a),) for n, (g, a) in GROUP_OF.items() if g == "fedtiny"},
}


@dataclass(frozen=True, init=False)
class Config:
    """Everything that decides a run's numbers (plus a few operational knobs).

    Construction validates every field against :data:`tinyproto.config.PARAMS` and the rules
    tying fields together, and raises :class:`ConfigError` with one line naming the parameter,
    the value and what is allowed. An option group an algorithm does not read must stay at its
    defaults (a change there would alter the run id and nothing else).
    """

    algorithm: str
    dataset: str
    profile: str
    family: str
    num_clients: int
    alpha: float
    rounds: int
    local_epochs: int
    batch_size: int
    lr: float
    feature_dim: int
    seed: int
    partition_seed: int
    least_samples: int
    train_fraction: float
    validation: float
    max_samples: int | None
    num_classes: int
    device: str
    eval_every: int
    checkpoint_every: int
    data_dir: str | None
    save_prototypes: bool
    join_ratio: float
    drop_rate: float
    precision: str
    payload: str
    dp_clip: float | None
    dp_noise: float
    secure_agg: bool
    compile: str
    client_workers: int | str
    extra: tuple
    proto: PrototypeOptions = field(default_factory=PrototypeOptions)
    tinyproto: TinyProtoOptions = field(default_factory=TinyProtoOptions)
    fedtgp: FedTGPOptions = field(default_factory=FedTGPOptions)
    feddistill: FedDistillOptions = field(default_factory=FedDistillOptions)
    fml: FMLOptions = field(default_factory=FMLOptions)
    lg: LGOptions = field(default_factory=LGOptions)
    fedkd: FedKDOptions = field(default_factory=FedKDOptions)
    shared: SharedModelOptions = field(default_factory=SharedModelOptions)
    fedtiny: FedTinyOptions = field(default_factory=FedTinyOptions)

    def __init__(self, algorithm: str = "tinyproto-fp", **kwargs):
        """Top-level fields, option groups (``fml=FMLOptions(...)``) or flat option names."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        top = dict(TOP_LEVEL, algorithm=algorithm)
        groups = {g: None for g in OPTION_GROUPS}
        flat = {}
        for key, value in kwargs.items():
            if key in top:
                top[key] = value
            elif key in groups:
                cls = OPTION_GROUPS[key]
                if not isinstance(value, cls):
                    _fail(key, value, f"a tinyproto.config.{cls.__name__}")
                groups[key] = value
            elif key in GROUP_OF or key in SWITCHES:
                flat[key] = value
            else:
                raise ConfigError(f"unknown config field {key!r}; see tinyproto run --help")
        for key, value in top.items():
            set_(key, _normalise(value))
        check_value("profile", self.profile)
        check_value("algorithm", self.algorithm)
        values = {g: dataclasses.asdict(groups[g] or cls()) for g, cls in OPTION_GROUPS.items()}
        self._apply_flat(values, flat)
        for key, value in PROFILE_DEFAULTS[self.profile].items():
            where = values[GROUP_OF[key][0]] if key in GROUP_OF else None
            if where is not None and where[GROUP_OF[key][1]] is None:
                where[GROUP_OF[key][1]] = value
            elif where is None and getattr(self, key) is None and value is not None:
                set_(key, self.seed if value == FOLLOW_SEED else value)
        if self.max_samples == 0:  # explicit "use every sample"
            set_("max_samples", None)
        if isinstance(self.data_dir, os.PathLike):
            set_("data_dir", os.fspath(self.data_dir))
        if isinstance(self.extra, list):
            set_("extra", tuple(tuple(x) if isinstance(x, list) else x for x in self.extra))
        tiny = values["tinyproto"]
        if reads(self.algorithm, "tinyproto") and tiny["cps"] and tiny["cps_dim"] is None:
            if _is_int(self.feature_dim):
                tiny["cps_dim"] = max(1, self.feature_dim // 10)
        for name, value in registry.algorithm_spec(self.algorithm).defaults:
            group, attr = GROUP_OF[name]
            if values[group][attr] is None:
                values[group][attr] = value
        for g, cls in OPTION_GROUPS.items():
            set_(g, cls(**{k: _normalise(v) for k, v in values[g].items()}))
        self.validate()

    def _apply_flat(self, values: dict, flat: dict) -> None:
        """Flat names into their groups; legacy spellings of the TinyProto switches accepted.

        ``cps_dim=None`` / ``mu=None`` switch CPS / APS off, ``"auto"`` keeps the default
        (config.json and the CLI write these); for other algorithms they mean "not used".
        """
        tiny_algo = reads(self.algorithm, "tinyproto")
        tiny = values["tinyproto"]
        for key in SWITCHES:
            if key in flat:
                tiny[key] = flat.pop(key)
        for key, switch in (("cps_dim", "cps"), ("mu", "aps")):
            if key not in flat:
                continue
            value = flat.pop(key)
            if value is None or value == AUTO:
                if tiny_algo and value is None:
                    tiny[switch] = False
                continue
            if tiny[switch] is False:
                _fail(key, value, f"{switch} is off: give one of them")
            tiny[key] = value
        for key, value in flat.items():
            group, name = GROUP_OF[key]
            values[group][name] = value

    # -- the flat view: CLI flags, config.json, run id ----------------------------------------
    def flat(self, name: str):
        """A field by its flat name (``fml_alpha``, ``cps_dim``...), as config.json holds it."""
        if name in GROUP_OF:
            group, attr = GROUP_OF[name]
            value = getattr(getattr(self, group), attr)
            tiny = reads(self.algorithm, "tinyproto")
            if name == "cps_dim":
                return value if tiny and self.tinyproto.cps else None
            if name == "mu":
                return (AUTO if value is None else value) if tiny and self.tinyproto.aps else None
            return value
        return getattr(self, name)

    def __getattr__(self, name: str):
        """Read-only flat names, as in config.json: ``cfg.fml_alpha`` is ``cfg.fml.alpha``;
        ``cfg.cps_dim`` is s when CPS is on for this run, else None; ``cfg.mu`` is APS's
        constant, 'auto' (the rule) or None (APS off)."""
        if name in GROUP_OF:
            return self.flat(name)
        raise AttributeError(f"'Config' object has no attribute {name!r}")

    @property
    def uses_cps(self) -> bool:
        return self.cps_dim is not None

    @property
    def uses_aps(self) -> bool:
        return self.mu is not None

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Every field against PARAMS, then the rules that tie fields together."""
        for name in PARAMS:
            if name != "extra":
                check_value(name, self.flat(name))
        tiny = self.tinyproto
        for key in SWITCHES:
            if not isinstance(getattr(tiny, key), bool):
                _fail(key, getattr(tiny, key), "true or false")
        for key in ("cps_dim", "mu"):  # also when switched off: no garbage kept in a group
            if getattr(tiny, key) is not None:
                check_value(key, getattr(tiny, key))
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
        """An option group the algorithm never reads must stay at its defaults: refuse."""
        profile_filled = PROFILE_DEFAULTS[self.profile]
        for group, cls in OPTION_GROUPS.items():
            if reads(self.algorithm, group):
                continue
            users = readers(group)
            neutral = dataclasses.asdict(cls())
            for key, (g, attr) in GROUP_OF.items():
                if g == group and key in profile_filled:
                    neutral[attr] = profile_filled[key]
            for attr, value in dataclasses.asdict(getattr(self, group)).items():
                if value != neutral[attr]:
                    name = next((k for k, v in GROUP_OF.items() if v == (group, attr)), attr)
                    _fail(
                        name,
                        value,
                        f"only {', '.join(users)} use it; algorithm {self.algorithm} does not",
                    )
        for name, default in TOP_LEVEL.items():  # run-wide fields only some algorithms read
            users = PARAMS[name].applies if name in PARAMS else None
            if users is not None and self.algorithm not in users and getattr(self, name) != default:
                _fail(
                    name,
                    getattr(self, name),
                    f"only {', '.join(users)} read it; algorithm {self.algorithm} does not "
                    f"(leave it at {default!r})",
                )
        if self.dataset != "synthetic" and self.num_classes != TOP_LEVEL["num_classes"]:
            _fail(
                "num_classes",
                self.num_classes,
                f"only dataset=synthetic takes it; {self.dataset} has its own classes",
            )

    def _check_consistency(self) -> None:
        if self.dp_noise and self.dp_clip is None:
            _fail("dp_noise", self.dp_noise, "needs dp_clip (the noise is dp_noise x dp_clip)")
        if self.secure_agg and self.payload != "fp32":
            _fail(
                "payload",
                self.payload,
                "fp32 with secure_agg (masked uploads are ring elements: a lossy codec would "
                "break the masks' cancellation)",
            )
        if self.secure_agg and self.drop_rate > 0:
            _fail(
                "drop_rate",
                self.drop_rate,
                "0 with secure_agg (a lost upload leaves pair masks in the sum; dropout "
                "recovery is not implemented)",
            )
        if self.cps_dim is not None and self.cps_dim > self.feature_dim:
            _fail("cps_dim", self.cps_dim, f"an integer in [1, feature_dim={self.feature_dim}]")
        if self.tinyproto.aps_divide and self.mu is None:
            _fail("aps_divide", True, "divides APS's sum; APS is off (mu=None)")
        if self.fedkd.t_start > self.fedkd.t_end:
            _fail("fedkd_t_start", self.fedkd.t_start, "0 < fedkd_t_start <= fedkd_t_end <= 1")
        if reads(self.algorithm, "fedtiny"):
            for name, value, why in self.fedtiny.problems(self.dataset, self.max_samples):
                _fail(name, value, why)
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
    OPERATIONAL = ("device", "checkpoint_every", "data_dir", "save_prototypes", "client_workers")

    def to_dict(self) -> dict:
        """Flat: every top-level field and every option by its flat name (config.json)."""
        d = {k: getattr(self, k) for k in TOP_LEVEL}
        d.update({k: self.flat(k) for k in GROUP_OF})
        return d

    def run_id(self) -> str:
        payload = {
            k: v
            for k, v in self.to_dict().items()
            if k not in self.OPERATIONAL and not (k in ADDED_FIELDS and v in ADDED_FIELDS[k])
        }
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.algorithm}-{self.dataset}-{digest}"

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` (top-level, group or flat names)."""
        base = _every_sample(self.to_dict())
        for group in set(changes) & set(OPTION_GROUPS):  # a whole group replaces its flat fields
            base = {n: v for n, v in base.items() if GROUP_OF.get(n, ("",))[0] != group}
        for switch, key in (("cps", "cps_dim"), ("aps", "mu")):
            if switch in changes:
                base.pop(key, None)
        return Config(**{**base, **changes})

    def resolve_mu(self, train_samples_per_class: float) -> float | None:
        """The APS scaling constant this run uses (:func:`tinyproto.config.profiles.resolve_mu`)."""
        return resolve_mu(self, train_samples_per_class)


def _every_sample(d: dict) -> dict:
    """``d`` (a ``to_dict()``) with max_samples written as null, i.e. every sample, made 0:
    passed back to Config, None would mean the profile's preset."""
    preset = PROFILE_DEFAULTS.get(d.get("profile", TOP_LEVEL["profile"]), {}).get("max_samples")
    if "max_samples" in d and d["max_samples"] is None and preset is not None:
        d["max_samples"] = 0
    return d


def config_from_dict(d: dict) -> Config:
    """A Config from its ``to_dict()`` (e.g. a run's config.json); ConfigError on bad content."""
    if not isinstance(d, dict):
        raise ConfigError(f"invalid config: expected a JSON object, got {type(d).__name__}")
    known = set(TOP_LEVEL) | set(GROUP_OF) | set(SWITCHES)
    unknown = sorted(set(map(str, d)) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    d = _every_sample(dict(d))
    for key, (legacy, *_) in ADDED_FIELDS.items():  # written before the field existed
        if key not in d and key in GROUP_OF:
            if reads(d.get("algorithm", TOP_LEVEL["algorithm"]), GROUP_OF[key][0]):
                d[key] = legacy
    if isinstance(d.get("extra"), list):
        d["extra"] = tuple(tuple(x) if isinstance(x, list) else x for x in d["extra"])
    return Config(**d)


# -- the algorithm table ------------------------------------------------------------------------
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm to the live table (``tinyproto.config.registry``): from then on Config
    accepts it, every per-algorithm list includes it, and ``tinyproto.algorithms`` builds it
    from ``spec.cls``. Checked against the options first; ConfigError (one line) if wrong.

    ``tinyproto.algorithms.register_algorithm`` also checks that the class resolves; undo with
    :func:`unregister_algorithm`. Only this process's table changes: client and sweep worker
    processes start from the built-in table."""
    if not isinstance(spec, AlgorithmSpec):
        _fail("spec", spec, "a tinyproto.config.AlgorithmSpec")
    where = f"algorithm {spec.name}"
    if not _NAME.fullmatch(spec.name):
        _fail("algorithm", spec.name, "a name of lowercase letters, digits, '-' and '_'")
    if registry.algorithm_spec(spec.name) is not None:
        _fail("algorithm", spec.name, "a name not registered yet")
    for group in spec.groups:
        if group not in OPTION_GROUPS:
            _fail(f"{where}: groups", group, "one of " + ", ".join(OPTION_GROUPS))
    if len(set(spec.groups)) != len(spec.groups):
        _fail(f"{where}: groups", spec.groups, "each group at most once")
    per_algorithm = [  # options whose group default None means "the algorithm's default"
        n
        for n, (g, a) in GROUP_OF.items()
        if getattr(OPTION_GROUPS[g](), a) is None
        and n not in ("cps_dim", "mu")
        and n not in PROFILE_DEFAULTS[TOP_LEVEL["profile"]]
    ]
    for key, value in spec.defaults:
        if key not in per_algorithm:
            _fail(f"{where}: defaults", key, "one of " + ", ".join(per_algorithm))
        if GROUP_OF[key][0] not in spec.groups:
            _fail(f"{where}: defaults", key, f"an option of a group it reads ({GROUP_OF[key][0]})")
        if value is None:
            _fail(
                f"{where}: defaults[{key!r}]",
                value,
                PARAMS[key].describe().removesuffix(" or none"),
            )
        check_value(key, value)
    if "tinyproto" in spec.groups and spec.mu_target is None:
        _fail(f"{where}: mu_target", None, "a number > 0 (it reads the tinyproto group: APS)")
    if "tinyproto" not in spec.groups and spec.mu_target is not None:
        _fail(f"{where}: mu_target", spec.mu_target, "none (it does not read the tinyproto group)")
    registry.add(spec)
    return spec


def unregister_algorithm(name: str) -> AlgorithmSpec:
    """Undo :func:`register_algorithm` (built-in algorithms cannot be removed)."""
    try:
        return registry.remove(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
