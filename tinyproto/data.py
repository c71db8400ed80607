"""Datasets and federated partitions, following HtFLlib's conventions.

Images are kept as uint8 tensors ``[N, C, H, W]`` (train and test sets merged into one pool, as
HtFLlib does) and normalised per batch by :meth:`Dataset.images`. Partitioning replays HtFLlib's
Dirichlet label-skew draw exactly (:func:`dirichlet_partition`), then each client's data is split
75 % / 25 % into train / test (:func:`split_train_test`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import pickle
import re
import stat
import zlib
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
    "check_data_source",
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
    """One-line, user-facing error about data: what is wrong, with which path, how to fix it.

    Line breaks in the message (say from a path or a library's text) are escaped as ``\\n``.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text)


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
# Sources, folders and files: where the data is read from and whether it can be
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """The folder a dataset is read from and how it was named (explicitly or by default)."""

    root: Path
    label: str  # "data_dir=/x", "TINYPROTO_DATA=/x" or "the default folder ~/.cache/tinyproto"
    explicit: bool

    @property
    def drop(self) -> str:
        """How to stop using this explicit source."""
        if self.label.startswith(ENV_VAR):
            return f"unset {ENV_VAR}"
        return "leave data_dir unset (no --data-dir)"


def _explicit_source(data_dir: str | os.PathLike | None) -> _Source | None:
    """``data_dir`` if given, else $TINYPROTO_DATA if set, else None (implicit sources)."""
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise DataError(f"data_dir={data_dir!r} is not a path; give a folder path as text")
        text = os.fspath(data_dir)
        if not str(text).strip():
            raise DataError(
                "data_dir is empty; give the folder that holds the data (--data-dir PATH), "
                "or leave it unset to use the default sources"
            )
        root = _expand(text, "data_dir")
        return _Source(root, f"data_dir={root}", True)
    env = os.environ.get(ENV_VAR)
    if env:
        root = _expand(env, ENV_VAR)
        return _Source(root, f"{ENV_VAR}={root}", True)
    return None


def _expand(text: str, what: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise DataError(
            f"{what}={text}: cannot expand '~' (no such user); give a full path"
        ) from None


def _source(data_dir: str | os.PathLike | None) -> _Source:
    """The explicit source, else the default folder (``~/.cache/tinyproto``)."""
    src = _explicit_source(data_dir)
    if src is not None:
        return src
    root = DEFAULT_CACHE.expanduser()
    return _Source(root, f"the default folder {root}", False)


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a folder, or None when it can."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is a broken symbolic link" if path.is_symlink() else "does not exist"
    except PermissionError:
        return "cannot be reached (permission denied on a folder above it)"
    except OSError as e:
        return f"cannot be reached ({e.strerror or type(e).__name__})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder (it is a file)" if stat.S_ISREG(st.st_mode) else "is not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "is not readable (permission denied; chmod a+rx it)"
    return None


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file, or None when it can (nothing is read)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is a broken symbolic link" if path.is_symlink() else "is missing"
    except PermissionError:
        return "cannot be reached (permission denied on its folder)"
    except OSError as e:
        return f"cannot be reached ({e.strerror or type(e).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied; chmod a+r it)"
    return None


def _os_problem(e: OSError) -> str:
    """A short reason for an OSError met while reading a file."""
    if isinstance(e, PermissionError):
        return "permission denied; make it readable (chmod a+r) or use another copy"
    if isinstance(e, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(e, FileNotFoundError):
        return "it is missing (removed while loading?)"
    return f"{e.strerror or e or type(e).__name__}; check the disk and the file"


def _require_root(src: _Source, pretty: str, fix: str) -> None:
    """An explicit source must be an existing, readable folder (``fix`` says how to fill it)."""
    problem = _folder_problem(src.root)
    if problem == "does not exist":
        raise DataError(f"{pretty}: {src.label} does not exist; {fix}")
    if problem is not None:
        raise DataError(
            f"{pretty}: {src.label} {problem}; give a readable folder that holds the data, "
            f"or {src.drop}"
        )


def _read_bytes(path: Path, limit: int = 64 << 20) -> bytes:
    """Read a file, decompressing ``.gz`` (at most ``limit`` bytes); errors name the file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:  # gzip.BadGzipFile is an OSError too
        if isinstance(e, gzip.BadGzipFile):
            why = f"not a valid gzip file ({e})"
        else:
            why = _os_problem(e)
        raise DataError(f"cannot read {path}: {why}") from None
    except EOFError:
        raise DataError(
            f"cannot read {path}: the compressed stream ends early (truncated file); delete it "
            "and fetch it again"
        ) from None
    except zlib.error as e:
        raise DataError(
            f"cannot read {path}: corrupted compressed data ({e}); delete it and fetch it again"
        ) from None
    if len(data) > limit:
        raise DataError(
            f"{path} holds more than {limit >> 20} MiB of data; it is not Fashion-MNIST"
        )
    return data


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"cannot read {path}: {_os_problem(e)}") from None
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
    """Parse an unsigned-byte idx file (magic 0x00 0x00 0x08 <ndim>, big-endian uint32 dims).

    Anything else (other element types, other ndim, a short or over-long body) is refused.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an idx file (bad magic number {data[:4].hex() or 'empty'}); "
            "the file is corrupted or not Fashion-MNIST"
        )
    if data[2] != 0x08:
        raise DataError(
            f"{path} holds elements of type 0x{data[2]:02x} ({_IDX_DTYPES[data[2]]}), expected "
            "0x08 (unsigned byte); the file is not Fashion-MNIST"
        )
    if data[3] != ndim:
        raise DataError(
            f"{path} has {data[3]} dimensions, expected {ndim}; the file is not Fashion-MNIST"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header incomplete); fetch the file again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    need = header + math.prod(dims)
    if len(data) < need:
        raise DataError(
            f"{path} is truncated: header says {need} bytes, file has {len(data)}; "
            "fetch the file again"
        )
    if len(data) > need:
        raise DataError(
            f"{path} has {len(data) - need} extra bytes after the {dims} array its header "
            "announces; the file is corrupted or not Fashion-MNIST, fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, count=need - header, offset=header).reshape(dims)


def _fmnist_scan(folder: Path) -> tuple[dict[str, Path], list[str], list[str]]:
    """Find the four idx files in ``folder``: (name -> path, missing names, problems).

    For each name the plain file wins over ``name.gz`` whenever it exists in any form; the
    ``.gz`` beside it is then never read, not even when the plain file is damaged.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    problems: list[str] = []
    for name in FMNIST_FILES.values():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if os.path.lexists(candidate):
                why = _file_problem(candidate)
                if why is None:
                    found[name] = candidate
                else:
                    problems.append(f"{candidate} {why}")
                break
        else:
            missing.append(name)
    return found, missing, problems


def _fmnist_pick(folders: Sequence[Path], tail: str) -> tuple[Path, dict[str, Path]] | None:
    """The first of ``folders`` holding any idx file, which must then hold all four readable
    ones (else DataError); None when none of them holds any."""
    for folder in folders:
        if not os.path.lexists(folder):
            continue
        problem = _folder_problem(folder)
        if problem is not None:
            raise DataError(f"Fashion-MNIST: {folder} {problem}{tail}")
        found, missing, problems = _fmnist_scan(folder)
        if problems:
            raise DataError(f"Fashion-MNIST: {'; '.join(problems)}; replace the file{tail}")
        if not found:
            continue
        if missing:
            names = ", ".join(f"{m}[.gz]" for m in missing)
            raise DataError(
                f"Fashion-MNIST: {folder} lacks {names} (the other idx files are there); "
                f"copy the missing file(s) into {folder}{tail}"
            )
        return folder, found
    return None


def _fmnist_candidates(base: Path) -> list[Path]:
    return [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]


def _fmnist_files_in(folder: Path) -> dict[str, Path] | None:
    """The four idx files (plain or .gz) in ``folder`` if all are there and readable, else None."""
    found, missing, problems = _fmnist_scan(folder)
    return None if missing or problems else found


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


def _fmnist_explicit_fix(src: _Source) -> str:
    return (
        f'put the four idx files there (for example: python -c "import torchvision; '
        f"torchvision.datasets.FashionMNIST('{src.root}', download=True)\" writes them to "
        f"{src.root / 'FashionMNIST' / 'raw'}), or {src.drop} to use the default sources "
        "(Debian's package: apt-get install dataset-fashion-mnist; then a torchvision download)"
    )


def _fmnist_explicit(src: _Source) -> tuple[Path, dict[str, Path]]:
    """Check an explicit Fashion-MNIST source (nothing decoded); never falls back elsewhere."""
    _require_root(src, "Fashion-MNIST", f"create it and {_fmnist_explicit_fix(src)}")
    candidates = _fmnist_candidates(src.root)
    hit = _fmnist_pick(candidates, f", or {src.drop} to use the default sources")
    if hit is None:
        names = ", ".join(f"{n}[.gz]" for n in FMNIST_FILES.values())
        others = ", ".join(str(c) for c in candidates[1:])
        raise DataError(
            f"Fashion-MNIST: no idx files in {src.label} (nor in {others}); expected {names}; "
            f"{_fmnist_explicit_fix(src)}"
        )
    return hit


def _fmnist_resolve(
    data_dir: str | os.PathLike | None, download: bool
) -> tuple[Path, dict[str, Path], str]:
    """(folder, name -> file, description) of the Fashion-MNIST source to read."""
    src = _explicit_source(data_dir)
    if src is not None:
        folder, files = _fmnist_explicit(src)
        return folder, files, f"{src.label} ({folder})"
    hit = _fmnist_pick([DEBIAN_FMNIST_DIR], "; reinstall Debian's package dataset-fashion-mnist")
    if hit is not None:
        return *hit, f"Debian package dataset-fashion-mnist ({DEBIAN_FMNIST_DIR})"
    root = DEFAULT_CACHE.expanduser()
    raw = root / "FashionMNIST" / "raw"
    tail = f"; delete {raw} and run again to download a fresh copy"
    hit = _fmnist_pick([raw], tail)
    if hit is not None:
        return *hit, f"torchvision download into {root} ({raw})"
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
    hit = _fmnist_pick([raw], tail)
    if hit is None:
        raise DataError(f"torchvision download left no idx files in {raw}; {_fmnist_howto()}")
    return *hit, f"torchvision download into {root} ({raw})"


def locate_fmnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Path, str]:
    """Find the Fashion-MNIST idx files; return (folder, one-line description of the source).

    An explicit source (``data_dir``, else $TINYPROTO_DATA) is authoritative: the files must be
    in it, its ``fashion-mnist/`` or its ``FashionMNIST/raw/`` subfolder, else DataError (no
    fallback, no download). Without one: Debian's ``dataset-fashion-mnist``, then a previous
    torchvision download into ``~/.cache/tinyproto``, then (``download``) a new one. A source
    holding some of the files must hold all four, readable; where both ``name`` and
    ``name.gz`` exist, the plain file is read.
    """
    folder, _, description = _fmnist_resolve(data_dir, download)
    return folder, description


def _load_fmnist(data_dir: str | os.PathLike | None, verify: bool) -> Dataset:
    folder, files, description = _fmnist_resolve(data_dir, download=True)
    arrays, paths = {}, {}
    for key, name in FMNIST_FILES.items():
        path = paths[key] = files[name]
        data = _read_bytes(path)
        arrays[key] = _parse_idx(data, path, 3 if key.endswith("images") else 1)
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
        ipath, lpath = paths[f"{split}_images"], paths[f"{split}_labels"]
        if imgs.shape[1:] != (28, 28):
            raise DataError(
                f"{ipath} holds {imgs.shape[1]}x{imgs.shape[2]} images, expected 28x28; "
                "the file is not Fashion-MNIST"
            )
        if imgs.shape[0] == 0:
            raise DataError(f"{ipath} holds no images; the file is truncated or not Fashion-MNIST")
        if labs.shape[0] != imgs.shape[0]:
            raise DataError(
                f"{lpath} holds {labs.shape[0]} labels but {ipath} holds {imgs.shape[0]} images; "
                "the two files do not belong together, fetch both again"
            )
        if labs.max() > 9:
            raise DataError(
                f"{lpath} holds label {int(labs.max())}, outside 0..9; "
                "the file is not Fashion-MNIST"
            )
    x = np.concatenate([arrays["train_images"], arrays["test_images"]])
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
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {_os_problem(e)}") from None
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


def _cifar_fix(name: str, src: _Source) -> str:
    folder_name, *_, pretty = _cifar_spec(name)
    cls = "CIFAR10" if name == "cifar10" else "CIFAR100"
    fix = (
        f"unpack the python version of {pretty} ({folder_name}/) into {src.root} (for example: "
        f"python -c \"import torchvision; torchvision.datasets.{cls}('{src.root}', "
        'download=True)")'
    )
    if src.explicit:
        return f"{fix}, or {src.drop} to use the default folder {DEFAULT_CACHE}"
    return f"{fix}, or pass data_dir / set {ENV_VAR} to the folder that contains {folder_name}/"


def _cifar_files(name: str, src: _Source) -> list[Path]:
    """Check the CIFAR folder of ``src`` (nothing decoded); return its batch files in order."""
    folder_name, md5s, *_, pretty = _cifar_spec(name)
    folder = src.root / folder_name
    problem = _folder_problem(folder)
    if problem is not None:
        raise DataError(f"{pretty}: {folder} {problem} (from {src.label}); {_cifar_fix(name, src)}")
    paths = [folder / f for f in md5s]
    problems = [f"{p} {why}" for p in paths if (why := _file_problem(p)) is not None]
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


def _load_cifar(name: str, data_dir: str | os.PathLike | None, verify: bool) -> Dataset:
    folder_name, md5s, label_key, k, pretty = _cifar_spec(name)
    src = _source(data_dir)
    if src.explicit:
        _require_root(src, pretty, _cifar_fix(name, src))
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
            got, want = _file_md5(path), md5s[path.name]
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


# --------------------------------------------------------------------------------------------
# TinyImageNet
# --------------------------------------------------------------------------------------------

_WNID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


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
            raise DataError(
                f"cannot decode image {paths[i]} ({type(e).__name__}: {str(e)[:120]}); the file is "
                "corrupted, re-unzip the set"
            ) from None

    pool = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1))
    try:
        for _ in pool.map(work, range(len(paths))):
            pass
    finally:  # on the first bad image, drop the queued ones instead of decoding them all
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _tinyimagenet_fix(src: _Source) -> str:
    fix = (
        f"download {TINYIMAGENET_URL} and unzip it into {src.root} (giving {TINYIMAGENET_FOLDER}/)"
    )
    if src.explicit:
        return f"{fix}, or {src.drop}"
    return f"{fix}, or pass data_dir / set {ENV_VAR} to the folder that contains it"


def _read_text(path: Path) -> str:
    """A UTF-8 text file of the TinyImageNet tree; errors name the file."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {_os_problem(e)}") from None
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at offset {e.start}); the file is "
            "corrupted, re-unzip the set"
        ) from None


