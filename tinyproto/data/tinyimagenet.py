"""TinyImageNet (``tiny-imagenet-200/``): JPEG tree decoded once, then cached as one .npz.

The layout is checked before any image is decoded (wnids.txt, train/<wnid>/images/,
val/val_annotations.txt); the cache is tinyproto's own file and is rebuilt, never trusted, when
it is stale or damaged. Every failure is one DataError naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tinyproto.data.base import (
    ENV_VAR,
    DataError,
    Dataset,
    Source,
    file_problem,
    folder_problem,
    os_problem,
    require_root,
    source,
)

TINYIMAGENET_FOLDER = "tiny-imagenet-200"
TINYIMAGENET_CACHE = "tinyproto_cache.npz"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

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


def _tinyimagenet_fix(src: Source) -> str:
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
        raise DataError(f"cannot read {path}: {os_problem(e)}") from None
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte at offset {e.start}); the file is "
            "corrupted, re-unzip the set"
        ) from None


def _tinyimagenet_layout(src: Source) -> tuple[Path, list[str]]:
    """Check the ``tiny-imagenet-200`` tree under ``src`` (no image decoded).

    Returns the tree's folder and its sorted class ids (read from ``wnids.txt``).
    """
    base = src.root / TINYIMAGENET_FOLDER
    fix = _tinyimagenet_fix(src)
    problem = folder_problem(base)
    if problem is not None:
        raise DataError(f"TinyImageNet: {base} {problem} (from {src.label}); {fix}")
    for folder in (base / "train", base / "val", base / "val" / "images"):
        if (problem := folder_problem(folder)) is not None:
            raise DataError(f"TinyImageNet folder {folder} {problem}; {fix}")
    for path in (base / "wnids.txt", base / "val" / "val_annotations.txt"):
        if (problem := file_problem(path)) is not None:
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
        if (problem := folder_problem(folder)) is not None:
            raise DataError(f"TinyImageNet training folder {folder} {problem}; {fix}")
    return base, sorted(wnids)


def check_tinyimagenet(src: Source) -> None:
    """Check an explicit TinyImageNet source: the tree, wnids.txt and the class folders."""
    require_root(src, "TinyImageNet", _tinyimagenet_fix(src))
    _tinyimagenet_layout(src)


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


def load_tinyimagenet(data_dir: str | os.PathLike | None) -> Dataset:
    """TinyImageNet train and validation sets as one pool (uint8 3x64x64), classes in sorted
    wnid order; decoded once, then read from the cache file beside the tree."""
    src = source(data_dir)
    if src.explicit:
        require_root(src, "TinyImageNet", _tinyimagenet_fix(src))
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
            raise DataError(f"cannot list {folder}: {os_problem(e)}") from None
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
        if (problem := file_problem(img)) is not None:
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
