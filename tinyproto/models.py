"""Client networks for heterogeneous federated learning.

Every client model is split as in the paper: a feature extractor ``base`` (f_i: x -> R^d, the
prototype or "decision layer" features) and a linear ``head`` (h_i: R^d -> R^K).

Two families are provided:

* ``"ht0"``: the paper's family (HtFLlib "Ht0"), client i gets model i mod 4: ResNet-8,
  MobileNetV2, ShuffleNetV2 x1.0 and EfficientNet-B0. As in HtFLlib, each network's classifier is
  replaced by ``nn.AdaptiveAvgPool1d(d)`` applied to the globally pooled feature vector.
* ``"cnn4"``: four small, BatchNorm-free CNNs of different depth, width and kernel size, fast
  enough to train on a CPU. Their prototype is the output of ``Linear(flat, d)`` followed by a
  ReLU, so features are non-negative and dead units can appear.

Every single architecture name is also a family of one (``family="resnet8"``: every client gets
ResNet-8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# torchvision is imported where an Ht0 network is built, not here: importing it costs about
# 1.4 s (it pulls in torch._dynamo), which every run of the cnn4 family, every sweep worker and
# every notebook kernel would otherwise pay

__all__ = [
    "ARCHS",
    "FAMILIES",
    "ClientModel",
    "build_model",
    "client_model",
    "count_params",
]

HT0: tuple[str, ...] = ("resnet8", "mobilenet_v2", "shufflenet_v2", "efficientnet_b0")
CNN4: tuple[str, ...] = ("cnn_a", "cnn_b", "cnn_c", "cnn_d")


class ClientModel(nn.Module):
    """A client's network: base f_i: x -> R^d (prototype features) and head h_i: Linear(d, K)."""

    def __init__(
        self, base: nn.Module, feature_dim: int, num_classes: int, arch: str, in_channels: int
    ) -> None:
        super().__init__()
        self.base = base
        self.head = nn.Linear(feature_dim, num_classes)
        self.arch = arch
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.in_channels = in_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The prototype features f_i(x), shape [B, d]."""
        return self.base(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features [B, d], logits [B, K])`` with ``logits = head(features)``."""
        z = self.base(x)
        return z, self.head(z)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, feature_dim={self.feature_dim}"


# --------------------------------------------------------------------------------------------
# ResNet-8 (one torchvision BasicBlock per stage, 3 stages 64-128-256, ImageNet stem)
# --------------------------------------------------------------------------------------------


class ResNet8Base(nn.Module):
    """ResNet-8 feature extractor, then ``AdaptiveAvgPool1d(d)`` on its 256 pooled features."""

    widths: tuple[int, int, int] = (64, 128, 256)
    strides: tuple[int, int, int] = (1, 2, 2)

    def __init__(self, feature_dim: int, in_channels: int = 3) -> None:
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        stages = []
        for planes, stride in zip(self.widths, self.strides):
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )
            stages.append(BasicBlock(inplanes, planes, stride=stride, downsample=downsample))
            inplanes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.AdaptiveAvgPool1d(feature_dim)  # replaces the classifier, as in HtFLlib
        # Initialisation as in torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet8(feature_dim: int, num_classes: int, in_channels: int) -> nn.Module:
    return ResNet8Base(feature_dim, in_channels)


# --------------------------------------------------------------------------------------------
# torchvision models with their classifier replaced by AdaptiveAvgPool1d(d)
# --------------------------------------------------------------------------------------------


def _replace_first_conv(model: nn.Module, in_channels: int, kaiming: bool) -> None:
    """Replace the first ``nn.Conv2d`` (in registration order) by one taking ``in_channels``."""
    if in_channels == 3:
        return
    for _name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    kernel_size=child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    dilation=child.dilation,
                    groups=child.groups,
                    bias=child.bias is not None,
                    padding_mode=child.padding_mode,
                )
                if kaiming:  # MobileNetV2 and EfficientNet initialise convs this way
                    nn.init.kaiming_normal_(new.weight, mode="fan_out")
                    if new.bias is not None:
                        nn.init.zeros_(new.bias)
                setattr(parent, child_name, new)
                return
    raise RuntimeError("model has no Conv2d")  # pragma: no cover


