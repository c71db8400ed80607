"""``precision="bf16"``: local training's forward passes under bfloat16 autocast, off by default.

Every algorithm that trains through ``train_local`` runs with it on the CPU; what leaves a client
stays float32 (the server's exact dtype checks would refuse anything else); the numbers move,
but stay deterministic; fp32 leaves run ids and results as they were."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tinyproto import Config, ConfigError, run
from tinyproto.algorithms.common import ClassSums, autocast_type
from tinyproto.config.profiles import ALGORITHMS, FEDTINY_ALGORITHMS

SMALL = dict(
    profile="smoke",
    dataset="synthetic",
    num_classes=4,
    num_clients=3,
    alpha=0.5,
    rounds=2,
    max_samples=160,
    feature_dim=16,
    save_prototypes=False,
)
TRAINED = [a for a in ALGORITHMS if a not in FEDTINY_ALGORITHMS]


@pytest.mark.parametrize("algorithm", TRAINED)
def test_bf16_runs_every_algorithm_and_stays_deterministic(algorithm, tmp_path):
    fp32 = Config(algorithm=algorithm, **SMALL)
    bf16 = fp32.replace(precision="bf16")
    assert bf16.run_id() != fp32.run_id()
    a = run(bf16, root=tmp_path / "a", progress=False)
    b = run(bf16, root=tmp_path / "b", progress=False)
    full = run(fp32, root=tmp_path / "c", progress=False)
    cols = [c for c in a.metrics.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols])  # deterministic
    assert (a.metrics["upload_floats"] == full.metrics["upload_floats"]).all()  # same messages
    assert a.metrics["train_loss"].notna().all()
    if algorithm != "local":  # bf16 arithmetic really ran: the losses differ from float32's
        assert not a.metrics["train_loss"].equals(full.metrics["train_loss"])


def test_fp32_is_the_default_and_keeps_run_ids():
    cfg = Config(algorithm="fedproto", profile="quick")
    assert cfg.precision == "fp32"
    assert cfg.run_id() == "fedproto-fmnist-cea0b0bd0b"  # the committed quick run's id
    assert "precision" not in cfg.to_dict() or cfg.to_dict()["precision"] == "fp32"


def test_bad_precision_is_one_line():
    with pytest.raises(ConfigError, match=r"invalid precision='fp16': one of fp32, bf16"):
        Config(precision="fp16")
    with pytest.raises(ConfigError, match=r"invalid precision='bf16'.*fedtiny"):
        Config(algorithm="fedtiny", precision="bf16")
    with pytest.raises(ConfigError, match=r"bfloat16 autocast runs on cpu or cuda"):
        autocast_type(Config(precision="bf16"), torch.device("mps"))
    assert autocast_type(Config(), torch.device("cpu")) is None
    assert autocast_type(Config(precision="bf16"), torch.device("cpu")) == "cpu"


def test_class_sums_stay_float32_under_autocast():
    sums = ClassSums(3)
    z = torch.randn(6, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = torch.nn.functional.linear(z, torch.eye(4))
    assert feats.dtype == torch.bfloat16
    sums.add(feats, torch.tensor([0, 1, 2, 0, 1, 2]))
    classes, means, n = sums.means()
    assert means.dtype == torch.float32 and n.tolist() == [2, 2, 2]