def _tinyimagenet_layout(src: _Source) -> tuple[Path, list[str]]:
    """Check the ``tiny-imagenet-200`` tree under ``src`` (no image decoded).

    Returns the tree's folder and its sorted class ids (read from ``wnids.txt``).
    """
    base = src.root / TINYIMAGENET_FOLDER
    fix = _tinyimagenet_fix(src)
    problem = _folder_problem(base)
    if problem is not None:
        raise DataError(f"TinyImageNet: {base} {problem} (from {src.label}); {fix}")
    for folder in (base / "train", base / "val", base / "val" / "images"):
        if (problem := _folder_problem(folder)) is not None:
            raise DataError(f"TinyImageNet folder {folder} {problem}; {fix}")
    for path in (base / "wnids.txt", base / "val" / "val_annotations.txt"):
        if (problem := _file_problem(path)) is not None:
            raise DataError(f"TinyImageNet file {path} {problem}; {fix}")
    wnids_path = base / "wnids.txt"
    wnids = _read_text(wnids_path).split()
    if not wnids:
        raise DataError(f"{wnids_path} lists no class ids; the file is truncated, {fix}")
    seen: set[str] = set()
    for w in wnids:
        if not _WNID.match(w):
            raise DataError(
                f"{wnids_path} holds an invalid class id {w[:40]!r} (expected names like "
                f"n01443537); the file is corrupted, {fix}"
            )
        if w in seen:
            raise DataError(f"{wnids_path} lists class id {w!r} twice; the file is corrupted")
        seen.add(w)
    for w in wnids:
        folder = base / "train" / w / "images"
        if (problem := _folder_problem(folder)) is not None:
            raise DataError(f"TinyImageNet training folder {folder} {problem}; {fix}")
    return base, sorted(wnids)