def _mobilenet_v2(feature_dim: int, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    # The whole classifier (Dropout + Linear) is replaced, as in HtFLlib: no dropout in the base.
    model.classifier = nn.AdaptiveAvgPool1d(feature_dim)
    _replace_first_conv(model, in_channels, kaiming=True)
    return model


def _shufflenet_v2(feature_dim: int, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.shufflenet_v2_x1_0(weights=None, num_classes=num_classes)
    model.fc = nn.AdaptiveAvgPool1d(feature_dim)
    _replace_first_conv(model, in_channels, kaiming=False)  # torchvision keeps default init
    return model


def _efficientnet_b0(feature_dim: int, num_classes: int, in_channels: int) -> nn.Module:
    import torchvision

    model = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    # The whole classifier (Dropout + Linear) is replaced, as in HtFLlib: no dropout in the base.
    model.classifier = nn.AdaptiveAvgPool1d(feature_dim)
    _replace_first_conv(model, in_channels, kaiming=True)
    return model


# --------------------------------------------------------------------------------------------
# cnn4: small, fast, heterogeneous CNNs (BatchNorm-free)
# --------------------------------------------------------------------------------------------

# name -> (conv layers as (out_channels, kernel), adaptive pool size). Each block is
# Conv(k, stride 2, padding k//2) - ReLU; then AdaptiveAvgPool2d(pool), flatten,
# Linear(C * pool^2, d), ReLU (the prototype). Strided convolutions replace conv + max-pool:
# measured 1.3-2.3 ms vs 3.0-4.2 ms per SGD step (batch 32, 2 threads); the first layer stays
# narrow (<= 8 channels) since it runs at the highest resolution.
CNN4_SPECS: dict[str, tuple[tuple[tuple[int, int], ...], int]] = {
    "cnn_a": (((8, 5), (16, 5)), 3),  # 2 convs, 5x5
    "cnn_b": (((8, 3), (32, 3)), 2),  # 2 convs, 3x3, wide second layer
    "cnn_c": (((8, 3), (16, 3), (32, 3)), 3),  # 3 convs, 3x3, largest flatten (288)
    "cnn_d": (((6, 5), (12, 3), (24, 3)), 2),  # 3 convs, 5x5 then 3x3, narrow
}


class SmallCNNBase(nn.Module):
    """Strided Conv-ReLU blocks, adaptive average pooling, then Linear(flat, d) and ReLU."""

    def __init__(
        self, convs: tuple[tuple[int, int], ...], pool: int, feature_dim: int, in_channels: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out, k in convs:
            # stride-2 convolutions instead of conv + max-pool: ~2x faster on a 2-core CPU
            # (max_pool2d dominated the step time), same downsampling
            layers += [nn.Conv2d(c, out, k, stride=2, padding=k // 2), nn.ReLU(inplace=True)]
            c = out
        self.conv = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Linear(c * pool * pool, feature_dim)
        self.relu = nn.ReLU()  # its output is the prototype feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.relu(self.fc(x))


class SmallBNCNNBase(SmallCNNBase):
    """A SmallCNNBase with BatchNorm after every convolution and after the feature layer
    (``cnn_bn``: cnn_a's layout). Not in cnn4: a CPU-fast model with BatchNorm statistics, for
    FedTiny's adaptive BN selection and sparse training (tinyproto/algorithms/fedtiny.py)."""

    def __init__(
        self, convs: tuple[tuple[int, int], ...], pool: int, feature_dim: int, in_channels: int
    ) -> None:
        super().__init__(convs, pool, feature_dim, in_channels)
        layers: list[nn.Module] = []
        for m in self.conv:
            layers.append(m)
            if isinstance(m, nn.Conv2d):
                layers.append(nn.BatchNorm2d(m.out_channels))
        self.conv = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.relu(self.norm(self.fc(x)))


def _cnn(name: str) -> Callable[[int, int, int], nn.Module]:
    convs, pool = CNN4_SPECS[name]

    def make(feature_dim: int, num_classes: int, in_channels: int) -> nn.Module:
        return SmallCNNBase(convs, pool, feature_dim, in_channels)

    return make


_BUILDERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "resnet8": _resnet8,
    "mobilenet_v2": _mobilenet_v2,
    "shufflenet_v2": _shufflenet_v2,
    "efficientnet_b0": _efficientnet_b0,
    **{name: _cnn(name) for name in CNN4},
    "cnn_bn": lambda d, K, c: SmallBNCNNBase(*CNN4_SPECS["cnn_a"], d, c),
}

ARCHS: tuple[str, ...] = tuple(_BUILDERS)

FAMILIES: dict[str, tuple[str, ...]] = {
    "ht0": HT0,
    "cnn4": CNN4,
    **{name: (name,) for name in ARCHS},
}


def build_model(
    arch: str,
    *,
    num_classes: int,
    feature_dim: int,
    in_channels: int = 3,
    image_size: int = 32,
) -> ClientModel:
    """Build architecture ``arch`` as a :class:`ClientModel` with prototype dimension ``d``.

    Every architecture ends in global pooling, so any ``image_size`` >= 8 works (28, 32, 64...);
    ``image_size`` is only validated.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHS)}")
    for label, value, low in (
        ("feature_dim", feature_dim, 1),
        ("num_classes", num_classes, 1),
        ("in_channels", in_channels, 1),
        ("image_size", image_size, 8),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    base = _BUILDERS[arch](feature_dim, num_classes, in_channels)
    return ClientModel(base, feature_dim, num_classes, arch, in_channels)


def client_seed(seed: int, client_id: int) -> int:
    """The torch seed client ``client_id``'s model is initialised from: its id and the run's
    seed only (the engine, and LG-FedAvg's shared round-0 head, rebuild it from this)."""
    return seed * 7_919 + client_id


def client_model(family: str, client_id: int, **kw) -> ClientModel:
    """Client ``client_id``'s model: architecture ``FAMILIES[family][client_id % len(family)]``.

    Keyword arguments are passed to :func:`build_model`.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; allowed: {', '.join(FAMILIES)}")
    if client_id < 0:
        raise ValueError(f"client_id must be >= 0, got {client_id}")
    archs = FAMILIES[family]
    return build_model(archs[client_id % len(archs)], **kw)


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
