"""Tests for tinyproto.models: client networks split into base f_i and head h_i."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from tinyproto.models import (
    FAMILIES,
    ClientModel,
    build_model,
    client_model,
    count_params,
)

HT0 = ("resnet8", "mobilenet_v2", "shufflenet_v2", "efficientnet_b0")
ALL_ARCHS = FAMILIES["ht0"] + FAMILIES["cnn4"]


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def test_family_contents() -> None:
    assert FAMILIES["ht0"] == HT0
    assert len(FAMILIES["cnn4"]) == 4 and len(set(FAMILIES["cnn4"])) == 4
    for arch in ALL_ARCHS:  # every architecture is also a family of one
        assert FAMILIES[arch] == (arch,)


@pytest.mark.parametrize("d", [50, 500])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_shapes_and_split(arch: str, channels: int, size: int, d: int) -> None:
    torch.manual_seed(0)
    k = 7
    m = build_model(arch, num_classes=k, feature_dim=d, in_channels=channels, image_size=size)
    assert isinstance(m, ClientModel)
    assert m.arch == arch and m.feature_dim == d
    assert isinstance(m.head, nn.Linear)
    assert (m.head.in_features, m.head.out_features) == (d, k)
    m.eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        z, logits = m(x)
        assert z.shape == (2, d) and logits.shape == (2, k)
        torch.testing.assert_close(logits, m.head(z))
        torch.testing.assert_close(m.features(x), z)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_tinyimagenet_size(arch: str) -> None:
    m = build_model(arch, num_classes=200, feature_dim=50, image_size=64).eval()
    with torch.no_grad():
        z, logits = m(torch.randn(2, 3, 64, 64))
    assert z.shape == (2, 50) and logits.shape == (2, 200)


@pytest.mark.parametrize("family", ["ht0", "cnn4"])
def test_client_gets_model_i_mod_4(family: str) -> None:
    for i in range(6):
        m = client_model(family, i, num_classes=10, feature_dim=50, in_channels=1)
        assert m.arch == FAMILIES[family][i % 4]


def test_single_arch_family() -> None:
    for i in range(3):
        assert client_model("cnn_b", i, num_classes=10, feature_dim=20).arch == "cnn_b"


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_one_channel_first_conv(arch: str) -> None:
    m1 = build_model(arch, num_classes=10, feature_dim=50, in_channels=1)
    m3 = build_model(arch, num_classes=10, feature_dim=50, in_channels=3)
    c1, c3 = _first_conv(m1.base), _first_conv(m3.base)
    assert c1.in_channels == 1 and c3.in_channels == 3
    for attr in ("out_channels", "kernel_size", "stride", "padding", "groups"):
        assert getattr(c1, attr) == getattr(c3, attr)
    assert (c1.bias is None) == (c3.bias is None)
    # no other convolution changes
    rest1 = [c.weight.shape for c in m1.base.modules() if isinstance(c, nn.Conv2d)][1:]
    rest3 = [c.weight.shape for c in m3.base.modules() if isinstance(c, nn.Conv2d)][1:]
    assert rest1 == rest3


@pytest.mark.parametrize("arch", HT0)
def test_ht0_classifier_replaced(arch: str) -> None:
    """The base ends in AdaptiveAvgPool1d(d): no Linear or Dropout left from the classifier."""
    m = build_model(arch, num_classes=10, feature_dim=500)
    pools = [x for x in m.base.modules() if isinstance(x, nn.AdaptiveAvgPool1d)]
    assert len(pools) == 1 and pools[0].output_size == 500
    assert not any(isinstance(x, (nn.Linear, nn.Dropout)) for x in m.base.modules())


@pytest.mark.parametrize("arch", FAMILIES["cnn4"])
def test_cnn4_features_nonnegative_and_trainable(arch: str) -> None:
    torch.manual_seed(0)
    m = build_model(arch, num_classes=10, feature_dim=500, in_channels=1)
    z, logits = m(torch.randn(8, 1, 28, 28))
    assert (z >= 0).all() and (z == 0).any()  # ReLU before the prototype
    nn.functional.cross_entropy(logits, torch.arange(8)).backward()
    assert _first_conv(m.base).weight.grad.abs().sum() > 0


def test_cnn4_heterogeneous() -> None:
    counts = [
        count_params(build_model(a, num_classes=10, feature_dim=500, in_channels=1))
        for a in FAMILIES["cnn4"]
    ]
    assert all(a != b for a, b in itertools.combinations(counts, 2))
    for arch in FAMILIES["cnn4"]:  # no BatchNorm in the fast family
        m = build_model(arch, num_classes=10, feature_dim=500)
        assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())


def test_resnet8_structure() -> None:
    m = build_model("resnet8", num_classes=10, feature_dim=500)
    blocks = [x for x in m.base.modules() if isinstance(x, BasicBlock)]
    assert len(blocks) == 3
    assert [b.conv2.out_channels for b in blocks] == [64, 128, 256]
    assert [b.conv1.stride for b in blocks] == [(1, 1), (2, 2), (2, 2)]
    stem = _first_conv(m.base)
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2)
    assert any(isinstance(x, nn.MaxPool2d) for x in m.base.modules())
    # about 1.23 M parameters in the base (METHOD.md), plus the d*K + K head
    assert count_params(m) - count_params(m.base) == 500 * 10 + 10
    assert 1_200_000 < count_params(m.base) < 1_260_000


def test_resnet8_kaiming_init() -> None:
    torch.manual_seed(0)
    m = build_model("resnet8", num_classes=10, feature_dim=500)
    bn = m.base.bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = m.base.layer3.conv1.weight  # fan_out = 256 * 9
    assert abs(w.std().item() - (2 / (256 * 9)) ** 0.5) < 0.002


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_deterministic(arch: str) -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        states.append(build_model(arch, num_classes=10, feature_dim=50, in_channels=1).state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="resnet99"):
        build_model("resnet99", num_classes=10, feature_dim=50)
    with pytest.raises(ValueError, match="ht7"):
        client_model("ht7", 0, num_classes=10, feature_dim=50)


@pytest.mark.parametrize("d", [0, -3])
def test_bad_feature_dim(d: int) -> None:
    with pytest.raises(ValueError, match="feature_dim"):
        build_model("cnn_a", num_classes=10, feature_dim=d)


def test_count_params_trainable_only() -> None:
    m = build_model("cnn_a", num_classes=10, feature_dim=50)
    total = count_params(m)
    assert total == sum(p.numel() for p in m.parameters())
    m.head.weight.requires_grad_(False)
    assert count_params(m) == total - 50 * 10
