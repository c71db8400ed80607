"""``compile``: the client models under torch.compile (nn.Module.compile, in place), off by default.

Stated tolerance: on the CPU a compiled run's per-round train loss is within 1e-5 (relative) of
the eager run's and its accuracies are the same; measured, they agree to every printed digit.
Compiled runs are deterministic and resume to the uninterrupted run's numbers (state_dict keys
do not change under nn.Module.compile, so checkpoints and messages are the eager ones)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tinyproto import Config, ConfigError, run

SMALL = dict(
    profile="smoke",
    dataset="synthetic",
    num_classes=4,
    num_clients=3,
    alpha=0.5,
    rounds=3,
    max_samples=160,
    feature_dim=16,
    save_prototypes=False,
    family="cnn_a",  # one architecture: one compilation
)


def _cols(m: pd.DataFrame) -> list[str]:
    return [c for c in m.columns if c != "seconds"]


@pytest.mark.parametrize("algorithm", ["fedproto", "fml"])  # prototypes; two models per client
def test_compiled_matches_eager_within_tolerance(algorithm, tmp_path):
    eager_cfg = Config(algorithm=algorithm, **SMALL)
    cfg = eager_cfg.replace(compile="default")
    assert cfg.run_id() != eager_cfg.run_id()
    eager = run(eager_cfg, root=tmp_path / "eager", progress=False)
    comp = run(cfg, root=tmp_path / "comp", progress=False)
    np.testing.assert_allclose(comp.metrics["train_loss"], eager.metrics["train_loss"], rtol=1e-5)
    assert comp.metrics["test_acc"].tolist() == eager.metrics["test_acc"].tolist()
    assert comp.metrics["upload_floats"].tolist() == eager.metrics["upload_floats"].tolist()


def test_compiled_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    cfg = Config(algorithm="tinyproto-fp", compile="default", checkpoint_every=1, **SMALL)
    whole = run(cfg, root=tmp_path / "whole", progress=False)
    run(cfg, root=tmp_path / "split", progress=False, stop_after=1)
    resumed = run(cfg, root=tmp_path / "split", progress=False, resume=True)
    cols = _cols(whole.metrics)
    pd.testing.assert_frame_equal(resumed.metrics[cols], whole.metrics[cols])


def test_compile_default_is_off_and_keeps_run_ids():
    cfg = Config(algorithm="fedproto", profile="quick")
    assert cfg.compile == "off" and cfg.run_id() == "fedproto-fmnist-cea0b0bd0b"
    with pytest.raises(ConfigError, match=r"invalid compile='max': one of off, default, reduce"):
        Config(compile="max")
