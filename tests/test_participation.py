"""Partial participation in the in-process engine: join_ratio and drop_rate (HtFLlib's).

Which clients train and whose upload is lost depends only on (seed, round); the run records who
took part; a resumed run ends with the uninterrupted run's numbers; the defaults change nothing
(no new columns, the same run ids, every committed run folder still verifies).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tinyproto import Config, run, store
from tinyproto.config import ConfigError
from tinyproto.config.participation import is_partial, num_sampled, participation

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ["train_loss", "upload_floats", "download_floats", "upload_bytes", "test_acc"]


def config(**kw) -> Config:
    base = dict(
        algorithm="fedproto",
        profile="smoke",
        dataset="synthetic",
        num_classes=6,
        num_clients=5,
        alpha=0.3,
        rounds=4,
        max_samples=300,
        feature_dim=16,
        device="cpu",
        save_prototypes=False,
    )
    return Config(**{**base, **kw})


def test_the_draw_depends_on_seed_and_round_only():
    cfg = config(num_clients=20, join_ratio=0.35, drop_rate=0.25)
    draws = [participation(cfg, r) for r in range(200)]
    assert draws == [participation(cfg, r) for r in range(200)]
    assert {len(d.sampled) for d in draws} == {7} == {num_sampled(cfg)}  # floor(0.35 x 20)
    assert all(d.sampled == tuple(sorted(set(d.sampled))) for d in draws)
    assert all(set(d.dropped) <= set(d.sampled) for d in draws)
    assert len({d.sampled for d in draws}) > 100  # rounds draw differently
    lost = np.mean([len(d.dropped) / len(d.sampled) for d in draws])
    assert abs(lost - 0.25) < 0.05  # each sampled client drops with probability drop_rate
    other = config(num_clients=20, join_ratio=0.35, drop_rate=0.25, seed=1)
    assert [participation(other, r) for r in range(20)] != draws[:20]
    assert participation(config(num_clients=100, join_ratio=0.29), 0).sampled.__len__() == 29
    assert len(participation(config(num_clients=5, join_ratio=0.1), 0).sampled) == 1  # at least 1


def test_by_default_everyone_takes_part_and_nothing_changes():
    cfg = config()
    assert not is_partial(cfg) and participation(cfg, 3).sampled == tuple(range(5))
    assert participation(cfg, 3).dropped == ()
    assert config(join_ratio=1.0, drop_rate=0.0).run_id() == cfg.run_id()
    assert config(join_ratio=1, drop_rate=0).run_id() == cfg.run_id()
    assert config(join_ratio=0.5).run_id() != cfg.run_id() != config(drop_rate=0.1).run_id()


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(join_ratio=0), r"invalid join_ratio=0: a finite number in \(0, 1\]"),
        (dict(join_ratio=1.5), r"invalid join_ratio=1.5"),
        (dict(drop_rate=1.0), r"invalid drop_rate=1.0: a finite number in \[0, 1\)"),
        (dict(drop_rate=-0.1), r"invalid drop_rate=-0.1"),
        (dict(drop_rate=math.nan), r"NaN and inf are refused"),
    ],
)
def test_bad_rates_are_refused_with_one_line(kw, message):
    with pytest.raises(ConfigError, match=message):
        config(**kw)


def test_a_run_records_who_took_part_and_only_their_uploads_count(tmp_path):
    cfg = config(join_ratio=0.6, drop_rate=0.3)
    res = run(cfg, root=tmp_path, progress=False)
    m = pd.read_csv(res.run_dir / "metrics.csv", keep_default_na=False, dtype=str)
    draws = [participation(cfg, r) for r in range(cfg.rounds)]
    assert list(m["clients"]) == [" ".join(map(str, d.uploading)) for d in draws]
    assert list(m["dropped"]) == [" ".join(map(str, d.dropped)) for d in draws]
    assert any(d.dropped for d in draws) and any(len(d.uploading) < 3 for d in draws)
    # FedProto's upload: one float vector of d per class a client holds; only arrivals count
    held = [int((c.train_counts > 0).sum()) for c in _fed(cfg)]
    want = [cfg.feature_dim * sum(held[c] for c in d.uploading) for d in draws]
    assert res.metrics["upload_floats"].tolist() == want
    assert (res.metrics["download_floats"] > 0).tolist() == [bool(d.uploading) for d in draws]
    # every client is still evaluated every round, also those that never took part
    assert res.clients.groupby("round")["client"].nunique().tolist() == [5] * cfg.rounds
    store.verify_run(res.run_dir)


def _fed(cfg: Config):
    from tinyproto.runtime.engine import setup

    return setup(cfg, clients=()).fed.clients


def test_partial_runs_are_deterministic_and_resume_to_the_same_numbers(tmp_path):
    cfg = config(join_ratio=0.6, drop_rate=0.3, checkpoint_every=1)
    a = run(cfg, root=tmp_path / "a", progress=False)
    b = run(cfg, root=tmp_path / "b", progress=False, stop_after=2)
    assert len(b.metrics) == 2
    b = run(cfg, root=tmp_path / "b", progress=False, resume=True)
    cols = [*NUMBERS, "clients", "dropped"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols], check_exact=True)
    full = run(config(), root=tmp_path / "c", progress=False)
    assert not a.metrics[NUMBERS].equals(full.metrics[NUMBERS])  # the draw mattered


def test_a_default_run_writes_the_columns_it_always_wrote(tmp_path):
    res = run(config(rounds=1), root=tmp_path, progress=False)
    assert "clients" not in res.metrics and "dropped" not in res.metrics


def test_every_committed_run_folder_still_verifies_under_its_id():
    folders = [p for p in sorted((ROOT / "results" / "runs").glob("*")) if store.is_complete(p)]
    assert len(folders) >= 10
    for folder in folders:
        cfg = store.verify_run(folder)["config"]  # config.json hashes to the folder's name
        assert cfg.join_ratio == 1.0 and cfg.drop_rate == 0.0
