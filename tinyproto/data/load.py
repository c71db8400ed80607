"""The entry points: :func:`load_dataset` by name and :func:`check_data_source` before a run.

Each source's module reads its own files; this one picks the module, takes the stratified
``max_samples`` subset and resizes when ``image_size`` asks for it.
"""

from __future__ import annotations

import os
import pickle
import zlib
from dataclasses import replace

import torch

from tinyproto.data.base import DataError, Dataset, explicit_source, source
from tinyproto.data.cifar import check_cifar, load_cifar
from tinyproto.data.fmnist import check_fmnist, load_fmnist
from tinyproto.data.partition import (
    FederatedData,
    PartitionError,
    make_federated,
    stratified_subset,
)
from tinyproto.data.synthetic import make_synthetic
from tinyproto.data.tinyimagenet import check_tinyimagenet, load_tinyimagenet

DATASETS = ("fmnist", "cifar10", "cifar100", "tinyimagenet", "synthetic")


def check_data_source(dataset: str, data_dir: str | os.PathLike | None) -> None:
    """Check an explicit data source without decoding anything; raise DataError if unusable.

    The source is ``data_dir``, else $TINYPROTO_DATA. It must be an existing, readable folder
    holding the dataset's files (Fashion-MNIST: the four idx files, plain or .gz, in it or its
    ``fashion-mnist/`` or ``FashionMNIST/raw/`` subfolder; CIFAR: the batch files of
    ``cifar-10-batches-py/`` or ``cifar-100-python/``; TinyImageNet: the ``tiny-imagenet-200/``
    tree, its ``wnids.txt`` read and each class's training folder present). ``synthetic`` and
    implicit sources (Debian's package, the cache, a download) are not checked here: loading
    reports their problems.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    if dataset == "synthetic":
        return
    src = explicit_source(data_dir)
    if src is None:
        return
    if dataset == "fmnist":
        check_fmnist(src)
    elif dataset in ("cifar10", "cifar100"):
        check_cifar(dataset, src)
    else:
        check_tinyimagenet(src)


def load_dataset(
    name: str,
    data_dir: str | None = None,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    verify: bool = True,
    num_classes: int = 10,
    synthetic_samples: int = 2000,
    image_size: int | None = None,
) -> Dataset:
    """Load a dataset by name (train and test merged), optionally a stratified subset.

    ``num_classes``, ``synthetic_samples`` and ``image_size`` (default 28) shape the synthetic
    set; for real datasets a given ``image_size`` different from the native one resizes.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if name != "synthetic":
        try:
            if name == "fmnist":
                ds = load_fmnist(data_dir, verify)
            elif name in ("cifar10", "cifar100"):
                ds = load_cifar(name, data_dir, verify)
            else:
                ds = load_tinyimagenet(data_dir)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error, pickle.UnpicklingError, UnicodeDecodeError) as e:
            # a last net: every known file check above raises DataError itself
            where = getattr(e, "filename", None) or source(data_dir).root
            raise DataError(
                f"cannot load {name} from {where}: {type(e).__name__}: {str(e)[:160]}; check "
                "the file and its permissions, or fetch the data again"
            ) from None
    else:
        ds = make_synthetic(
            num_classes, synthetic_samples, 1, 28 if image_size is None else image_size, seed
        )
    if max_samples is not None and max_samples < len(ds):
        keep = torch.from_numpy(stratified_subset(ds.y.numpy(), max_samples, seed))
        ds = replace(ds, x=ds.x[keep].contiguous(), y=ds.y[keep].contiguous())
        ds.source = f"{ds.source} [stratified subset of {max_samples}, seed={seed}]"
    if name != "synthetic" and image_size is not None:
        ds = replace(ds, x=_resize(ds.x, image_size))
    return ds


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 images to ``size`` x ``size`` (bilinear, antialiased) if they differ."""
    if size is None or size == x.shape[-1]:
        return x
    if size < 1:
        raise ValueError(f"image_size={size} is invalid; use a positive integer")
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for s in range(0, x.shape[0], 4096):
        chunk = x[s : s + 4096].float()
        chunk = torch.nn.functional.interpolate(
            chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[s : s + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


# -- what a run's Config asks for ------------------------------------------------------------


def dataset_for(cfg) -> Dataset:
    """The data set of run config ``cfg`` (its subset, synthetic size and data folder)."""
    return load_dataset(
        cfg.dataset,
        cfg.data_dir,
        max_samples=cfg.max_samples,
        seed=cfg.partition_seed,
        num_classes=cfg.num_classes,
        synthetic_samples=cfg.max_samples or 2000,
    )


def federate(ds: Dataset, cfg) -> FederatedData:
    """``ds`` partitioned and split as run config ``cfg`` says; ConfigError (one line) when no
    Dirichlet draw meets its ``least_samples``."""
    from tinyproto.config.profiles import ConfigError

    try:
        return make_federated(
            ds,
            cfg.num_clients,
            cfg.alpha,
            partition_seed=cfg.partition_seed,
            split_seed=cfg.partition_seed,
            train_fraction=cfg.train_fraction,
            least_samples=cfg.least_samples,
            validation=cfg.validation,
        )
    except PartitionError as e:
        raise ConfigError(
            f"invalid least_samples={cfg.least_samples} with num_clients={cfg.num_clients}, "
            f"alpha={cfg.alpha}: {str(e).splitlines()[0]}"
        ) from None
