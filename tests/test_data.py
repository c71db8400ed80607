"""Tests for tinyproto.data: loaders on real-format files, partitioning, splits."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyproto import data as D
from tinyproto.data import (
    DATASETS,
    DataError,
    class_counts,
    dirichlet_partition,
    htfllib_least_samples,
    load_dataset,
    locate_fmnist,
    make_federated,
    make_synthetic,
    split_train_test,
)
from tinyproto.data import base as data_base
from tinyproto.data import cifar as data_cifar
from tinyproto.data import fmnist as data_fmnist

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
HAVE_DEBIAN = all((DEBIAN / f"{n}.gz").is_file() for n in D.FMNIST_FILES.values())


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Tests must not depend on the caller's TINYPROTO_DATA or reach the network."""
    monkeypatch.delenv("TINYPROTO_DATA", raising=False)

    def offline(*args, **kwargs):
        raise RuntimeError("offline (test)")

    monkeypatch.setattr(data_fmnist, "_torchvision_download_fmnist", offline)
    monkeypatch.setattr(data_cifar, "_torchvision_download_cifar", offline)


# ------------------------------------------------------------------------------------------
# reference re-implementation of HtFLlib's "dir" loop (written from the algorithm text)
# ------------------------------------------------------------------------------------------


def reference_dir(labels, num_clients, alpha, seed, least_samples, num_classes=None):
    rng = np.random.RandomState(seed)
    K = int(labels.max()) + 1 if num_classes is None else num_classes
    N = len(labels)
    min_size = 0
    idx_batch = None
    while min_size < least_samples:
        idx_batch = [[] for _ in range(num_clients)]
        for k in range(K):
            idx_k = np.where(labels == k)[0]
            rng.shuffle(idx_k)
            proportions = rng.dirichlet(np.repeat(alpha, num_clients))
            proportions = np.array(
                [p * (len(idx_j) < N / num_clients) for p, idx_j in zip(proportions, idx_batch)]
            )
            proportions = proportions / proportions.sum()
            proportions = (np.cumsum(proportions) * len(idx_k)).astype(int)[:-1]
            idx_batch = [
                idx_j + idx.tolist() for idx_j, idx in zip(idx_batch, np.split(idx_k, proportions))
            ]
            min_size = min([len(idx_j) for idx_j in idx_batch])
    return [np.array(b, dtype=np.int64) for b in idx_batch]


def skewed_labels(seed=0, n=3000, k=10):
    rng = np.random.RandomState(seed)
    return rng.randint(0, k, size=n).astype(np.int64)


# ------------------------------------------------------------------------------------------
# Partition
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,k,clients,alpha,seed,least",
    [(3000, 10, 20, 0.1, 1, 1), (2000, 5, 7, 0.5, 3, 1), (1500, 10, 10, 0.1, 2, 40)],
)
def test_dirichlet_matches_reference(n, k, clients, alpha, seed, least):
    labels = skewed_labels(seed, n, k)
    got = dirichlet_partition(labels, clients, alpha, seed=seed, least_samples=least)
    want = reference_dir(labels, clients, alpha, seed, least)
    assert len(got) == clients
    for g, w in zip(got, want):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w)


