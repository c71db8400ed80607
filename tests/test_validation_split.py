"""The validation split (Config.validation, issue 23's mu tuning): carved from each client's
training split, evaluated instead of the test split, never touching the test data."""

from __future__ import annotations

import numpy as np
import pytest

from tinyproto import Config, run
from tinyproto.config import ConfigError
from tinyproto.data import make_federated, make_synthetic


def _fed(validation):
    ds = make_synthetic(5, 400, 1, 28, 3)
    return make_federated(ds, 4, 0.5, partition_seed=3, split_seed=3, validation=validation)


def test_validation_is_carved_from_training_and_never_touches_test():
    plain, tuned = _fed(0.0), _fed(0.2)
    for p, t in zip(plain.clients, tuned.clients):
        train, test = set(p.train_idx.tolist()), set(p.test_idx.tolist())
        t_train, t_eval = set(t.train_idx.tolist()), set(t.test_idx.tolist())
        assert t_train | t_eval == train and not t_train & t_eval  # a partition of train
        assert not t_eval & test and not t_train & test  # the test split is never used
        assert len(t_eval) == int(np.floor(0.2 * len(train)))
        labels = plain.dataset.y.cpu().numpy()
        np.testing.assert_array_equal(t.train_counts, np.bincount(labels[sorted(t_train)], minlength=5))
    with pytest.raises(ValueError, match="invalid validation=1.0"):
        _fed(1.0)


def test_validation_runs_have_their_own_id_and_say_what_they_evaluated(tmp_path):
    base = Config("fedproto", profile="smoke", dataset="synthetic", rounds=1)
    tuned = base.replace(validation=0.25)
    assert tuned.run_id() != base.run_id()
    assert "validation" not in base.to_dict() or base.to_dict()["validation"] == 0.0
    r = run(tuned, root=tmp_path, progress=False)
    assert r.summary["evaluated_on"] == "validation"
    b = run(base, root=tmp_path, progress=False)
    assert b.summary["evaluated_on"] == "test"
    assert r.summary["num_train"] < b.summary["num_train"]
    assert r.summary["num_test"] == pytest.approx(b.summary["num_train"] - r.summary["num_train"])
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(ConfigError, match="invalid validation="):
            base.replace(validation=bad)


def test_a_client_too_small_to_spare_a_sample_evaluates_on_nothing():
    """Regression: a client with one training sample kept its *test* split as the evaluation
    split of a tuning run (the test data leaked into the grid search)."""
    from tinyproto.data.partition import FederatedData

    ds = make_synthetic(3, 200, 1, 28, 0)
    # 60 clients over 200 samples: many hold one or two samples (a single training sample)
    plain = make_federated(ds, 60, 0.5, partition_seed=0, split_seed=0)
    tuned = make_federated(ds, 60, 0.5, partition_seed=0, split_seed=0, validation=0.5)
    assert isinstance(tuned, FederatedData)
    small = [i for i, c in enumerate(plain.clients) if c.train_idx.numel() < 2]
    assert small, "the draw must hold a client with fewer than two training samples"
    for p, t in zip(plain.clients, tuned.clients):
        assert not set(t.test_idx.tolist()) & set(p.test_idx.tolist())
    for i in small:
        assert tuned.clients[i].test_idx.numel() == 0
