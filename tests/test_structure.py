"""Per-round structure of the local prototypes: the share of their energy off the class masks."""

from __future__ import annotations

import math
import tempfile

import pytest
import torch

from tinyproto import Config, run
from tinyproto.cps import make_masks, off_mask_share


def test_off_mask_share_is_the_energy_ratio():
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    p = torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    # class 0: off = 9 of 14; class 1: off = 1 of 1
    assert off_mask_share([(torch.tensor([0, 1]), p)], masks) == pytest.approx(10 / 15)
    # pairs from several clients pool their energies (not a mean of shares)
    a, b = (torch.tensor([0]), p[:1]), (torch.tensor([1]), p[1:])
    assert off_mask_share([a, b], masks) == pytest.approx(10 / 15)


def test_no_structure_gives_one_minus_s_over_d_and_on_mask_gives_zero():
    K, d, s = 10, 500, 50
    masks = make_masks(K, d, s, seed=0)
    classes = torch.arange(K)
    flat = torch.ones(K, d)
    assert off_mask_share([(classes, flat)], masks) == pytest.approx(1 - s / d)
    on = torch.randn(K, d) * masks
    assert off_mask_share([(classes, on)], masks) == 0.0
    assert math.isnan(off_mask_share([], masks))
    assert math.isnan(off_mask_share([(classes, torch.zeros(K, d))], masks))


@pytest.mark.parametrize("algorithm", ["fedproto", "tinyproto-fp", "fml"])
def test_runs_record_it_per_round(algorithm):
    cfg = Config(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=4,
        max_samples=160,
        feature_dim=20,
        rounds=2,
        save_prototypes=False,
    )
    m = run(cfg, root=tempfile.mkdtemp(), progress=False).metrics
    if algorithm == "fml":
        assert "off_mask_share" not in m.columns
    else:
        assert m["off_mask_share"].between(0, 1).all() and len(m) == 2
