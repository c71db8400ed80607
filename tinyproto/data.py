"""Datasets and federated partitions, following HtFLlib's conventions.

Images are kept as uint8 tensors ``[N, C, H, W]`` (train and test sets merged into one pool, as
HtFLlib does) and normalised per batch by :meth:`Dataset.images`. Partitioning replays HtFLlib's
Dirichlet label-skew draw exactly (:func:`dirichlet_partition`), then each client's data is split
75 % / 25 % into train / test (:func:`split_train_test`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "ClientSplit",
    "DataError",
    "Dataset",
    "FederatedData",
    "class_counts",
    "dirichlet_partition",
    "htfllib_least_samples",
    "load_dataset",
    "locate_fmnist",
    "make_federated",
    "make_synthetic",
    "split_train_test",
    "stratified_subset",
]

DATASETS = ("fmnist", "cifar10", "cifar100", "tinyimagenet", "synthetic")

ENV_VAR = "TINYPROTO_DATA"
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_CACHE = Path("~/.cache/tinyproto")

# SHA-256 of the *decompressed* idx files (Debian recompressed the .gz files, so hashes of the
# archives differ from upstream; the content does not).
FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FMNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

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

TINYIMAGENET_FOLDER = "tiny-imagenet-200"
TINYIMAGENET_CACHE = "tinyproto_cache.npz"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class DataError(Exception):
    """One-line, user-facing error about data (missing/corrupt files)."""


# --------------------------------------------------------------------------------------------
# Dataset container
# --------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A labelled image pool: uint8 images ``x [N, C, H, W]`` and int64 labels ``y [N]``."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    source: str

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def channels(self) -> int:
        """Number of image channels C."""
        return int(self.x.shape[1])

    @property
    def image_size(self) -> int:
        """Image side H (= W)."""
        return int(self.x.shape[2])

    def to(self, device: torch.device | str) -> Dataset:
        """Return a copy with ``x`` and ``y`` on ``device``."""
        return replace(self, x=self.x.to(device), y=self.y.to(device))

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """float32 batch for indices ``idx``, normalised as HtFLlib does: (x/255 - 0.5)/0.5."""
        return self.x[idx].float().div_(127.5).sub_(1.0)


def class_counts(labels: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Per-class counts of ``labels`` (length ``num_classes``, int64)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _roots(data_dir: str | os.PathLike | None) -> Path:
    """The folder to read datasets from: ``data_dir``, else $TINYPROTO_DATA, else the cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


def _read_bytes(path: Path) -> bytes:
    """Read a file, decompressing ``.gz``; errors become DataError naming the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(
            f"cannot read {path}: {type(e).__name__}: {e}; the file is truncated or corrupted, "
            "delete it and fetch it again"
        ) from None


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


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


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _parse_idx(data: bytes, path: Path, ndim: int) -> np.ndarray:
    """Parse an idx file's bytes (magic 0x0000 <dtype> <ndim>, big-endian uint32 dims)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an idx file (bad magic number {data[:4].hex() or 'empty'}); "
            "the file is corrupted or not Fashion-MNIST"
        )
    if data[3] != ndim:
        raise DataError(
            f"{path} has {data[3]} dimensions, expected {ndim}; the file is not Fashion-MNIST"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header incomplete); fetch the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[data[2]]
    need = header + math.prod(dims) * dtype.itemsize
    if len(data) < need:
        raise DataError(
            f"{path} is truncated: header says {need} bytes, file has {len(data)}; "
            "fetch the file again"
        )
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return arr.reshape(dims)


def _fmnist_files_in(folder: Path) -> dict[str, Path] | None:
    """Map each of the four idx names to an existing file (plain or .gz) in folder, or None."""
    found = {}
    for name in FMNIST_FILES.values():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _fmnist_candidates(base: Path) -> list[Path]:
    return [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]


def _torchvision_download_fmnist(root: Path) -> None:
    """Download Fashion-MNIST with torchvision into ``root`` (monkeypatched in tests)."""
    import torchvision

    torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    torchvision.datasets.FashionMNIST(str(root), train=False, download=True)


def _fmnist_howto() -> str:
    return (
        "install Debian's package (apt-get install dataset-fashion-mnist), or set "
        f"{ENV_VAR} to a folder holding the four idx files "
        "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)"
    )


