"""A synthetic, learnable K-class image set for tests and quick checks (no files involved)."""

from __future__ import annotations

import numpy as np
import torch

from tinyproto.data.base import Dataset


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
