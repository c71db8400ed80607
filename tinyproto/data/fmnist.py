"""Fashion-MNIST: the four idx files, from an explicit folder, Debian's package or torchvision.

An explicit source (``data_dir`` / ``$TINYPROTO_DATA``) is authoritative. Without one the files
come from Debian's ``dataset-fashion-mnist`` (:data:`DEBIAN_FMNIST_DIR`), then a previous
torchvision download into the default folder, then a new download. The idx parser accepts only
what Fashion-MNIST is (unsigned bytes, the announced shape, no extra bytes).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tinyproto.data.base import (
    ENV_VAR,
    DataError,
    Dataset,
    Source,
    default_cache,
    explicit_source,
    file_problem,
    folder_problem,
    read_bytes,
    require_root,
)

DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # read at call time (tests move it)

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
                why = file_problem(candidate)
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
        problem = folder_problem(folder)
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


def _fmnist_explicit_fix(src: Source) -> str:
    return (
        f'put the four idx files there (for example: python -c "import torchvision; '
        f"torchvision.datasets.FashionMNIST('{src.root}', download=True)\" writes them to "
        f"{src.root / 'FashionMNIST' / 'raw'}), or {src.drop} to use the default sources "
        "(Debian's package: apt-get install dataset-fashion-mnist; then a torchvision download)"
    )


def check_fmnist(src: Source) -> tuple[Path, dict[str, Path]]:
    """Check an explicit Fashion-MNIST source (nothing decoded); never falls back elsewhere."""
    require_root(src, "Fashion-MNIST", f"create it and {_fmnist_explicit_fix(src)}")
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
    src = explicit_source(data_dir)
    if src is not None:
        folder, files = check_fmnist(src)
        return folder, files, f"{src.label} ({folder})"
    hit = _fmnist_pick([DEBIAN_FMNIST_DIR], "; reinstall Debian's package dataset-fashion-mnist")
    if hit is not None:
        return *hit, f"Debian package dataset-fashion-mnist ({DEBIAN_FMNIST_DIR})"
    root = default_cache().expanduser()
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


def load_fmnist(data_dir: str | os.PathLike | None, verify: bool) -> Dataset:
    """Train and test sets merged (uint8 1x28x28 images), read from :func:`locate_fmnist`'s source.

    With ``verify`` each decompressed idx file must match its published SHA-256.
    """
    folder, files, description = _fmnist_resolve(data_dir, download=True)
    arrays, paths = {}, {}
    for key, name in FMNIST_FILES.items():
        path = paths[key] = files[name]
        data = read_bytes(path)
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
