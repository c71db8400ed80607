"""The count-recovery attack (tinyproto.privacy): the estimator, its measures, and what it
recovers from real uploads (APS-scaled prototypes leak the ranks of the counts; FedProto's
unscaled means do not)."""

from __future__ import annotations

import math

import pytest
import torch

from tinyproto import Config
from tinyproto.privacy import attack, judge, recover_distribution, spearman, tvd


def test_scaled_unit_vectors_give_the_counts_exactly():
    """n_ij x (a mean feature of equal norm): the norm ratios are the count ratios, whatever
    the (unknown) feature scale."""
    g = torch.Generator().manual_seed(0)
    classes = torch.tensor([1, 3, 4])
    counts = torch.tensor([0.0, 30.0, 0.0, 10.0, 60.0])
    unit = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1) * 7.3
    r = judge(classes, unit * counts[classes].unsqueeze(1), counts)
    assert r["tvd_attack"] == pytest.approx(0.0, abs=1e-6)  # float32 vectors and r["spearman"] == pytest.approx(1.0)
    assert r["tvd_presence"] == pytest.approx(0.5 * (abs(1 / 3 - 0.3) + abs(1 / 3 - 0.1) + abs(1 / 3 - 0.6)))
    assert r["tvd_blind"] == pytest.approx(0.5 * (0.2 + 0.1 + 0.2 + 0.1 + 0.4))
    plain = judge(classes, unit, counts)  # unscaled means: the presence guess, nothing more
    assert plain["tvd_attack"] == pytest.approx(plain["tvd_presence"])


def test_measures():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert tvd(p, p) == 0.0 and tvd(p, torch.tensor([0.0, 0.0, 1.0])) == 1.0
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert math.isnan(spearman(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])))
    assert math.isnan(spearman(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 3.0])))
    est = recover_distribution(torch.tensor([0]), torch.zeros(1, 4), 3)  # zero norm: presence
    assert est.tolist() == [1.0, 0.0, 0.0]


def test_aps_uploads_leak_the_count_ranks_and_fedprotos_do_not():
    """Smoke runs (4 clients, alpha 1: several classes of different sizes per client), round 2:
    the attack ranks TinyProto-FP's counts well and beats the class-list guess; on FedProto's
    unscaled means it ranks nothing."""
    base = dict(profile="smoke", rounds=2, alpha=1.0, num_clients=4, client_workers=1)
    fp = attack(Config(algorithm="tinyproto-fp", **base))
    fedproto = attack(Config(algorithm="fedproto", **base))
    assert set(fp.columns) >= {"round", "client", "tvd_attack", "tvd_presence", "tvd_blind", "spearman"}
    assert len(fp) == 2 * 4 and sorted(fp.client.unique()) == [0, 1, 2, 3]
    a, b = fp[fp["round"] == 2].mean(numeric_only=True), fedproto[fedproto["round"] == 2].mean(numeric_only=True)
    assert a.spearman > 0.4 and a.spearman > b.spearman + 0.3, (a.spearman, b.spearman)
    assert a.tvd_attack < a.tvd_presence < a.tvd_blind
    assert abs(b.tvd_attack - b.tvd_presence) < 0.05
