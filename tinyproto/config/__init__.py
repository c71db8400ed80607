"""Run configuration: one frozen, validated, hashable ``Config``.

    registry.py     the algorithm table: one AlgorithmSpec per algorithm (its class, the option
                    groups it reads, its defaults, traits); every per-algorithm list derives from it
    profiles.py     data-set facts, profile presets, ConfigError, APS's mu
    params.py       the constraint table PARAMS (type, range, users, help per flat option)
    options.py      per-algorithm option groups (cfg.tinyproto, cfg.fml, ...)
    core.py         Config, config_from_dict, register_algorithm
    participation.py  which clients a round samples, and whose upload is lost (from seed, round)

A profile (smoke | quick | paper) fills the fields left unset; explicit values override it.
Algorithm-dependent defaults (CPS dim s = d // 10) are resolved at construction, so that a
``Config`` always says exactly what runs, and its hash (the run id) changes when anything does.

ALGORITHMS, PROTOTYPE_ALGORITHMS, TINYPROTO_ALGORITHMS, SERVER_TRAINING_ALGORITHMS,
SHARED_MODEL_ALGORITHMS, FEDTINY_ALGORITHMS, MU_TARGET and GROUPS are computed from the live
algorithm table at each attribute access (``tinyproto.config.ALGORITHMS`` includes algorithms
registered at run time; ``from tinyproto.config import ALGORITHMS`` is a snapshot).
"""

from tinyproto.config import registry
from tinyproto.config.core import (
    TOP_LEVEL,
    Config,
    config_from_dict,
    register_algorithm,
    unregister_algorithm,
)
from tinyproto.config.options import (
    GROUP_OF,
    OPTION_GROUPS,
    FedDistillOptions,
    FedKDOptions,
    FedTGPOptions,
    FMLOptions,
    LGOptions,
    PrototypeOptions,
    SharedModelOptions,
    TinyProtoOptions,
    groups,
)
from tinyproto.config.params import PARAMS, Param, check_value
from tinyproto.config.profiles import (
    AUTO,
    COUNT_MAX,
    DATASET_CLASSES,
    DATASET_SHAPES,
    DATASET_SIZES,
    DATASETS,
    FLOAT_MAX,
    PAPER_MU,
    PROFILE_DEFAULTS,
    PROFILES,
    SEED_MAX,
    SYNTHETIC_DEFAULT_SAMPLES,
    ConfigError,
)
from tinyproto.config.registry import (
    AlgorithmSpec,
    algorithm_names,
    algorithm_spec,
    readers,
    reads,
)


def __getattr__(name: str):
    """The per-algorithm lists and GROUPS, computed from the live algorithm table."""
    if name == "GROUPS":
        return groups()
    try:
        return registry.view(name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = [
    "ALGORITHMS",
    "AUTO",
    "COUNT_MAX",
    "DATASET_CLASSES",
    "DATASET_SHAPES",
    "DATASET_SIZES",
    "DATASETS",
    "FEDTINY_ALGORITHMS",
    "FLOAT_MAX",
    "GROUP_OF",
    "GROUPS",
    "MU_TARGET",
    "OPTION_GROUPS",
    "PAPER_MU",
    "PARAMS",
    "PROFILE_DEFAULTS",
    "PROFILES",
    "PROTOTYPE_ALGORITHMS",
    "SEED_MAX",
    "SERVER_TRAINING_ALGORITHMS",
    "SHARED_MODEL_ALGORITHMS",
    "SYNTHETIC_DEFAULT_SAMPLES",
    "TINYPROTO_ALGORITHMS",
    "TOP_LEVEL",
    "AlgorithmSpec",
    "Config",
    "ConfigError",
    "FMLOptions",
    "LGOptions",
    "FedDistillOptions",
    "FedKDOptions",
    "FedTGPOptions",
    "Param",
    "PrototypeOptions",
    "SharedModelOptions",
    "TinyProtoOptions",
    "algorithm_names",
    "algorithm_spec",
    "check_value",
    "config_from_dict",
    "groups",
    "readers",
    "reads",
    "register_algorithm",
    "unregister_algorithm",
]
