"""Local DP for uploads (tinyproto.comm.dp): clipping, noise, its determinism across runtimes, the
RDP accountant's epsilon, and the clipped uploads against the count-recovery attack."""

from __future__ import annotations

import math

import pytest
import torch

from tinyproto import Config, ConfigError, run
from tinyproto.comm import Message
from tinyproto.comm.dp import epsilon, noise_generator, privatize


def test_rows_are_clipped_to_the_bound_and_short_rows_kept():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    msg = Message({"classes": torch.tensor([0, 1, 2]), "protos": x})
    out = privatize(msg, 1.0, 0.0, noise_generator(0))
    assert torch.allclose(out["protos"][0], torch.tensor([0.6, 0.8]))
    assert torch.equal(out["protos"][1:], x[1:])
    assert torch.equal(out["classes"], msg["classes"])
    assert privatize(msg, None, 0.0, None) is msg


def test_noise_has_the_stated_scale_and_is_deterministic():
    x = torch.zeros(200, 500)
    a = privatize(Message({"protos": x}), 2.0, 0.5, noise_generator(7))["protos"]
    b = privatize(Message({"protos": x}), 2.0, 0.5, noise_generator(7))["protos"]
    assert torch.equal(a, b)
    assert float(a.std()) == pytest.approx(1.0, rel=0.01)  # 0.5 x 2.0
    c = privatize(Message({"protos": x}), 2.0, 0.5, noise_generator(8))["protos"]
    assert not torch.equal(a, c)


def test_epsilon_of_the_rdp_accountant():
    """One upload, one row, sigma 1: RDP(alpha) = 2 alpha; the optimum over alpha is at
    1 + sqrt(ln(1/delta) / 2), epsilon = 2 alpha* + ln(1/delta) / (alpha* - 1)."""
    L = math.log(1e5)
    a = 1 + math.sqrt(L / 2)
    assert epsilon(1.0, 1, 1, 1e-5) == pytest.approx(2 * a + L / (a - 1), rel=2e-3)
    assert epsilon(2.0, 10, 5, 1e-5) < epsilon(1.0, 10, 5, 1e-5)  # more noise, less epsilon
    assert epsilon(1.0, 20, 5, 1e-5) > epsilon(1.0, 10, 5, 1e-5)  # more uploads, more
    assert epsilon(1.0, 10, 9, 1e-5) > epsilon(1.0, 10, 5, 1e-5)  # more rows, more
    assert epsilon(0.0, 10, 5, 1e-5) == math.inf
    with pytest.raises(ValueError, match="delta"):
        epsilon(1.0, 1, 1, 1.5)


def test_config_checks():
    with pytest.raises(ConfigError, match="invalid dp_noise=1.0: needs dp_clip"):
        Config(dp_noise=1.0)
    with pytest.raises(ConfigError, match="invalid dp_clip=0"):
        Config(dp_clip=0)
    with pytest.raises(
        ConfigError,
        match=r"invalid dp_clip=1.0: only .*feddistill read it; algorithm fedavg does not \(leave it at None\)",
    ):
        Config(algorithm="fedavg", dp_clip=1.0)
    assert Config().run_id() == Config(dp_clip=None, dp_noise=0.0).run_id()


def test_a_dp_run_reports_epsilon_and_is_the_same_in_client_workers(tmp_path):
    import pandas as pd

    cfg = Config(algorithm="tinyproto-fp", profile="smoke", rounds=2, dp_clip=1.0, dp_noise=1.0)
    a = run(cfg.replace(client_workers=1), root=tmp_path / "a", progress=False)
    b = run(cfg.replace(client_workers=2), root=tmp_path / "b", progress=False)
    cols = [c for c in a.metrics.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols])
    assert a.summary["dp_delta"] == 1e-5
    assert math.isfinite(a.summary["dp_epsilon"]) and a.summary["dp_epsilon"] > 0
    plain = run(
        cfg.replace(dp_clip=None, dp_noise=0.0, client_workers=1),
        root=tmp_path / "c",
        progress=False,
    )
    assert "dp_epsilon" not in plain.summary
    assert not a.metrics["train_loss"].equals(plain.metrics["train_loss"])  # round 2 differs


def test_clipping_below_every_norm_hides_the_counts_from_the_attack():
    """Every APS-scaled row clipped to the same norm: the norm-ratio estimate is the class-list
    guess (a row that is exactly zero, e.g. dead CPS units, stays zero and still differs)."""
    from tinyproto.privacy import attack

    base = dict(profile="smoke", rounds=1, alpha=1.0, num_clients=4, client_workers=1)
    df = attack(Config(algorithm="tinyproto-fp", dp_clip=1e-3, **base))
    assert (df.tvd_attack - df.tvd_presence).abs().median() < 1e-6
    assert (df.tvd_attack - df.tvd_presence).abs().mean() < 0.01
