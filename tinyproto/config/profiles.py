"""Data-set facts, profile presets and ConfigError, shared by the whole configuration (the
algorithms' names and traits: ``registry``)."""

from __future__ import annotations

import math

from tinyproto import paper
from tinyproto.config import registry

# The algorithms and what the configuration knows about each: tinyproto.config.registry (one
# AlgorithmSpec each). ALGORITHMS, PROTOTYPE_ALGORITHMS, TINYPROTO_ALGORITHMS,
# SERVER_TRAINING_ALGORITHMS, SHARED_MODEL_ALGORITHMS, FEDTINY_ALGORITHMS, ALGORITHM_DEFAULTS,
# PROTO_PASS_DEFAULT and MU_TARGET are still read here (module __getattr__ below), computed from
# the live table at each access.
DATASETS = ("fmnist", "cifar10", "cifar100", "tinyimagenet", "synthetic")
PROFILES = ("smoke", "quick", "long", "hard", "paper")

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
# mu * (training samples per class) equals the algorithm's AlgorithmSpec.mu_target (MU_TARGET).

AUTO = "auto"
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)
# a profile's partition_seed that follows the run's seed (each seed draws its own partition)
FOLLOW_SEED = "seed"
COUNT_MAX = 2**31 - 1  # int32: what torch sizes and numpy index arrays hold safely
FLOAT_MAX = 1e30  # far beyond any sensible hyperparameter, far below float32 overflow

# Profile presets: the fields a profile decides when the user leaves them unset.
# Largest normalised float32 copy of a data set kept on the device (Dataset.prepared):
# Fashion-MNIST 220 MB, CIFAR 740 MB; TinyImageNet's 4.9 GB is normalised per batch instead.
NORMALISE_ONCE_MAX_BYTES = 2 * 2**30

PROFILE_DEFAULTS: dict[str, dict] = {
    "smoke": dict(
        local_epochs=1,
        lr=0.01,
        partition_seed=1,
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
        local_epochs=1,
        lr=0.01,
        partition_seed=1,
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
    # all of Fashion-MNIST, long enough for the curves to flatten: the horizon the scorecard's
    # verdicts are taken at (quick's 15 rounds reverse some of them); 2-core CPU, background
    "long": dict(
        local_epochs=1,
        lr=0.01,
        partition_seed=1,
        dataset="fmnist",
        family="cnn4",
        num_clients=20,
        alpha=0.1,
        rounds=100,
        feature_dim=500,
        max_samples=None,
        server_epochs=100,
        eval_every=1,
        checkpoint_every=10,
    ),
    # where federation matters on this CPU (docs/hard-profile-search.md): 300 nearly-IID images
    # per client, so Local is data-starved and pooling helps; 5 local epochs and lr 0.05 so that
    # 100 rounds reach the plateau (at lr 0.01 the prototype methods still rose at round 100);
    # each seed draws its own partition (verdicts vary over data splits)
    "hard": dict(
        local_epochs=5,
        lr=0.05,
        partition_seed=FOLLOW_SEED,
        dataset="fmnist",
        family="cnn4",
        num_clients=20,
        alpha=10.0,
        rounds=100,
        feature_dim=500,
        max_samples=6000,
        server_epochs=100,
        eval_every=1,
        checkpoint_every=10,
    ),
    "paper": dict(
        local_epochs=1,
        lr=0.01,
        partition_seed=1,
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


def preset_mu(cfg) -> float | None:
    """mu when no data decides it: the explicit value, or the paper's constant on its full data
    sets; None when the product rule (``resolve_mu``) needs the training samples per class."""
    if cfg.tinyproto.mu is not None:
        return float(cfg.tinyproto.mu)
    full_data = cfg.max_samples is None or cfg.max_samples >= DATASET_SIZES.get(
        cfg.dataset, math.inf
    )
    if (cfg.algorithm, cfg.dataset) in PAPER_MU and full_data:
        return PAPER_MU[(cfg.algorithm, cfg.dataset)]
    return None


def resolve_mu(cfg, train_samples_per_class: float) -> float | None:
    """The scaling constant this run uses: explicit, the paper's, or by the 0.68 / 4.5 rule.

    The paper's constants belong to its full data sets; on a subset (``max_samples``) or on
    another data set mu follows the product rule mu x (training samples per class) = 0.68
    (FP) or 4.5 (FT), so that the scaled target keeps the paper's magnitude.
    """
    if not cfg.uses_aps:
        return None
    preset = preset_mu(cfg)
    if preset is not None:
        return preset
    if not train_samples_per_class > 0:
        raise ConfigError(
            f"invalid mu='auto': the product rule needs training samples per class > 0, "
            f"got {train_samples_per_class}"
        )
    target = registry.algorithm_spec(cfg.algorithm).mu_target  # required of APS's readers
    return float(f"{target / train_samples_per_class:.2g}")


def __getattr__(name: str):
    """The per-algorithm name lists and dicts, computed from the live algorithm table."""
    try:
        return registry.view(name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
