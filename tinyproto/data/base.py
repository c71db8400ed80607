"""What every data source shares: the Dataset container, DataError, and careful file access.

Where data is read from (:func:`source`): ``data_dir`` if given, else ``$TINYPROTO_DATA`` if
set (both *explicit* and authoritative: never a fallback elsewhere), else the default folder
``~/.cache/tinyproto``. The helpers below say why a folder or file cannot be used, without
reading it, so that every failure becomes one line naming the path.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tinyproto.config.profiles import NORMALISE_ONCE_MAX_BYTES

ENV_VAR = "TINYPROTO_DATA"
DEFAULT_CACHE = Path("~/.cache/tinyproto")  # read at call time: tests point it elsewhere


class DataError(Exception):
    """One-line, user-facing error about data: what is wrong, with which path, how to fix it.

    Line breaks in the message (say from a path or a library's text) are escaped as ``\\n``.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text)


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

    # normalised float32 copy of every image, made once by ``prepared`` (None: per batch)
    normalised: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to(self, device: torch.device | str) -> Dataset:
        """Return a copy with ``x`` and ``y`` on ``device`` (no normalised copy)."""
        return replace(self, x=self.x.to(device), y=self.y.to(device), normalised=None)

    def prepared(self, max_bytes: int = NORMALISE_ONCE_MAX_BYTES) -> Dataset:
        """A copy that keeps every image normalised as float32 where it fits ``max_bytes``
        (4 bytes per pixel): batches are then one gather, no conversion per step. The values
        are the ones ``images`` computes per batch, bit for bit (same element-wise ops)."""
        if 4 * self.x.numel() > max_bytes:
            return self
        return replace(self, normalised=normalise(self.x))

    def sample_bytes(self) -> int:
        """Bytes of one image as ``images`` returns it (float32)."""
        return 4 * (self.x[0].numel() if len(self) else 0)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """float32 batch for indices ``idx``, normalised as HtFLlib does: (x/255 - 0.5)/0.5."""
        if self.normalised is not None:
            return self.normalised[idx]
        return normalise(self.x[idx])


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]: (x/255 - 0.5)/0.5 as HtFLlib, computed x/127.5 - 1."""
    return x.float().div_(127.5).sub_(1.0)


# --------------------------------------------------------------------------------------------
# Sources: where a dataset is read from
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
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


def default_cache() -> Path:
    """The default data folder, unexpanded (``DEFAULT_CACHE`` as it is now)."""
    return DEFAULT_CACHE


def explicit_source(data_dir: str | os.PathLike | None) -> Source | None:
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
        return Source(root, f"data_dir={root}", True)
    env = os.environ.get(ENV_VAR)
    if env:
        root = _expand(env, ENV_VAR)
        return Source(root, f"{ENV_VAR}={root}", True)
    return None


def _expand(text: str, what: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise DataError(
            f"{what}={text}: cannot expand '~' (no such user); give a full path"
        ) from None


def source(data_dir: str | os.PathLike | None) -> Source:
    """The explicit source, else the default folder (``~/.cache/tinyproto``)."""
    src = explicit_source(data_dir)
    if src is not None:
        return src
    root = DEFAULT_CACHE.expanduser()
    return Source(root, f"the default folder {root}", False)


# --------------------------------------------------------------------------------------------
# Folders and files: whether they can be read, and reading them with errors that name them
# --------------------------------------------------------------------------------------------


def folder_problem(path: Path) -> str | None:
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


def file_problem(path: Path) -> str | None:
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


def os_problem(e: OSError) -> str:
    """A short reason for an OSError met while reading a file."""
    if isinstance(e, PermissionError):
        return "permission denied; make it readable (chmod a+r) or use another copy"
    if isinstance(e, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(e, FileNotFoundError):
        return "it is missing (removed while loading?)"
    return f"{e.strerror or e or type(e).__name__}; check the disk and the file"


def require_root(src: Source, pretty: str, fix: str) -> None:
    """An explicit source must be an existing, readable folder (``fix`` says how to fill it)."""
    problem = folder_problem(src.root)
    if problem == "does not exist":
        raise DataError(f"{pretty}: {src.label} does not exist; {fix}")
    if problem is not None:
        raise DataError(
            f"{pretty}: {src.label} {problem}; give a readable folder that holds the data, "
            f"or {src.drop}"
        )


def read_bytes(path: Path, limit: int = 64 << 20) -> bytes:
    """Read a file, decompressing ``.gz`` (at most ``limit`` bytes); errors name the file."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:  # gzip.BadGzipFile is an OSError too
        if isinstance(e, gzip.BadGzipFile):
            why = f"not a valid gzip file ({e})"
        else:
            why = os_problem(e)
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


def file_md5(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks; errors name the file."""
    h = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"cannot read {path}: {os_problem(e)}") from None
    return h.hexdigest()