def locate_fmnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Path, str]:
    """Find the Fashion-MNIST idx files; return (folder, one-line description of the source).

    Order: ``data_dir`` (or $TINYPROTO_DATA) and its ``fashion-mnist/`` and
    ``FashionMNIST/raw/`` subfolders; Debian's ``dataset-fashion-mnist``; a previous or new
    torchvision download into ``data_dir`` (or ``~/.cache/tinyproto``).
    """
    env = os.environ.get(ENV_VAR)
    user = Path(data_dir).expanduser() if data_dir is not None else None
    if user is None and env:
        user = Path(env).expanduser()
    if user is not None:
        label = f"data_dir={user}" if data_dir is not None else f"{ENV_VAR}={user}"
        for folder in _fmnist_candidates(user):
            if _fmnist_files_in(folder) is not None:
                return folder, f"{label} ({folder})"
    if _fmnist_files_in(DEBIAN_FMNIST_DIR) is not None:
        return DEBIAN_FMNIST_DIR, f"Debian package dataset-fashion-mnist ({DEBIAN_FMNIST_DIR})"
    root = Path(data_dir).expanduser() if data_dir is not None else DEFAULT_CACHE.expanduser()
    raw = root / "FashionMNIST" / "raw"
    if _fmnist_files_in(raw) is not None:
        return raw, f"torchvision download into {root} ({raw})"
    if not download:
        raise DataError(f"Fashion-MNIST not found; {_fmnist_howto()}")
    try:
        _torchvision_download_fmnist(root)
    except Exception as e:  # noqa: BLE001 - any network/IO failure means "not available"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"Fashion-MNIST not found and the torchvision download into {root} failed ({msg}); "
            f"{_fmnist_howto()}"
        ) from None
    if _fmnist_files_in(raw) is None:
        raise DataError(f"torchvision download left no idx files in {raw}; {_fmnist_howto()}")
    return raw, f"torchvision download into {root} ({raw})"


def _load_fmnist(data_dir: str | None, verify: bool) -> Dataset:
    folder, description = locate_fmnist(data_dir)
    files = _fmnist_files_in(folder)
    assert files is not None
    arrays = {}
    for key, name in FMNIST_FILES.items():
        path = files[name]
        data = _read_bytes(path)
        ndim = 3 if key.endswith("images") else 1
        arrays[key] = _parse_idx(data, path, ndim)
        if verify:
            got = hashlib.sha256(data).hexdigest()
            want = FMNIST_SHA256[name]
            if got != want:
                raise DataError(
                    f"checksum mismatch for {path}: expected {want[:16]}..., got {got[:16]}...; "
                    "the file is corrupted or not Fashion-MNIST"
                )
    for split in ("train", "test"):
        imgs, labs = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        path = files[FMNIST_FILES[f"{split}_labels"]]
        if imgs.shape[0] != labs.shape[0] or imgs.shape[1:] != (28, 28):
            raise DataError(
                f"{path}: {labs.shape[0]} labels for images of shape {imgs.shape}; "
                "expected matching counts of 28x28 images"
            )
        if labs.size and (labs.min() < 0 or labs.max() > 9):
            raise DataError(f"{path}: labels outside 0..9; the file is not Fashion-MNIST")
    x = np.concatenate([arrays["train_images"], arrays["test_images"]]).astype(np.uint8)
    y = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    return Dataset(
        name="fmnist",
        x=torch.from_numpy(x).unsqueeze(1),
        y=torch.from_numpy(y),
        num_classes=10,
        source=description,
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------

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
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise DataError(
            f"cannot read {path} ({type(e).__name__}: {str(e)[:80]}); the file is truncated or "
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


def _load_cifar(name: str, data_dir: str | None, verify: bool) -> Dataset:
    root = _roots(data_dir)
    folder_name, md5s, label_key, k = (
        (CIFAR10_FOLDER, CIFAR10_MD5, "labels", 10)
        if name == "cifar10"
        else (CIFAR100_FOLDER, CIFAR100_MD5, "fine_labels", 100)
    )
    folder = root / folder_name
    pretty = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    if not folder.is_dir():
        try:
            _torchvision_download_cifar(name, root)
        except Exception as e:  # noqa: BLE001 - any network/IO failure means "not available"
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(
                f"{pretty} not found at {folder} and the torchvision download failed ({msg}); "
                f"unpack the python version ({folder_name}/) into {root}, or pass data_dir / set "
                f"{ENV_VAR} to the folder that contains {folder_name}/"
            ) from None
    xs, ys = [], []
    for fname, md5 in md5s.items():
        path = folder / fname
        if not path.is_file():
            raise DataError(f"{pretty} file {path} is missing; unpack the full {folder_name}/")
        if verify:
            got = _file_md5(path)
            if got != md5:
                raise DataError(
                    f"checksum mismatch for {path}: expected md5 {md5}, got {got}; the file is "
                    f"corrupted or not {pretty} (pass verify=False only for test data)"
                )
        batch = _unpickle(path)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
            if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
                raise ValueError(f"data {data.shape}, {labels.shape[0]} labels")
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"labels outside 0..{k - 1}")
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"{path} is not a {pretty} batch ({type(e).__name__}: {e})") from None
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return Dataset(
        name=name,
        x=torch.from_numpy(np.concatenate(xs)),
        y=torch.from_numpy(np.concatenate(ys)),
        num_classes=k,
        source=str(folder),
    )


