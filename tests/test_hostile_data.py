"""Hostile data sources: every bad folder or file is refused with a one-line DataError naming it.

Each test writes tiny files in the real formats (idx, gzip-compressed idx, CIFAR python pickle
batches, a tiny ``tiny-imagenet-200`` tree) and damages one thing. The implicit Fashion-MNIST
sources (Debian's folder, the cache) point at a *valid* fake copy during every test, so a silent
fall-through from an explicit source would load data instead of raising, and fail the test.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import stat
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinyproto import data as D
from tinyproto.data import DataError, load_dataset
from tinyproto.data import base as data_base
from tinyproto.data import cifar as data_cifar
from tinyproto.data import fmnist as data_fmnist

FM_NAMES = list(D.FMNIST_FILES.values())
NOBODY = 65534


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def refused(fn, *needles) -> str:
    """Call fn; assert it raises exactly DataError, one line, mentioning every needle."""
    with pytest.raises(DataError) as e:
        fn()
    assert type(e.value) is DataError
    msg = str(e.value)
    assert msg and "\n" not in msg and "\r" not in msg, msg
    for n in needles:
        assert str(n) in msg, f"{n!r} not in {msg!r}"
    return msg


def idx_bytes(arr: np.ndarray, code: int = 0x08, ndim: int | None = None) -> bytes:
    arr = np.asarray(arr)
    ndim = arr.ndim if ndim is None else ndim
    header = bytes([0, 0, code, ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    dtype = {0x08: np.uint8, 0x0D: ">f4"}[code]
    return header + arr.astype(dtype).tobytes()


def fake_fmnist(folder: Path, gz: bool = False, n_train: int = 20, n_test: int = 10) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        blobs = {
            f"{split}-images-idx3-ubyte": idx_bytes(rng.randint(0, 256, (n, 28, 28))),
            f"{split}-labels-idx1-ubyte": idx_bytes(np.arange(n) % 10),
        }
        for name, blob in blobs.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)
    return folder


def load_fm(folder: Path) -> D.Dataset:
    return load_dataset("fmnist", str(folder), verify=False)


def fake_cifar10(root: Path, per_batch: int = 2) -> Path:
    folder = root / D.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for b, name in enumerate(D.CIFAR10_MD5):
        batch = {
            b"data": np.full((per_batch, 3072), b, dtype=np.uint8),
            b"labels": [(b + i) % 10 for i in range(per_batch)],
        }
        write_pickle(folder / name, batch)
    return folder


def write_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def fake_tinyimagenet(root: Path) -> Path:
    from PIL import Image

    base = root / D.TINYIMAGENET_FOLDER
    wnids = ["n02", "n01"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, w in enumerate(wnids):
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), 50 * k, np.uint8)).save(folder / f"{w}_0.JPEG")
        Image.fromarray(np.full((64, 64, 3), 90 + k, np.uint8)).save(
            base / "val" / "images" / f"val_{k}.JPEG"
        )
        lines.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, tmp_path_factory):
    """No caller env; downloads refused and recorded; the implicit sources hold VALID data."""
    monkeypatch.delenv("TINYPROTO_DATA", raising=False)
    calls: list[tuple] = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("offline (test)")

    monkeypatch.setattr(data_fmnist, "_torchvision_download_fmnist", offline)
    monkeypatch.setattr(data_cifar, "_torchvision_download_cifar", offline)
    decoy = tmp_path_factory.mktemp("decoy")
    monkeypatch.setattr(data_fmnist, "DEBIAN_FMNIST_DIR", fake_fmnist(decoy / "debian"))
    monkeypatch.setattr(data_base, "DEFAULT_CACHE", decoy / "cache")
    fake_fmnist(decoy / "cache" / "FashionMNIST" / "raw")
    fake_cifar10(decoy / "cache")
    yield calls
    assert not calls, f"a download was attempted: {calls}"


@pytest.fixture
def world_tmp():
    """A folder user 'nobody' can traverse (tmp_path's parents are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="tinyproto-hostile-"))
    d.chmod(0o755)
    yield d

    def unlock(p: Path) -> None:
        p.chmod(0o755)
        for q in p.iterdir():
            if q.is_symlink():
                continue
            if q.is_dir():
                unlock(q)
            else:
                q.chmod(0o644)

    unlock(d)
    shutil.rmtree(d)


def _run_as_nobody(fn) -> tuple[str, str]:
    """Run fn() in a forked child with uid/gid nobody; return (outcome, message)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        out = "ERROR|child failed"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                fn()
                out = "OK|"
            except BaseException as e:  # noqa: BLE001 - report whatever happened
                out = f"{type(e).__name__}|{e}"
        finally:
            os.write(w, out.encode("utf-8", "replace")[:60000])
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    kind, _, msg = b"".join(chunks).decode().partition("|")
    return kind, msg


class _Skip(Exception):
    """Raised in the child when even user nobody can read the target."""


def _skip():
    raise _Skip


def refused_unreadable(target: Path, fn, *needles) -> str:
    """chmod 000 target, then call fn as an unprivileged user; it must raise DataError."""
    target.chmod(0)
    if os.geteuid() == 0:
        if not hasattr(os, "fork"):
            pytest.skip("running as root without fork: cannot drop privileges to test")
        kind, msg = _run_as_nobody(lambda: (os.access(target, os.R_OK) and _skip()) or fn())
        if kind == "_Skip":
            pytest.skip("permission bits not enforced even for user nobody")
    else:
        if os.access(target, os.R_OK):
            pytest.skip("permission bits not enforced for this user (capabilities?)")
        try:
            fn()
            kind, msg = "OK", ""
        except Exception as e:  # noqa: BLE001
            kind, msg = type(e).__name__, str(e)
    assert kind == "DataError", f"{kind}: {msg}"
    assert msg and "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, f"{n!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------
# explicit sources are authoritative
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["fmnist", "cifar10", "cifar100", "tinyimagenet"])
def test_data_dir_missing(tmp_path, dataset):
    missing = tmp_path / "no" / "such"
    refused(lambda: load_dataset(dataset, str(missing), verify=False), missing, "does not exist")
    refused(lambda: D.check_data_source(dataset, str(missing)), missing)


@pytest.mark.parametrize("dataset", ["fmnist", "cifar10", "tinyimagenet"])
def test_data_dir_is_a_file(tmp_path, dataset):
    f = tmp_path / "data.txt"
    f.write_text("not a folder")
    refused(lambda: load_dataset(dataset, str(f), verify=False), f, "not a folder")
    refused(lambda: D.check_data_source(dataset, str(f)), f, "not a folder")


def test_data_dir_empty_string():
    refused(lambda: D.check_data_source("fmnist", ""), "data_dir")
    refused(lambda: load_dataset("fmnist", "", verify=False), "data_dir")


def test_data_dir_name_with_newline_stays_one_line(tmp_path):
    missing = tmp_path / "evil\nname"
    msg = refused(lambda: load_fm(missing), "evil\\nname")
    assert str(tmp_path) in msg


def test_data_dir_unknown_user_home():
    refused(lambda: D.check_data_source("fmnist", "~no-such-user-xyz/data"), "~no-such-user-xyz")


def test_env_var_missing_folder(tmp_path, monkeypatch):
    missing = tmp_path / "gone"
    monkeypatch.setenv("TINYPROTO_DATA", str(missing))
    for dataset in ("fmnist", "cifar10"):
        refused(lambda: load_dataset(dataset, verify=False), "TINYPROTO_DATA", missing)  # noqa: B023
        refused(lambda: D.check_data_source(dataset, None), "TINYPROTO_DATA", missing)  # noqa: B023
    refused(lambda: D.locate_fmnist(download=True), "TINYPROTO_DATA", missing)


def test_explicit_folder_without_files_never_falls_back(tmp_path):
    empty = tmp_path / "mine"
    empty.mkdir()
    # DEBIAN_FMNIST_DIR and DEFAULT_CACHE hold valid files (fixture): must not be used.
    assert data_fmnist._fmnist_files_in(data_fmnist.DEBIAN_FMNIST_DIR) is not None
    msg = refused(lambda: D.locate_fmnist(empty), empty, *FM_NAMES)
    assert str(data_fmnist.DEBIAN_FMNIST_DIR) not in msg.split(";")[0]
    refused(lambda: load_fm(empty), empty)
    refused(lambda: D.check_data_source("fmnist", str(empty)), empty, *FM_NAMES)
    refused(lambda: load_dataset("cifar10", str(empty), verify=False), empty, D.CIFAR10_FOLDER)


@pytest.mark.parametrize("name", FM_NAMES)
def test_fmnist_one_file_missing(tmp_path, name):
    folder = fake_fmnist(tmp_path / "fm", gz=True)
    (folder / f"{name}.gz").unlink()
    msg = refused(lambda: load_fm(folder), name, folder)
    assert all(n not in msg for n in FM_NAMES if n != name), msg
    refused(lambda: D.check_data_source("fmnist", str(folder)), name, folder)


def test_data_dir_unreadable(world_tmp):
    folder = fake_fmnist(world_tmp / "fm")
    refused_unreadable(folder, lambda: D.check_data_source("fmnist", str(folder)), folder)
    refused_unreadable(folder, lambda: load_fm(folder), folder)


def test_fmnist_file_unreadable(world_tmp):
    folder = fake_fmnist(world_tmp / "fm")
    target = folder / "t10k-images-idx3-ubyte"
    refused_unreadable(target, lambda: load_fm(folder), target, "permission")


def test_cifar_file_unreadable_with_checksum(world_tmp):
    fake_cifar10(world_tmp)
    target = world_tmp / D.CIFAR10_FOLDER / "data_batch_1"  # the first file checksummed
    refused_unreadable(
        target, lambda: load_dataset("cifar10", str(world_tmp), verify=True), target, "permission"
    )


def test_check_data_source_is_cheap_and_accepts_valid_trees(tmp_path):
    fm = fake_fmnist(tmp_path / "fm", gz=True)
    (fm / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage: only loading decodes")
    assert D.check_data_source("fmnist", str(fm)) is None
    fake_cifar10(tmp_path)
    assert D.check_data_source("cifar10", str(tmp_path)) is None
    fake_tinyimagenet(tmp_path)
    assert D.check_data_source("tinyimagenet", str(tmp_path)) is None
    assert D.check_data_source("synthetic", str(tmp_path / "ignored")) is None
    assert D.check_data_source("fmnist", None) is None  # implicit source: loading decides


# ------------------------------------------------------------------------------------------
# Fashion-MNIST files
# ------------------------------------------------------------------------------------------


def test_fmnist_truncated_gzip(tmp_path):
    folder = fake_fmnist(tmp_path, gz=True)
    target = folder / "train-images-idx3-ubyte.gz"
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 2])
    refused(lambda: load_fm(folder), target)


def test_fmnist_gzip_of_garbage(tmp_path):
    folder = fake_fmnist(tmp_path, gz=True)
    target = folder / "train-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(os.urandom(300)))
    refused(lambda: load_fm(folder), target)


def test_fmnist_corrupted_deflate_stream(tmp_path):
    folder = fake_fmnist(tmp_path, gz=True)
    target = folder / "train-labels-idx1-ubyte.gz"
    # a gzip header followed by a deflate block of the reserved type 3: zlib rejects it
    blob = gzip.compress(b"x")[:10] + b"\x07" + b"\x00" * 40
    with pytest.raises(zlib.error):
        zlib.decompress(blob[10:], -15)
    target.write_bytes(blob)
    refused(lambda: load_fm(folder), target)


def test_fmnist_not_gzip_at_all(tmp_path):
    folder = fake_fmnist(tmp_path, gz=True)
    target = folder / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(b"this is not gzip data at all" * 10)
    refused(lambda: load_fm(folder), target)


def test_fmnist_bad_magic(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "t10k-labels-idx1-ubyte"
    target.write_bytes(b"\x01\x02" + target.read_bytes()[2:])
    refused(lambda: load_fm(folder), target, "magic")


def test_fmnist_empty_file(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(b"")
    refused(lambda: load_fm(folder), target)


def test_fmnist_wrong_dtype_byte(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "t10k-labels-idx1-ubyte"
    target.write_bytes(idx_bytes(np.arange(10) % 10, code=0x0D))  # big-endian float32 labels
    refused(lambda: load_fm(folder), target, "0x0d")


def test_fmnist_wrong_ndim(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(idx_bytes(np.zeros((20, 784), np.uint8)))
    refused(lambda: load_fm(folder), target, "dimensions")


def test_fmnist_truncated_body(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-1])
    refused(lambda: load_fm(folder), target, "truncated")


def test_fmnist_trailing_bytes(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes() + b"\x00" * 7)
    refused(lambda: load_fm(folder), target, "extra")


def test_fmnist_header_larger_than_file(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-labels-idx1-ubyte"
    target.write_bytes(bytes([0, 0, 8, 1]) + (2**32 - 1).to_bytes(4, "big") + b"\x00" * 8)
    refused(lambda: load_fm(folder), target, "truncated")


def test_fmnist_label_out_of_range(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "train-labels-idx1-ubyte"
    labels = np.arange(20) % 10
    labels[3] = 10
    target.write_bytes(idx_bytes(labels))
    refused(lambda: load_fm(folder), target, "0..9")


def test_fmnist_mismatched_counts(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "t10k-labels-idx1-ubyte"
    target.write_bytes(idx_bytes(np.arange(9) % 10))  # 10 images, 9 labels
    refused(lambda: load_fm(folder), target)


def test_fmnist_wrong_image_size(tmp_path):
    folder = fake_fmnist(tmp_path)
    target = folder / "t10k-images-idx3-ubyte"
    target.write_bytes(idx_bytes(np.zeros((10, 32, 32), np.uint8)))
    refused(lambda: load_fm(folder), target, "28x28")


def test_fmnist_no_samples(tmp_path):
    folder = fake_fmnist(tmp_path)
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((0,), np.uint8)))
    refused(lambda: load_fm(folder), "t10k-")


def test_fmnist_folder_where_file_expected(tmp_path):
    folder = fake_fmnist(tmp_path / "fm", gz=True)
    target = folder / "train-labels-idx1-ubyte.gz"
    target.unlink()
    target.mkdir()
    refused(lambda: load_fm(folder), target, "not a file")
    refused(lambda: D.check_data_source("fmnist", str(folder)), target, "not a file")


def test_fmnist_broken_symlink(tmp_path):
    folder = fake_fmnist(tmp_path / "fm")
    target = folder / "t10k-images-idx3-ubyte"
    target.unlink()
    target.symlink_to(tmp_path / "nowhere")
    refused(lambda: load_fm(folder), target, "link")
    refused(lambda: D.check_data_source("fmnist", str(folder)), target, "link")


def test_fmnist_fifo_instead_of_file(tmp_path):
    folder = fake_fmnist(tmp_path / "fm")
    target = folder / "train-labels-idx1-ubyte"
    target.unlink()
    os.mkfifo(target)  # opening it would block forever
    refused(lambda: load_fm(folder), target, "not a regular file")


def test_fmnist_gzip_bomb(tmp_path):
    folder = fake_fmnist(tmp_path / "fm", gz=True)
    target = folder / "train-labels-idx1-ubyte.gz"
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container
    zeros = bytes(1 << 20)
    target.write_bytes(b"".join(comp.compress(zeros) for _ in range(80)) + comp.flush())
    refused(lambda: load_fm(folder), target, "MiB")


def test_fmnist_plain_and_gz_side_by_side(tmp_path):
    """Documented rule: the plain file wins; a .gz beside it is never read (no fallback)."""
    folder = fake_fmnist(tmp_path / "fm")
    for name in FM_NAMES:  # .gz copies that are garbage: ignored
        (folder / f"{name}.gz").write_bytes(b"garbage")
    assert load_fm(folder).x.shape == (30, 1, 28, 28)
    fake_fmnist(tmp_path / "fm", gz=True)  # now valid .gz copies
    target = folder / "train-labels-idx1-ubyte"
    target.write_bytes(b"\x01" * 30)  # damaged plain file: refused, never replaced by the .gz
    refused(lambda: load_fm(folder), target)


def test_fmnist_checksum_mismatch_names_file(tmp_path):
    folder = fake_fmnist(tmp_path, gz=True)
    refused(
        lambda: load_dataset("fmnist", str(folder), verify=True),
        "checksum mismatch",
        folder / "train-images-idx3-ubyte.gz",
    )


def test_fmnist_implicit_debian_corrupt_is_refused_not_skipped(tmp_path, monkeypatch):
    debian = fake_fmnist(tmp_path / "debian", gz=True)
    target = debian / "train-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(b"junk" * 10))
    monkeypatch.setattr(data_fmnist, "DEBIAN_FMNIST_DIR", debian)
    refused(lambda: load_dataset("fmnist", verify=False), target)


def test_cli_data_missing_dir(tmp_path, capsys):
    from tinyproto.cli import main

    missing = tmp_path / "absent"
    assert main(["data", "--data-dir", str(missing)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], err
    assert "Traceback" not in err


def test_cli_data_empty_dir(tmp_path, capsys):
    from tinyproto.cli import main

    assert main(["data", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path) in lines[0] and FM_NAMES[0] in lines[0], err


# ------------------------------------------------------------------------------------------
# CIFAR
# ------------------------------------------------------------------------------------------


def load_c10(root: Path, verify: bool = False) -> D.Dataset:
    return load_dataset("cifar10", str(root), verify=verify)


def test_cifar_fake_loads(tmp_path):
    fake_cifar10(tmp_path)
    assert load_c10(tmp_path).x.shape == (12, 3, 32, 32)


def test_cifar_truncated_pickle(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_3"
    target.write_bytes(target.read_bytes()[:60])
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_empty_file(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "test_batch"
    target.write_bytes(b"")
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_wrong_shapes(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_1"
    write_pickle(target, {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]})
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_label_count_and_range(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_5"
    write_pickle(target, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    refused(lambda: load_c10(tmp_path), target)
    write_pickle(target, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    refused(lambda: load_c10(tmp_path), target, "0..9")
    write_pickle(target, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1.5]})
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_pixels_not_uint8(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_2"
    write_pickle(target, {b"data": np.full((2, 3072), 300, np.int64), b"labels": [0, 1]})
    refused(lambda: load_c10(tmp_path), target, "uint8")
    write_pickle(target, {b"data": [[300] * 3072] * 2, b"labels": [0, 1]})
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_not_a_dict(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_4"
    write_pickle(target, [1, 2, 3])
    refused(lambda: load_c10(tmp_path), target)


def test_cifar_missing_batch(tmp_path):
    folder = fake_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    refused(lambda: load_c10(tmp_path), folder / "data_batch_4")
    refused(lambda: D.check_data_source("cifar10", str(tmp_path)), "data_batch_4", folder)


def test_cifar_batch_is_a_folder(tmp_path):
    folder = fake_cifar10(tmp_path)
    target = folder / "data_batch_1"
    target.unlink()
    target.mkdir()
    refused(lambda: load_c10(tmp_path, verify=True), target, "not a file")
    refused(lambda: D.check_data_source("cifar10", str(tmp_path)), target, "not a file")


def test_cifar_forbidden_class_is_never_called(tmp_path):
    folder = fake_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    target = folder / "data_batch_3"
    write_pickle(target, {b"data": Evil(), b"labels": [0]})
    refused(lambda: load_c10(tmp_path), target, "system")
    assert not marker.exists()


def test_cifar_explicit_folder_missing_no_download(tmp_path):
    # the fixture fails the test if a download is attempted; the cache holds a valid copy
    (tmp_path / "other").mkdir()
    refused(lambda: load_c10(tmp_path), tmp_path / D.CIFAR10_FOLDER)
    refused(lambda: D.check_data_source("cifar100", str(tmp_path)), tmp_path / D.CIFAR100_FOLDER)


def test_cifar100_missing_label_key(tmp_path):
    folder = tmp_path / D.CIFAR100_FOLDER
    folder.mkdir()
    for name in ("train", "test"):
        write_pickle(folder / name, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    refused(lambda: load_dataset("cifar100", str(tmp_path), verify=False), "fine_labels")


# ------------------------------------------------------------------------------------------
# TinyImageNet
# ------------------------------------------------------------------------------------------


def load_tin(root: Path) -> D.Dataset:
    return load_dataset("tinyimagenet", str(root))


def test_tinyimagenet_fake_loads(tmp_path):
    fake_tinyimagenet(tmp_path)
    ds = load_tin(tmp_path)
    assert ds.x.shape == (4, 3, 64, 64) and ds.y.tolist() == [0, 1, 1, 0]


def test_tinyimagenet_corrupt_jpeg(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    target = base / "train" / "n01" / "images" / "n01_0.JPEG"
    target.write_bytes(target.read_bytes()[:120])
    refused(lambda: load_tin(tmp_path), target)


def test_tinyimagenet_jpeg_is_text(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    target = base / "val" / "images" / "val_1.JPEG"
    target.write_text("hello\nworld\n")
    refused(lambda: load_tin(tmp_path), target)


def test_tinyimagenet_missing_val_annotations(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    target = base / "val" / "val_annotations.txt"
    target.unlink()
    refused(lambda: load_tin(tmp_path), target)
    refused(lambda: D.check_data_source("tinyimagenet", str(tmp_path)), target)


def test_tinyimagenet_missing_train_folder(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    shutil.rmtree(base / "train" / "n02")
    refused(lambda: load_tin(tmp_path), base / "train" / "n02")
    refused(lambda: D.check_data_source("tinyimagenet", str(tmp_path)), base / "train" / "n02")


def test_tinyimagenet_bad_annotation_line(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    target = base / "val" / "val_annotations.txt"
    target.write_text("val_0.JPEG n01 0 0 63 63\n")  # spaces, not tabs
    refused(lambda: load_tin(tmp_path), target, "line 1")
    target.write_text("val_0.JPEG\tn99\t0\t0\t63\t63\n")  # unknown wnid
    refused(lambda: load_tin(tmp_path), target, "line 1")


def test_tinyimagenet_annotation_path_escape(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    shutil.copy(base / "val" / "images" / "val_0.JPEG", tmp_path / "outside.JPEG")
    target = base / "val" / "val_annotations.txt"
    target.write_text("../../../outside.JPEG\tn01\t0\t0\t63\t63\n")
    refused(lambda: load_tin(tmp_path), target, "line 1")


def test_tinyimagenet_text_files_not_utf8(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    ann = base / "val" / "val_annotations.txt"
    ann.write_bytes(b"val_0.JPEG\tn01\t\xff\xfe\n")
    refused(lambda: load_tin(tmp_path), ann, "UTF-8")
    wnids = base / "wnids.txt"
    wnids.write_bytes(b"n01\n\xff\xfen02\n")
    refused(lambda: load_tin(tmp_path), wnids, "UTF-8")
    refused(lambda: D.check_data_source("tinyimagenet", str(tmp_path)), wnids, "UTF-8")


def test_tinyimagenet_wnids_bad_content(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    wnids = base / "wnids.txt"
    for text in ("", "n01\nn01\nn02\n", "n01\n../n02\n"):
        wnids.write_text(text)
        refused(lambda: load_tin(tmp_path), wnids)  # noqa: B023
    wnids.unlink()
    wnids.mkdir()
    refused(lambda: load_tin(tmp_path), wnids, "not a file")


def test_tinyimagenet_bad_cache_is_rebuilt_not_trusted(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    good = load_tin(tmp_path)
    cache = base / D.TINYIMAGENET_CACHE
    assert cache.is_file()
    future = cache.stat().st_mtime + 100
    # same wnids, but labels out of range and images of the wrong shape
    np.savez(
        cache,
        x=np.zeros((4, 3, 8, 8), np.uint8),
        y=np.array([0, 1, 7, 9]),
        wnids=np.asarray(["n01", "n02"]),
    )
    os.utime(cache, (future, future))
    again = load_tin(tmp_path)
    assert again.x.shape == good.x.shape and again.y.tolist() == good.y.tolist()
    cache.write_bytes(b"not an npz")
    os.utime(cache, (future, future))
    assert load_tin(tmp_path).y.tolist() == good.y.tolist()


def test_tinyimagenet_stale_cache_after_edit(tmp_path):
    base = fake_tinyimagenet(tmp_path)
    load_tin(tmp_path)
    cache = base / D.TINYIMAGENET_CACHE
    past = cache.stat().st_mtime
    # an annotation file edited after the cache was written: the cache must not be used
    ann = base / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn02\t0\t0\t63\t63\n")
    os.utime(ann, (past + 50, past + 50))
    assert load_tin(tmp_path).y.tolist() == [0, 1, 1]


def test_permission_helper_modes_are_restorable(world_tmp):
    # guard for the helpers above: the world_tmp fixture cleans a 000 folder too
    d = world_tmp / "locked"
    d.mkdir()
    (d / "f").write_text("x")
    d.chmod(0)
    assert stat.S_IMODE(d.stat().st_mode) == 0