def test_dirichlet_determinism_and_coverage():
    labels = skewed_labels(0)
    a = dirichlet_partition(labels, 20, 0.1, seed=1)
    b = dirichlet_partition(labels, 20, 0.1, seed=1)
    c = dirichlet_partition(labels, 20, 0.1, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    allidx = np.concatenate(a)
    assert len(allidx) == len(labels)
    np.testing.assert_array_equal(np.sort(allidx), np.arange(len(labels)))


def test_dirichlet_accepts_torch_labels():
    labels = skewed_labels(4, 500, 4)
    a = dirichlet_partition(torch.from_numpy(labels), 5, 0.3, seed=7)
    b = dirichlet_partition(labels, 5, 0.3, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_dirichlet_label_order_irrelevant_to_counts():
    labels = skewed_labels(5, 2000, 10)
    permuted = labels[np.random.RandomState(9).permutation(len(labels))]
    for seed in (1, 2):
        a = dirichlet_partition(labels, 10, 0.1, seed=seed)
        b = dirichlet_partition(permuted, 10, 0.1, seed=seed)
        ref_b = reference_dir(permuted, 10, 0.1, seed, 1)
        for x, y, r in zip(a, b, ref_b):
            want = class_counts(labels[x], 10)
            np.testing.assert_array_equal(class_counts(permuted[y], 10), want)
            np.testing.assert_array_equal(y, r)


def test_dirichlet_redraws_until_least_samples():
    # 40 samples of 2 classes, 8 clients, tiny alpha: one pass leaves clients empty.
    labels = np.repeat(np.arange(2), 20).astype(np.int64)
    clients, alpha, seed, least = 8, 0.05, 1, 2
    # Replay a single pass of the draw to show the first attempt fails the rule.
    rng = np.random.RandomState(seed)
    sizes = np.zeros(clients, dtype=int)
    for k in range(2):
        idx_k = np.where(labels == k)[0]
        rng.shuffle(idx_k)
        p = rng.dirichlet(np.repeat(alpha, clients)) * (sizes < len(labels) / clients)
        p = p / p.sum()
        cuts = (np.cumsum(p) * len(idx_k)).astype(int)[:-1]
        sizes += np.array([len(s) for s in np.split(idx_k, cuts)])
    assert sizes.min() < least
    parts = dirichlet_partition(labels, clients, alpha, seed=seed, least_samples=least)
    assert min(len(p) for p in parts) >= least
    want = reference_dir(labels, clients, alpha, seed, least)
    assert all(np.array_equal(x, y) for x, y in zip(parts, want))


def test_dirichlet_validation():
    labels = skewed_labels(0, 100, 4)
    with pytest.raises(ValueError, match="num_clients"):
        dirichlet_partition(labels, 0, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(labels, 5, 0.0)
    with pytest.raises(ValueError, match="least_samples"):
        dirichlet_partition(labels, 5, 0.1, least_samples=21)
    with pytest.raises(ValueError, match="tries"):
        dirichlet_partition(labels, 5, 0.01, least_samples=20, max_tries=3)


def test_htfllib_least_samples():
    assert htfllib_least_samples(70000, 20) == 40
    assert htfllib_least_samples(1000, 20) == 25


# ------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------


def test_split_train_test_sizes_and_determinism():
    idx = np.arange(100, 203)  # 103 samples
    tr, te = split_train_test(idx, 0.75, seed=3)
    assert len(te) == int(np.ceil(0.25 * 103)) and len(tr) == 103 - len(te)
    assert not set(tr) & set(te)
    assert set(tr) | set(te) == set(idx)
    tr2, te2 = split_train_test(idx, 0.75, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(te, te2)
    tr3, _ = split_train_test(idx, 0.75, seed=4)
    assert not np.array_equal(tr, tr3)
    for n in range(1, 30):
        a, b = split_train_test(np.arange(n))
        assert len(a) >= 1 and len(a) + len(b) == n
        if n >= 2:
            assert len(b) == int(np.ceil(0.25 * n))


def test_make_federated():
    ds = make_synthetic(5, 600, seed=1)
    fed = make_federated(ds, 6, 0.3, partition_seed=1, split_seed=0)
    assert fed.num_clients == 6 and fed.num_classes == 5
    parts = dirichlet_partition(ds.y.numpy(), 6, 0.3, seed=1)
    labels = ds.y.numpy()
    seen = []
    for i, (c, part) in enumerate(zip(fed.clients, parts)):
        tr, te = c.train_idx.numpy(), c.test_idx.numpy()
        assert c.train_idx.dtype == torch.int64 and c.train_idx.device == ds.x.device
        assert len(te) == int(np.ceil(0.25 * len(part)))
        assert set(tr) | set(te) == set(part) and not set(tr) & set(te)
        assert c.train_counts.sum() == len(tr)
        np.testing.assert_array_equal(c.train_counts, class_counts(labels[tr], 5))
        np.testing.assert_array_equal(c.full_counts, class_counts(labels[part], 5))
        exp_tr, _ = split_train_test(part, 0.75, seed=i)
        np.testing.assert_array_equal(tr, exp_tr)
        seen.append(part)
    assert sum(len(p) for p in seen) == len(ds)
    fed2 = make_federated(ds, 6, 0.3)
    for a, b in zip(fed.clients, fed2.clients):
        assert torch.equal(a.train_idx, b.train_idx) and torch.equal(a.test_idx, b.test_idx)
    fed3 = make_federated(ds, 6, 0.3, split_seed=1)
    assert any(not torch.equal(a.train_idx, b.train_idx) for a, b in zip(fed.clients, fed3.clients))


# ------------------------------------------------------------------------------------------
# Dataset container, synthetic, subsets
# ------------------------------------------------------------------------------------------


def test_synthetic_balanced_deterministic():
    a = make_synthetic(7, 100, channels=3, image_size=16, seed=2)
    b = make_synthetic(7, 100, channels=3, image_size=16, seed=2)
    c = make_synthetic(7, 100, channels=3, image_size=16, seed=3)
    assert a.x.shape == (100, 3, 16, 16) and a.x.dtype == torch.uint8
    assert a.y.dtype == torch.int64 and a.channels == 3 and a.image_size == 16
    counts = class_counts(a.y, 7)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 100
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert a.source == "synthetic(K=7,n=100,seed=2)"


def test_synthetic_is_learnable():
    ds = make_synthetic(10, 2000, seed=0)
    x = ds.images(torch.arange(len(ds))).flatten(1)
    tr, te = slice(0, 1500), slice(1500, None)
    means = torch.stack([x[tr][ds.y[tr] == k].mean(0) for k in range(10)])
    pred = torch.cdist(x[te], means).argmin(1)
    assert (pred == ds.y[te]).float().mean() > 0.9


def test_load_synthetic_and_images_range():
    ds = load_dataset("synthetic", num_classes=4, synthetic_samples=50, image_size=12, seed=1)
    assert ds.x.shape == (50, 1, 12, 12) and ds.num_classes == 4
    batch = ds.images(torch.tensor([0, 3, 5]))
    assert batch.dtype == torch.float32 and batch.shape == (3, 1, 12, 12)
    assert batch.min() >= -1 and batch.max() <= 1
    expected = (ds.x[[0, 3, 5]].float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(batch, expected)
    moved = ds.to("cpu")
    assert moved is not ds and torch.equal(moved.x, ds.x)


def test_max_samples_stratified():
    full = load_dataset("synthetic", num_classes=5, synthetic_samples=1003, seed=0)
    sub = load_dataset("synthetic", num_classes=5, synthetic_samples=1003, seed=0, max_samples=101)
    sub2 = load_dataset("synthetic", num_classes=5, synthetic_samples=1003, seed=0, max_samples=101)
    assert len(sub) == 101
    counts = class_counts(sub.y, 5)
    share = class_counts(full.y, 5) * 101 / 1003
    assert np.all(np.abs(counts - share) < 1)
    assert torch.equal(sub.x, sub2.x) and torch.equal(sub.y, sub2.y)
    idx = D.stratified_subset(full.y.numpy(), 101, seed=0)
    assert torch.equal(sub.x, full.x[torch.from_numpy(idx)])
    other = D.stratified_subset(full.y.numpy(), 101, seed=1)
    assert not np.array_equal(idx, other)
    assert len(load_dataset("synthetic", synthetic_samples=30, max_samples=100)) == 30


def test_unknown_dataset():
    with pytest.raises(DataError) as e:
        load_dataset("mnist")
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in DATASETS)


# ------------------------------------------------------------------------------------------
# Fashion-MNIST
# ------------------------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    blob = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


def _fake_fmnist(folder: Path, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", 20), ("t10k", 10)):
        _write_idx(folder / f"{split}-images-idx3-ubyte", rng.randint(0, 256, (n, 28, 28)), gz)
        _write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_fmnist_fake_files_plain_and_gz(tmp_path, gz):
    _fake_fmnist(tmp_path / "fashion-mnist", gz)
    folder, desc = locate_fmnist(tmp_path, download=False)
    assert folder == tmp_path / "fashion-mnist" and str(tmp_path) in desc
    ds = load_dataset("fmnist", str(tmp_path), verify=False)
    assert ds.x.shape == (30, 1, 28, 28) and ds.y.tolist()[:12] == list(range(10)) + [0, 1]
    with pytest.raises(DataError, match="checksum mismatch for .*train-images"):
        load_dataset("fmnist", str(tmp_path), verify=True)


def test_fmnist_env_var(tmp_path, monkeypatch):
    _fake_fmnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    monkeypatch.setenv("TINYPROTO_DATA", str(tmp_path))
    folder, desc = locate_fmnist(download=False)
    assert folder == tmp_path / "FashionMNIST" / "raw" and desc.startswith("TINYPROTO_DATA=")


def test_fmnist_bad_magic_and_truncation(tmp_path):
    _fake_fmnist(tmp_path, gz=False)
    lab = tmp_path / "t10k-labels-idx1-ubyte"
    good = lab.read_bytes()
    lab.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*magic"):
        load_dataset("fmnist", str(tmp_path), verify=False)
    lab.write_bytes(good[:-3])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
        load_dataset("fmnist", str(tmp_path), verify=False)


def test_fmnist_nothing_found(tmp_path, monkeypatch):
    monkeypatch.setattr(data_fmnist, "DEBIAN_FMNIST_DIR", tmp_path / "nope")
    monkeypatch.setattr(data_base, "DEFAULT_CACHE", tmp_path / "cache")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as e:
        locate_fmnist(tmp_path / "empty")
    assert "download" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="TINYPROTO_DATA"):
        locate_fmnist(download=False)


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian package dataset-fashion-mnist not installed")
def test_fmnist_debian_full_load():
    folder, desc = locate_fmnist(download=False)
    assert folder == DEBIAN and "Debian" in desc
    ds = load_dataset("fmnist")
    assert ds.x.shape == (70000, 1, 28, 28) and ds.x.dtype == torch.uint8
    assert ds.y.dtype == torch.int64 and ds.num_classes == 10
    assert ds.channels == 1 and ds.image_size == 28
    np.testing.assert_array_equal(class_counts(ds.y, 10), np.full(10, 7000))
    batch = ds.images(torch.arange(0, 70000, 97))
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() < -0.99 and batch.max() > 0.99


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian package dataset-fashion-mnist not installed")
def test_fmnist_debian_corrupted_copies(tmp_path):
    for name in D.FMNIST_FILES.values():
        shutil.copy(DEBIAN / f"{name}.gz", tmp_path / f"{name}.gz")
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(target.read_bytes())
    # flipped byte (valid gzip, valid idx) -> checksum error
    flipped = bytearray(raw)
    flipped[100] ^= 0x01
    target.write_bytes(gzip.compress(bytes(flipped)))
    with pytest.raises(DataError, match="checksum mismatch for .*t10k-labels-idx1-ubyte"):
        load_dataset("fmnist", str(tmp_path))
    # truncated archive -> error naming the file
    blob = gzip.compress(raw)
    target.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fmnist", str(tmp_path))
    # truncated content in a valid archive -> error naming the file
    target.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
        load_dataset("fmnist", str(tmp_path))


# ------------------------------------------------------------------------------------------
# CIFAR
# ------------------------------------------------------------------------------------------


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _fake_cifar10(root: Path, per_batch: int = 5) -> list[np.ndarray]:
    folder = root / D.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    labels = []
    for b, name in enumerate(D.CIFAR10_MD5):
        data = np.full((per_batch, 3072), b, dtype=np.uint8)
        data[:, 1024:2048] = 100 + b  # green plane
        lab = [(b + i) % 10 for i in range(per_batch)]
        labels.append(np.array(lab))
        _pickle(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": lab})
    return labels


def test_cifar10_fake(tmp_path):
    labels = _fake_cifar10(tmp_path)
    ds = load_dataset("cifar10", str(tmp_path), verify=False)
    assert ds.x.shape == (30, 3, 32, 32) and ds.x.dtype == torch.uint8
    assert ds.num_classes == 10 and ds.channels == 3 and ds.image_size == 32
    np.testing.assert_array_equal(ds.y.numpy(), np.concatenate(labels))
    assert int(ds.x[25, 0, 0, 0]) == 5 and int(ds.x[25, 1, 3, 3]) == 105  # test batch last
    with pytest.raises(DataError, match="checksum mismatch for .*data_batch_1"):
        load_dataset("cifar10", str(tmp_path), verify=True)


def test_cifar100_fake(tmp_path):
    folder = tmp_path / D.CIFAR100_FOLDER
    folder.mkdir()
    for name, n in (("train", 5), ("test", 3)):
        data = np.arange(n * 3072).reshape(n, 3072).astype(np.uint8)
        _pickle(
            folder / name,
            {b"data": data, b"fine_labels": [99 - i for i in range(n)], b"coarse_labels": [0] * n},
        )
    ds = load_dataset("cifar100", str(tmp_path), verify=False, max_samples=None)
    assert ds.x.shape == (8, 3, 32, 32) and ds.num_classes == 100
    assert ds.y.tolist() == [99, 98, 97, 96, 95, 99, 98, 97]
    np.testing.assert_array_equal(ds.x[1].numpy().reshape(-1), np.arange(3072, 6144) % 256)
    with pytest.raises(DataError, match="checksum mismatch for .*cifar-100-python.train"):
        load_dataset("cifar100", str(tmp_path))


def test_cifar_corrupt_and_missing(tmp_path):
    _fake_cifar10(tmp_path)
    bad = tmp_path / D.CIFAR10_FOLDER / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", str(tmp_path), verify=False)
    # a pickle that would call arbitrary code is refused
    _pickle(bad, {b"data": os.getcwd, b"labels": []})
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", str(tmp_path), verify=False)
    with pytest.raises(DataError, match="cifar-100-python") as e:
        load_dataset("cifar100", str(tmp_path / "none"), verify=False)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------
# TinyImageNet
# ------------------------------------------------------------------------------------------


def _fake_tinyimagenet(root: Path) -> list[str]:
    from PIL import Image

    base = root / "tiny-imagenet-200"
    wnids = ["n03", "n01", "n02"]  # deliberately unsorted
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for w in wnids:
        cls = sorted(wnids).index(w)
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        for j in range(2):
            img = np.full((64, 64, 3), 40 * cls + j, dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{w}_{j}.JPEG", quality=95)
        Image.fromarray(np.full((64, 64), 200 + cls, dtype=np.uint8)).convert("L").save(
            base / "val" / "images" / f"val_{w}.JPEG", quality=95
        )
        lines.append(f"val_{w}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return wnids


def test_tinyimagenet_fake(tmp_path):
    _fake_tinyimagenet(tmp_path)
    ds = load_dataset("tinyimagenet", str(tmp_path))
    assert ds.x.shape == (9, 3, 64, 64) and ds.x.dtype == torch.uint8 and ds.num_classes == 3
    # train: sorted wnids n01, n02, n03 (2 each), then val in annotation order n03, n01, n02
    assert ds.y.tolist() == [0, 0, 1, 1, 2, 2, 2, 0, 1]
    means = ds.x.float().mean(dim=(1, 2, 3))
    assert abs(means[2] - 40) < 3 and abs(means[6] - 202) < 3
    cache = tmp_path / "tiny-imagenet-200" / D.TINYIMAGENET_CACHE
    assert cache.is_file()
    again = load_dataset("tinyimagenet", str(tmp_path))
    assert "cache" in again.source
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)


def test_tinyimagenet_missing(tmp_path):
    with pytest.raises(DataError, match="tiny-imagenet-200"):
        load_dataset("tinyimagenet", str(tmp_path))
    _fake_tinyimagenet(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_n01.JPEG").unlink()
    with pytest.raises(DataError, match="val_n01.JPEG"):
        load_dataset("tinyimagenet", str(tmp_path))
