"""Small last batches cannot destabilise a model (issue: Ht0 runs on subsets died with NaN).

A 2-sample last batch drives the BatchNorm running variances of MobileNetV2, ShuffleNetV2 and
EfficientNet-B0 (1x1 maps at the end) to 1e20-1e27 and their evaluation features to NaN. Models
with BatchNorm now merge a last batch smaller than half a batch into the previous one; BN-free
models (cnn4) keep the old rule (only a single sample merges), so their numbers do not move.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinyproto.algorithms.base import ClientData
from tinyproto.algorithms.common import min_last_batch
from tinyproto.data import ClientSplit, make_synthetic
from tinyproto.models import CNN4, HT0, build_model


def _client(n_train: int) -> ClientData:
    ds = make_synthetic(10, n_train + 8, 1, 28, seed=0)
    split = ClientSplit(
        train_idx=torch.arange(n_train),
        test_idx=torch.arange(n_train, n_train + 8),
        train_counts=np.zeros(10, dtype=np.int64),
        full_counts=np.zeros(10, dtype=np.int64),
    )
    return ClientData(ds, split)


def _sizes(data: ClientData, batch: int, min_last: int) -> list[int]:
    gen = torch.Generator().manual_seed(0)
    return [len(y) for _, y in data.train_batches(batch, gen, min_last)]


def test_batch_sizes_merge_small_last_batches_and_keep_every_sample():
    assert _sizes(_client(34), 32, 16) == [34]
    assert _sizes(_client(47), 32, 16) == [47]
    assert _sizes(_client(48), 32, 16) == [32, 16]
    assert _sizes(_client(34), 32, 2) == [32, 2]  # the BN-free rule, unchanged
    assert _sizes(_client(33), 32, 2) == [33]
    assert _sizes(_client(20), 32, 16) == [20]  # a single partial batch stays as it is
    for n in range(1, 100):
        assert sum(_sizes(_client(n), 32, 16)) == n


@pytest.mark.parametrize("arch", HT0 + CNN4)
def test_min_last_batch_follows_batchnorm(arch):
    m = build_model(arch, num_classes=10, feature_dim=16, in_channels=1, image_size=28)
    has_bn = any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert min_last_batch([m], 32) == (16 if has_bn else 2)
    assert has_bn == (arch in HT0)


def _train_then_features(arch: str, n_train: int, min_last: int):
    torch.manual_seed(0)
    m = build_model(arch, num_classes=10, feature_dim=64, in_channels=1, image_size=28)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    data = _client(n_train)
    gen = torch.Generator().manual_seed(0)
    m.train()
    for _ in range(3):
        for x, y in data.train_batches(32, gen, min_last):
            loss = F.cross_entropy(m(x)[1], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        z = m.features(torch.randn(16, 1, 28, 28))
    var = max(float(b.running_var.max()) for b in m.modules() if hasattr(b, "running_var"))
    return z, var


@pytest.mark.parametrize("arch", HT0)
def test_every_ht0_architecture_stays_finite_with_a_2_sample_last_batch(arch):
    model = build_model(arch, num_classes=10, feature_dim=16, in_channels=1, image_size=28)
    z, var = _train_then_features(arch, 34, min_last_batch([model], 32))
    assert torch.isfinite(z).all() and float(z.abs().max()) < 1e3
    assert var < 1e3


def test_the_old_rule_did_destabilise_efficientnet():
    """The guard matters: with only single samples merged, the same training blows up."""
    z, var = _train_then_features("efficientnet_b0", 34, 2)
    assert var > 1e6 or not torch.isfinite(z).all()


@pytest.mark.parametrize("prepared", [True, False])
def test_epoch_gather_gives_the_batches_of_per_batch_gathering(monkeypatch, prepared):
    """A client's epoch is gathered once and its batches are views of it; above the byte cap
    every batch is gathered on its own. Both give the same batches, bit for bit, in order."""
    import tinyproto.algorithms.base as base

    data = _client(75)
    if prepared:  # the normalised copy (one gather) and the per-batch normalisation path
        data = ClientData(data.dataset.prepared(), data.split)

    def batches(cap):
        monkeypatch.setattr(base, "EPOCH_GATHER_MAX_BYTES", cap)
        gen = torch.Generator().manual_seed(3)
        return list(data.train_batches(32, gen, 16))

    whole, each = batches(base.EPOCH_GATHER_MAX_BYTES), batches(0)
    assert [len(y) for _, y in whole] == [len(y) for _, y in each] == [32, 43]
    for (xa, ya), (xb, yb) in zip(whole, each):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.is_contiguous()
    assert whole[0][0].untyped_storage().data_ptr() == whole[1][0].untyped_storage().data_ptr()
    assert each[0][0].untyped_storage().data_ptr() != each[1][0].untyped_storage().data_ptr()
