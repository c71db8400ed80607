"""Datasets and federated partitions, following HtFLlib's conventions.

Images are kept as uint8 tensors ``[N, C, H, W]`` (train and test sets merged into one pool, as
HtFLlib does) and normalised per batch by :meth:`Dataset.images`. Partitioning replays HtFLlib's
Dirichlet label-skew draw exactly (:func:`dirichlet_partition`), then each client's data is split
75 % / 25 % into train / test (:func:`split_train_test`).

Modules: ``base`` (Dataset, DataError, sources and safe file access), one per source
(``fmnist``, ``cifar``, ``tinyimagenet``, ``synthetic``), ``partition`` (Dirichlet draw and
client splits) and ``load`` (:func:`load_dataset`, :func:`check_data_source`). Settings that
tests move (``base.DEFAULT_CACHE``, ``fmnist.DEBIAN_FMNIST_DIR``, the torchvision download
hooks) live only in the module that reads them and are not re-exported here.

May import: tinyproto.config (profiles' constants) and nothing above it.
"""

from tinyproto.data.base import ENV_VAR, DataError, Dataset
from tinyproto.data.cifar import CIFAR10_FOLDER, CIFAR10_MD5, CIFAR100_FOLDER, CIFAR100_MD5
from tinyproto.data.fmnist import FMNIST_FILES, FMNIST_SHA256, locate_fmnist
from tinyproto.data.load import DATASETS, check_data_source, dataset_for, federate, load_dataset
from tinyproto.data.partition import (
    ClientSplit,
    FederatedData,
    PartitionError,
    class_counts,
    dirichlet_partition,
    htfllib_least_samples,
    make_federated,
    split_train_test,
    stratified_subset,
)
from tinyproto.data.synthetic import make_synthetic
from tinyproto.data.tinyimagenet import TINYIMAGENET_CACHE, TINYIMAGENET_FOLDER, TINYIMAGENET_URL

__all__ = [
    "CIFAR100_FOLDER",
    "CIFAR100_MD5",
    "CIFAR10_FOLDER",
    "CIFAR10_MD5",
    "DATASETS",
    "ENV_VAR",
    "FMNIST_FILES",
    "FMNIST_SHA256",
    "TINYIMAGENET_CACHE",
    "TINYIMAGENET_FOLDER",
    "TINYIMAGENET_URL",
    "ClientSplit",
    "DataError",
    "Dataset",
    "FederatedData",
    "check_data_source",
    "dataset_for",
    "class_counts",
    "dirichlet_partition",
    "federate",
    "PartitionError",
    "htfllib_least_samples",
    "load_dataset",
    "locate_fmnist",
    "make_federated",
    "make_synthetic",
    "split_train_test",
    "stratified_subset",
]