def _tinyimagenet_cache(base: Path, wnids: list[str]) -> Dataset | None:
    """The decoded set from the cache, if it is newer than the tree and consistent; else None.

    The cache is tinyproto's own file: a damaged or stale one is rebuilt, never trusted.
    """
    cache = base / TINYIMAGENET_CACHE
    stamps = [base / "wnids.txt", base / "val" / "val_annotations.txt", base / "val" / "images"]
    stamps += [base / "train" / w / "images" for w in wnids]
    try:
        st = cache.stat()
        if not stat.S_ISREG(st.st_mode) or any(p.stat().st_mtime > st.st_mtime for p in stamps):
            return None
        with np.load(cache, allow_pickle=False) as z:
            if [str(w) for w in z["wnids"]] != wnids:
                return None
            y = z["y"]
            if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
                return None
            if y.min() < 0 or y.max() >= len(wnids):
                return None
            x = z["x"]
            if x.dtype != np.uint8 or x.shape != (y.shape[0], 3, 64, 64):
                return None
    except Exception:  # noqa: BLE001 - a bad cache is simply rebuilt
        return None
    return Dataset(
        name="tinyimagenet",
        x=torch.from_numpy(np.ascontiguousarray(x)),
        y=torch.from_numpy(y.astype(np.int64)),
        num_classes=len(wnids),
        source=f"{base} (cache {cache.name})",
    )


