"""CIFAR-10 / CIFAR-100 from their python-pickle batches (cifar-10-batches-py/, cifar-100-python/).

Downloads go through torchvision (:func:`_torchvision_download_cifar`, default folder only);
reading does not, measured against ``torchvision.datasets.CIFAR10`` (0.29, download=False) on a
full-size fake CIFAR-10 (6 x 10 000 images, 177 MB), 7 fresh processes each, 2-core machine:

- time to the same uint8 [60000, 3, 32, 32] tensor (bit-identical): this reader 0.73 s median
  with MD5 checks (0.25 s without); torchvision 1.57 s (train and test are two instances, each
  MD5-hashes all six files, and its HWC layout must be transposed back).
- safety: torchvision calls plain ``pickle.load``; a batch holding an ``os.system`` pickle ran its
  command once the MD5 check was out of the way, which test data (``verify=False``) needs. The
  restricted :class:`_CifarUnpickler` below builds numpy arrays only.
- errors: a missing, unreadable or altered batch gave the same ``RuntimeError("Dataset not
  found or corrupted. ...")`` naming no file; torchvision also demands ``batches.meta`` / ``meta``,
  which nothing here needs.

Every failure here is one DataError naming the file.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from tinyproto.data.base import (
    ENV_VAR,
    DataError,
    Dataset,
    Source,
    default_cache,
    file_md5,
    file_problem,
    folder_problem,
    os_problem,
    require_root,
    source,
)

# MD5 of the python-pickle batches, as published by torchvision (datasets/cifar.py).
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}

_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes written by Python 3 at protocol <= 2
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain containers (no arbitrary code)."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle hook
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {os_problem(e)}") from None
    if not blob:
        raise DataError(f"{path} is empty; the file is truncated, delete it and fetch it again")
    try:
        obj = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise DataError(
            f"cannot read {path} ({type(e).__name__}: {str(e)[:120]}); the file is truncated or "
            "corrupted, delete it and fetch it again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a CIFAR batch (got {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _torchvision_download_cifar(name: str, root: Path) -> None:
    """Download CIFAR-10/100 with torchvision into ``root`` (monkeypatched in tests)."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    cls(str(root), train=True, download=True)


def _cifar_spec(name: str) -> tuple[str, dict[str, str], str, int, str]:
    """(folder name, file -> md5, label key, classes, pretty name) of CIFAR-10 or CIFAR-100."""
    if name == "cifar10":
        return CIFAR10_FOLDER, CIFAR10_MD5, "labels", 10, "CIFAR-10"
    return CIFAR100_FOLDER, CIFAR100_MD5, "fine_labels", 100, "CIFAR-100"


def _cifar_fix(name: str, src: Source) -> str:
    folder_name, *_, pretty = _cifar_spec(name)
    cls = "CIFAR10" if name == "cifar10" else "CIFAR100"
    fix = (
        f"unpack the python version of {pretty} ({folder_name}/) into {src.root} (for example: "
        f"python -c \"import torchvision; torchvision.datasets.{cls}('{src.root}', "
        'download=True)")'
    )
    if src.explicit:
        return f"{fix}, or {src.drop} to use the default folder {default_cache()}"
    return f"{fix}, or pass data_dir / set {ENV_VAR} to the folder that contains {folder_name}/"


def _cifar_files(name: str, src: Source) -> list[Path]:
    """Check the CIFAR folder of ``src`` (nothing decoded); return its batch files in order."""
    folder_name, md5s, *_, pretty = _cifar_spec(name)
    folder = src.root / folder_name
    problem = folder_problem(folder)
    if problem is not None:
        raise DataError(f"{pretty}: {folder} {problem} (from {src.label}); {_cifar_fix(name, src)}")
    paths = [folder / f for f in md5s]
    problems = [f"{p} {why}" for p in paths if (why := file_problem(p)) is not None]
    if problems:
        raise DataError(
            f"{pretty}: {'; '.join(problems)}; unpack the full {folder_name}/ into {src.root} again"
        )
    return paths


def _cifar_batch(path: Path, label_key: str, k: int, pretty: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file: uint8 images [n, 3, 32, 32] and int64 labels [n]."""
    batch = _unpickle(path)
    for key in ("data", label_key):
        if key not in batch:
            keys = ", ".join(repr(k_)[:30] for k_ in list(batch)[:8])
            raise DataError(f"{path} is not a {pretty} batch: no {key!r} entry (has {keys})")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(
            f"{path}: 'data' is a {got}, expected a uint8 array (N, 3072); not a {pretty} batch"
        )
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise DataError(
            f"{path}: 'data' has shape {data.shape}, expected (N, 3072) with N >= 1; "
            f"not a {pretty} batch"
        )
    try:
        labels = np.asarray(batch[label_key])
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: {label_key!r} is not a list of integers ({e})") from None
    if labels.ndim != 1 or labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {label_key!r} is not a list of integers (got {labels.dtype}, shape "
            f"{labels.shape}); not a {pretty} batch"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{path}: {labels.shape[0]} labels for {data.shape[0]} images; the file is corrupted"
        )
    if labels.min() < 0 or labels.max() >= k:
        raise DataError(f"{path}: labels outside 0..{k - 1}; not a {pretty} batch")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def check_cifar(name: str, src: Source) -> None:
    """Check an explicit CIFAR source (its batch files present and readable; nothing decoded)."""
    require_root(src, _cifar_spec(name)[-1], _cifar_fix(name, src))
    _cifar_files(name, src)


def load_cifar(name: str, data_dir: str | os.PathLike | None, verify: bool) -> Dataset:
    """CIFAR-10 or CIFAR-100 (``name``), train batches then the test batch, as one pool.

    Only the default folder downloads (torchvision) when the set is absent. With ``verify``
    each batch file must match torchvision's published MD5 before it is unpickled.
    """
    folder_name, md5s, label_key, k, pretty = _cifar_spec(name)
    src = source(data_dir)
    if src.explicit:
        require_root(src, pretty, _cifar_fix(name, src))
    elif not os.path.lexists(src.root / folder_name):  # only the default folder downloads
        try:
            _torchvision_download_cifar(name, src.root)
        except Exception as e:  # noqa: BLE001 - any network/IO failure means "not available"
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(
                f"{pretty} not found at {src.root / folder_name} and the torchvision download "
                f"failed ({msg}); unpack the python version ({folder_name}/) into {src.root}, "
                f"or pass data_dir / set {ENV_VAR} to the folder that contains {folder_name}/"
            ) from None
    xs, ys = [], []
    for path in _cifar_files(name, src):
        if verify:
            got, want = file_md5(path), md5s[path.name]
            if got != want:
                raise DataError(
                    f"checksum mismatch for {path}: expected md5 {want}, got {got}; the file is "
                    f"corrupted or not {pretty} (pass verify=False only for test data)"
                )
        x, y = _cifar_batch(path, label_key, k, pretty)
        xs.append(x)
        ys.append(y)
    return Dataset(
        name=name,
        x=torch.from_numpy(np.concatenate(xs)),
        y=torch.from_numpy(np.concatenate(ys)),
        num_classes=k,
        source=str(src.root / folder_name),
    )