# --------------------------------------------------------------------------------------------
# TinyImageNet
# --------------------------------------------------------------------------------------------


def _decode_jpegs(paths: Sequence[Path], size: int = 64) -> np.ndarray:
    """Decode images to uint8 [n, size, size, 3] (RGB), resizing if needed; threads in parallel."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        try:
            with Image.open(paths[i]) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - any decoding failure names the file
            raise DataError(f"cannot decode image {paths[i]} ({type(e).__name__}: {e})") from None

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for _ in pool.map(work, range(len(paths))):
            pass
    return out


def _load_tinyimagenet(data_dir: str | None) -> Dataset:
    root = _roots(data_dir)
    base = root / TINYIMAGENET_FOLDER
    wnids_path = base / "wnids.txt"
    if not wnids_path.is_file():
        raise DataError(
            f"TinyImageNet not found: {wnids_path} is missing; download {TINYIMAGENET_URL}, unzip "
            f"it into {root} (giving {TINYIMAGENET_FOLDER}/), or pass data_dir / set {ENV_VAR}"
        )
    wnids = sorted(w.strip() for w in wnids_path.read_text().split() if w.strip())
    cache = base / TINYIMAGENET_CACHE
    if cache.is_file() and cache.stat().st_mtime > wnids_path.stat().st_mtime:
        try:
            with np.load(cache, allow_pickle=False) as z:
                if list(z["wnids"]) == wnids:
                    return Dataset(
                        name="tinyimagenet",
                        x=torch.from_numpy(np.ascontiguousarray(z["x"])),
                        y=torch.from_numpy(z["y"].astype(np.int64)),
                        num_classes=len(wnids),
                        source=f"{base} (cache {cache.name})",
                    )
        except Exception:  # noqa: BLE001 - a bad cache is simply rebuilt
            pass
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for w in wnids:
        folder = base / "train" / w / "images"
        if not folder.is_dir():
            raise DataError(f"TinyImageNet training folder {folder} is missing; re-unzip the set")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        paths.extend(files)
        labels.extend([index[w]] * len(files))
    ann = base / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"TinyImageNet file {ann} is missing; re-unzip the set")
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{ann} line {lineno}: expected 'file<TAB>wnid...', got {line[:60]!r}")
        img = base / "val" / "images" / parts[0]
        if not img.is_file():
            raise DataError(f"TinyImageNet validation image {img} (listed in {ann}) is missing")
        paths.append(img)
        labels.append(index[parts[1]])
    x = _decode_jpegs(paths).transpose(0, 3, 1, 2).copy()
    y = np.asarray(labels, dtype=np.int64)
    try:  # cache atomically; a read-only folder just means no cache
        tmp = base / f".{TINYIMAGENET_CACHE}.tmp.npz"
        np.savez(tmp, x=x, y=y, wnids=np.asarray(wnids))
        os.replace(tmp, cache)
    except OSError:
        pass
    return Dataset(
        name="tinyimagenet",
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        num_classes=len(wnids),
        source=str(base),
    )


# --------------------------------------------------------------------------------------------
# Synthetic
# --------------------------------------------------------------------------------------------


def make_synthetic(
    num_classes: int, num_samples: int, channels: int = 1, image_size: int = 28, seed: int = 0
) -> Dataset:
    """A learnable K-class image set: per-class low-frequency template + pixel noise.

    Classes are balanced (counts differ by at most 1) and the set is deterministic per seed.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is invalid; use an integer >= 2")
    if num_samples < 1:
        raise ValueError(f"synthetic_samples={num_samples} is invalid; use an integer >= 1")
    if channels < 1 or image_size < 1:
        raise ValueError(f"channels={channels}, image_size={image_size}: both must be >= 1")
    rng = np.random.RandomState(seed)
    coarse = torch.from_numpy(rng.standard_normal((num_classes, channels, 4, 4)).astype("f4"))
    templates = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bicubic", align_corners=False
    )
    templates = templates / templates.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    templates = 127.5 + 50.0 * templates
    y = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)
    x = torch.empty((num_samples, channels, image_size, image_size), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(int(rng.randint(0, 2**31 - 1)))
    yt = torch.from_numpy(y)
    for s in range(0, num_samples, 4096):
        t = templates[yt[s : s + 4096]]
        noise = torch.randn(t.shape, generator=gen) * 40.0
        x[s : s + 4096] = (t + noise).round_().clamp_(0, 255).to(torch.uint8)
    return Dataset(
        name="synthetic",
        x=x,
        y=yt,
        num_classes=num_classes,
        source=f"synthetic(K={num_classes},n={num_samples},seed={seed})",
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded class-stratified random subset of ``size`` samples.

    Each class keeps its share (largest-remainder rounding, ties to the lower class index).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if size < 1:
        raise ValueError(f"max_samples={size} is invalid; use a positive integer")
    if size >= n:
        return np.arange(n, dtype=np.int64)
    counts = np.bincount(labels)
    exact = counts * size / n
    quota = np.floor(exact).astype(np.int64)
    rest = size - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))
    quota[order[:rest]] += 1
    rng = np.random.RandomState(seed)
    chosen = []
    for k, q in enumerate(quota):
        idx_k = np.flatnonzero(labels == k)
        if q:
            chosen.append(rng.choice(idx_k, size=int(q), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


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
    if name == "fmnist":
        ds = _load_fmnist(data_dir, verify)
    elif name in ("cifar10", "cifar100"):
        ds = _load_cifar(name, data_dir, verify)
    elif name == "tinyimagenet":
        ds = _load_tinyimagenet(data_dir)
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


# --------------------------------------------------------------------------------------------
# Partitioning
# --------------------------------------------------------------------------------------------


def htfllib_least_samples(
    num_samples: int, num_clients: int, batch_size: int = 10, train_ratio: float = 0.75
) -> int:
    """HtFLlib's own ``least_samples``: int(min(batch_size / (1 - train_ratio), N / clients / 2)).

    With HtFLlib's generation defaults (batch_size 10, train_ratio 0.75) this is 40 for the
    usual dataset sizes: every client must hold at least one test batch.
    """
    return int(min(batch_size / (1 - train_ratio), num_samples / num_clients / 2))


def dirichlet_partition(
    labels: np.ndarray | torch.Tensor,
    num_clients: int,
    alpha: float,
    seed: int = 1,
    least_samples: int = 1,
    *,
    num_classes: int | None = None,
    max_tries: int = 10_000,
) -> list[np.ndarray]:
    """HtFLlib's Dirichlet label-skew partition ("dir"), replaying its exact draw sequence.

    ``np.random.RandomState(seed)`` stands for HtFLlib's global ``np.random.seed(seed)``. For
    each class in order: shuffle its indices, draw Dir(alpha), zero the share of every client
    already holding >= N / num_clients samples, renormalise and cut. The whole draw repeats while
    some client holds fewer than ``least_samples``. Returns one int64 index array per client.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D integer array, got {labels.shape}")
    if labels.min() < 0:
        raise ValueError("labels must be >= 0")
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise ValueError(f"num_clients={num_clients} is invalid; use an integer >= 1")
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha={alpha} is invalid; use a finite number > 0")
    n = labels.shape[0]
    int_ok = isinstance(least_samples, (int, np.integer))
    if not int_ok or not 1 <= least_samples <= n / num_clients:
        raise ValueError(
            f"least_samples={least_samples} is invalid; use an integer in 1..N/num_clients "
            f"= {n / num_clients:g}"
        )
    k_max = int(labels.max()) + 1
    k = k_max if num_classes is None else int(num_classes)
    if k < k_max:
        raise ValueError(f"num_classes={num_classes} is smaller than max label + 1 = {k_max}")
    if max_tries < 1:
        raise ValueError(f"max_tries={max_tries} is invalid; use an integer >= 1")

    rng = np.random.RandomState(seed)
    class_idx = [np.where(labels == c)[0] for c in range(k)]
    limit = n / num_clients
    for _ in range(max_tries):
        batches: list[list[int]] = [[] for _ in range(num_clients)]
        for c in range(k):
            idx_k = class_idx[c].copy()
            rng.shuffle(idx_k)
            proportions = rng.dirichlet(np.repeat(alpha, num_clients))
            if len(idx_k) == 0:  # nothing to cut (HtFLlib would divide 0/0 here only if all
                continue  # clients were full, which needs every sample already placed)
            open_ = np.array([len(b) < limit for b in batches])
            proportions = proportions * open_
            proportions = proportions / proportions.sum()
            cuts = (np.cumsum(proportions) * len(idx_k)).astype(int)[:-1]
            for b, part in zip(batches, np.split(idx_k, cuts)):
                b.extend(part.tolist())
        if min(len(b) for b in batches) >= least_samples:
            return [np.array(b, dtype=np.int64) for b in batches]
    raise ValueError(
        f"dirichlet_partition: no draw gave every client >= {least_samples} samples in "
        f"{max_tries} tries (num_clients={num_clients}, alpha={alpha}); lower least_samples "
        "or num_clients, or raise alpha"
    )


def split_train_test(
    idx: np.ndarray, train_fraction: float = 0.75, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``idx`` with RandomState(seed) and split it into (train, test).

    Sizes follow sklearn's ``train_test_split(train_size=f)``: n_train = floor(f * n), the rest
    is test (for f = 0.75 this equals n_test = ceil(0.25 * n)). Where that leaves no training
    sample (n = 1), the one sample goes to train instead (sklearn would refuse).
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction={train_fraction} is invalid; use 0 < value < 1")
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    n = idx.shape[0]
    n_train = int(math.floor(train_fraction * n))
    if n_train == 0 and n > 0:
        n_train = 1
    perm = np.random.RandomState(seed).permutation(n)
    shuffled = idx[perm]
    return shuffled[:n_train].copy(), shuffled[n_train:].copy()


@dataclass
class ClientSplit:
    """One client's data: index tensors into the Dataset and class counts."""

    train_idx: torch.Tensor
    test_idx: torch.Tensor
    train_counts: np.ndarray
    full_counts: np.ndarray


@dataclass
class FederatedData:
    """A dataset plus its per-client train/test splits."""

    dataset: Dataset
    clients: list[ClientSplit]
    num_classes: int

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return len(self.clients)


def make_federated(
    dataset: Dataset,
    num_clients: int,
    alpha: float,
    *,
    partition_seed: int = 1,
    split_seed: int = 0,
    train_fraction: float = 0.75,
    least_samples: int = 1,
) -> FederatedData:
    """Partition ``dataset`` over clients (Dirichlet, HtFLlib) and split each client 75/25."""
    labels = dataset.y.detach().cpu().numpy()
    k = dataset.num_classes
    parts = dirichlet_partition(
        labels,
        num_clients,
        alpha,
        seed=partition_seed,
        least_samples=least_samples,
        num_classes=k,
    )
    device = dataset.x.device
    clients = []
    for i, part in enumerate(parts):
        train, test = split_train_test(part, train_fraction, seed=split_seed * 100003 + i)
        clients.append(
            ClientSplit(
                train_idx=torch.from_numpy(train).to(device),
                test_idx=torch.from_numpy(test).to(device),
                train_counts=class_counts(labels[train], k),
                full_counts=class_counts(labels[part], k),
            )
        )
    return FederatedData(dataset=dataset, clients=clients, num_classes=k)