def _load_tinyimagenet(data_dir: str | os.PathLike | None) -> Dataset:
    src = _source(data_dir)
    if src.explicit:
        _require_root(src, "TinyImageNet", _tinyimagenet_fix(src))
    base, wnids = _tinyimagenet_layout(src)
    cached = _tinyimagenet_cache(base, wnids)
    if cached is not None:
        return cached
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for w in wnids:
        folder = base / "train" / w / "images"
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        except OSError as e:
            raise DataError(f"cannot list {folder}: {_os_problem(e)}") from None
        if not files:
            raise DataError(f"TinyImageNet training folder {folder} holds no JPEG images; re-unzip")
        paths.extend(files)
        labels.extend([index[w]] * len(files))
    ann = base / "val" / "val_annotations.txt"
    n_val = 0
    for lineno, line in enumerate(_read_text(ann).splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < 2 or not parts[0]:
            raise DataError(f"{ann} line {lineno}: expected 'file<TAB>wnid...', got {line[:60]!r}")
        name, wnid = parts[0], parts[1]
        if wnid not in index:
            raise DataError(
                f"{ann} line {lineno}: class id {wnid[:40]!r} is not in wnids.txt; the file is "
                "corrupted, re-unzip the set"
            )
        if name.startswith(".") or "\\" in name or Path(name).name != name:
            raise DataError(
                f"{ann} line {lineno}: {name[:60]!r} is not a plain image file name; the file "
                "is corrupted, re-unzip the set"
            )
        img = base / "val" / "images" / name
        if (problem := _file_problem(img)) is not None:
            raise DataError(
                f"TinyImageNet validation image {img} (listed in {ann} line {lineno}) {problem}; "
                "re-unzip the set"
            )
        paths.append(img)
        labels.append(index[wnid])
        n_val += 1
    if n_val == 0:
        raise DataError(f"{ann} lists no images; the file is truncated, re-unzip the set")
    x = _decode_jpegs(paths).transpose(0, 3, 1, 2).copy()
    y = np.asarray(labels, dtype=np.int64)
    tmp = base / f".{TINYIMAGENET_CACHE}.tmp.npz"
    try:  # cache atomically; a read-only folder just means no cache
        np.savez(tmp, x=x, y=y, wnids=np.asarray(wnids))
        os.replace(tmp, base / TINYIMAGENET_CACHE)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
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
    src = _explicit_source(data_dir)
    if src is None:
        return
    if dataset == "fmnist":
        _fmnist_explicit(src)
    elif dataset in ("cifar10", "cifar100"):
        _require_root(src, _cifar_spec(dataset)[-1], _cifar_fix(dataset, src))
        _cifar_files(dataset, src)
    else:
        _require_root(src, "TinyImageNet", _tinyimagenet_fix(src))
        _tinyimagenet_layout(src)


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
                ds = _load_fmnist(data_dir, verify)
            elif name in ("cifar10", "cifar100"):
                ds = _load_cifar(name, data_dir, verify)
            else:
                ds = _load_tinyimagenet(data_dir)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error, pickle.UnpicklingError, UnicodeDecodeError) as e:
            # a last net: every known file check above raises DataError itself
            where = getattr(e, "filename", None) or _source(data_dir).root
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
        # mod 2**32: RandomState's range; the same seeds as before for split_seed < 42949
        seed_i = (split_seed * 100003 + i) % 2**32
        train, test = split_train_test(part, train_fraction, seed=seed_i)
        clients.append(
            ClientSplit(
                train_idx=torch.from_numpy(train).to(device),
                test_idx=torch.from_numpy(test).to(device),
                train_counts=class_counts(labels[train], k),
                full_counts=class_counts(labels[part], k),
            )
        )
    return FederatedData(dataset=dataset, clients=clients, num_classes=k)
