"""The federated loop: determinism, resume, Eq. 12 evaluation, APS privacy, prototypes on disk."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tinyproto import Config, run
from tinyproto.algorithms.fedproto import nearest_prototype, prototype_loss
from tinyproto.config import SERVER_TRAINING_ALGORITHMS
from tinyproto.runtime.engine import setup
from tinyproto.store import load_prototypes, load_runs


def _cfg(algorithm="tinyproto-fp", **kw):
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        max_samples=400,
        num_clients=4,
        rounds=3,
        feature_dim=20,
    )
    if algorithm in SERVER_TRAINING_ALGORITHMS:
        base["server_epochs"] = 3
    base.update(kw)
    return Config(**base)


def _numbers(res):
    cols = ["round", "test_acc", "train_loss", "upload_floats", "download_floats"]
    return res.metrics[cols].to_numpy()


@pytest.mark.parametrize("algorithm", ["tinyproto-fp", "tinyproto-ft", "fedproto"])
def test_same_config_same_numbers(algorithm, tmp_path):
    a = run(_cfg(algorithm), root=tmp_path / "a", progress=False)
    b = run(_cfg(algorithm), root=tmp_path / "b", progress=False)
    np.testing.assert_array_equal(_numbers(a), _numbers(b))
    c = run(_cfg(algorithm, seed=1), root=tmp_path / "c", progress=False)
    assert not np.array_equal(_numbers(a), _numbers(c))


@pytest.mark.parametrize("algorithm", ["tinyproto-fp", "tinyproto-ft", "local"])
def test_resume_equals_uninterrupted(algorithm, tmp_path):
    cfg = _cfg(algorithm, rounds=4, checkpoint_every=1)
    full = run(cfg, root=tmp_path / "full", progress=False)
    part = run(cfg, root=tmp_path / "res", progress=False, stop_after=2)
    assert len(part.metrics) == 2 and (part.run_dir / "checkpoint.pt").exists()
    assert not (part.run_dir / "summary.json").exists()
    resumed = run(cfg, root=tmp_path / "res", resume=True, progress=False)
    np.testing.assert_array_equal(_numbers(full), _numbers(resumed))
    assert resumed.best_acc == full.best_acc and resumed.last_acc == full.last_acc
    assert not (resumed.run_dir / "checkpoint.pt").exists()  # removed once finished


def test_accuracy_is_total_correct_over_total_test(tmp_path):
    res = run(_cfg(), root=tmp_path, progress=False)
    last = res.clients[res.clients["round"] == res.metrics["round"].iloc[-1]]
    correct = (last["test_acc"] * last["test_samples"]).round().sum()
    assert res.metrics["test_acc"].iloc[-1] == pytest.approx(correct / last["test_samples"].sum())
    assert res.best_acc == res.metrics["test_acc"].max()
    assert res.last_acc == res.metrics["test_acc"].iloc[-1]


def test_eval_every_skips_rounds_but_always_evaluates_the_last(tmp_path):
    res = run(_cfg(rounds=5, eval_every=2), root=tmp_path, progress=False)
    evaluated = res.metrics["test_acc"].notna().tolist()
    assert evaluated == [False, True, False, True, True]


def test_eq12_nearest_prototype():
    target = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    has = torch.tensor([True, True, True, False])  # class 3 has no global prototype
    z = torch.tensor([[9.0, 1.0], [1.0, 8.0], [5.0, 5.1], [0.1, 0.2]])
    assert nearest_prototype(z, target, has).tolist() == [1, 2, 2, 0]


def test_prototype_loss_is_ce_plus_lambda_mse_and_skips_missing_targets():
    torch.manual_seed(0)
    z = torch.randn(4, 3, requires_grad=True)
    logits = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 0])
    target = torch.randn(5, 3)
    has = torch.tensor([True, False, True, True, True])
    loss = prototype_loss(z, logits, y, target, has, lam=10.0)
    ce = torch.nn.functional.cross_entropy(logits, y)
    tgt = target[y].clone()
    tgt[1] = z[1].detach()  # class 1 has no target: zero contribution
    assert loss.item() == pytest.approx((ce + 10 * ((z - tgt) ** 2).mean()).item(), rel=1e-6)
    assert prototype_loss(z, logits, y, None, None, 10.0).item() == pytest.approx(ce.item())


def test_aps_upload_hides_class_counts_and_server_sums(tmp_path):
    S = setup(_cfg(cps_dim=None, mu=0.01))
    algo, st, data = S.algo, S.states[0], S.data[0]
    gen = torch.Generator().manual_seed(0)
    up, _ = algo.client_round(st, data, 0, gen)
    assert set(up.arrays) == {"classes", "protos"} and not up.config  # no counts travel
    classes, p = st.classes, st.local
    n = torch.as_tensor(data.split.train_counts)[classes.cpu()].to(p.dtype)
    assert torch.allclose(up["protos"], p * n.unsqueeze(1))
    down = algo.server_round({0: up, 1: up}, 0)
    assert torch.allclose(down[0]["protos"], 2 * up["protos"])  # sum, no division
    algo.receive(st, down[0])
    assert torch.allclose(st.target[classes], 0.01 * 2 * up["protos"])


def test_tinyproto_clients_regularise_towards_sparse_targets(tmp_path):
    S = setup(_cfg())
    algo, st = S.algo, S.states[0]
    up, _ = algo.client_round(st, S.data[0], 0, torch.Generator().manual_seed(0))
    algo.receive(st, algo.server_round({0: up}, 0)[0])
    target, masks = st.target, S.ctx.masks
    assert (target[~masks] == 0).all()  # R(P~_j; m_j): zeros off the class's mask
    from tinyproto.cps import reconstruct

    classes = up["classes"]
    expected = S.ctx.mu * reconstruct(up["protos"], masks[classes])  # mu * R(P~_j; m_j)
    assert torch.allclose(target[classes], expected)
    assert st.has_target.sum() == classes.numel()


def test_run_writes_config_metrics_summary_prototypes(tmp_path):
    cfg = _cfg()
    res = run(cfg, root=tmp_path, progress=False)
    d = res.run_dir
    assert d.name == cfg.run_id()
    assert json.loads((d / "config.json").read_text())["algorithm"] == "tinyproto-fp"
    m = pd.read_csv(d / "metrics.csv")
    for col in (
        "round",
        "test_acc",
        "train_loss",
        "upload_floats",
        "download_floats",
        "upload_bytes",
        "download_bytes",
        "seconds",
    ):
        assert col in m.columns
    summary = json.loads((d / "summary.json").read_text())
    assert summary["comm_floats_per_round"] == summary["expected_floats_per_round"]
    assert summary["profile"] == "smoke" and summary["dataset"] == "synthetic"
    protos = load_prototypes(d)
    assert protos["local"].shape == (4, cfg.num_classes, 20) and protos["masks"].shape == (10, 20)
    df = load_runs(tmp_path)
    assert list(df["run_id"]) == [cfg.run_id()] and df["best_acc"].iloc[0] == res.best_acc


def test_reuse_returns_the_finished_run_without_recomputing(tmp_path):
    a = run(_cfg(), root=tmp_path, progress=False)
    b = run(_cfg(), root=tmp_path, progress=False, reuse=True)
    assert b.summary["wall_seconds"] == a.summary["wall_seconds"]  # read back, not rerun


def test_run_id_tracks_numbers_not_operations():
    a = _cfg()
    assert a.run_id() == _cfg(checkpoint_every=7, device="cpu").run_id()
    assert a.run_id() != _cfg(seed=3).run_id()
    assert a.run_id() != _cfg(cps_dim=5).run_id()
    assert a.run_id() != _cfg(mu=None).run_id()


@pytest.mark.parametrize("algorithm", ["tinyproto-fp", "tinyproto-ft"])
def test_without_the_regulariser_clients_train_exactly_as_local(algorithm, tmp_path):
    """The authors'-code variant (lam = 0): nothing the server sends reaches a client's
    training, so its losses are Local's round by round (only inference, Eq. 12, differs).
    docs/scorecard.md's note on the variant rests on this."""
    local = run(_cfg("local"), root=tmp_path / "local", progress=False)
    free = run(_cfg(algorithm, lam=0.0), root=tmp_path / "free", progress=False)
    with_reg = run(_cfg(algorithm), root=tmp_path / "reg", progress=False)
    losses = local.metrics["train_loss"].to_numpy()
    np.testing.assert_array_equal(free.metrics["train_loss"].to_numpy(), losses)
    assert not np.array_equal(with_reg.metrics["train_loss"].to_numpy()[1:], losses[1:])
