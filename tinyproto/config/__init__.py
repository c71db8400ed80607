"""Run configuration: one frozen, validated, hashable ``Config``.

    profiles.py     names, data-set facts, profile presets, ConfigError
    params.py       the constraint table PARAMS (type, range, users, help per flat option)
    options.py      per-algorithm option groups (cfg.tinyproto, cfg.fml, ...)
    core.py         Config, config_from_dict
    participation.py  which clients a round samples, and whose upload is lost (from seed, round)

A profile (smoke | quick | paper) fills the fields left unset; explicit values override it.
Algorithm-dependent defaults (CPS dim s = d // 10) are resolved at construction, so that a
``Config`` always says exactly what runs, and its hash (the run id) changes when anything does.
"""

from tinyproto.config.core import TOP_LEVEL, Config, config_from_dict
from tinyproto.config.options import (
    GROUP_OF,
    GROUPS,
    FedDistillOptions,
    FedKDOptions,
    FedTGPOptions,
    FMLOptions,
    LGOptions,
    PrototypeOptions,
    SharedModelOptions,
    TinyProtoOptions,
)
from tinyproto.config.params import PARAMS, Param, check_value
from tinyproto.config.profiles import (
    ALGORITHMS,
    AUTO,
    COUNT_MAX,
    DATASET_CLASSES,
    DATASET_SHAPES,
    DATASET_SIZES,
    DATASETS,
    FLOAT_MAX,
    MU_TARGET,
    PAPER_MU,
    PROFILE_DEFAULTS,
    PROFILES,
    PROTOTYPE_ALGORITHMS,
    SEED_MAX,
    SERVER_TRAINING_ALGORITHMS,
    SHARED_MODEL_ALGORITHMS,
    SYNTHETIC_DEFAULT_SAMPLES,
    TINYPROTO_ALGORITHMS,
    ConfigError,
)

__all__ = [
    "ALGORITHMS",
    "AUTO",
    "COUNT_MAX",
    "DATASET_CLASSES",
    "DATASET_SHAPES",
    "DATASET_SIZES",
    "DATASETS",
    "FLOAT_MAX",
    "GROUP_OF",
    "GROUPS",
    "MU_TARGET",
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
    "check_value",
    "config_from_dict",
]
