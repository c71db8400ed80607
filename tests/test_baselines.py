"""Mechanics of the four baselines (LG-FedAvg, FedDistill, FML, FedKD) over their messages."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from tinyproto import Config
from tinyproto.algorithms import REGISTRY
from tinyproto.algorithms.common import kl_htfllib
from tinyproto.algorithms.feddistill import FedDistill, soft_target_loss
from tinyproto.algorithms.svd import (
    Compressed,
    compress,
    decompress,
    energy_rank,
    factor_key,
    ranks,
    threshold,
)
from tinyproto.comm import Message, MessageError
from tinyproto.config import ConfigError
from tinyproto.runtime.engine import seed_for, setup


def make(algorithm: str, **kw):
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=6,
        num_clients=3,
        alpha=0.3,
        rounds=3,
        max_samples=240,
        feature_dim=16,
        save_prototypes=False,
    )
    base.update(kw)
    return setup(Config(**base))


def client_uploads(S, rnd: int = 0) -> dict[int, Message]:
    uploads = {}
    for st, d in zip(S.states, S.data):
        s = seed_for(S.config.seed, rnd, st.cid)
        torch.manual_seed(s)
        uploads[st.cid], loss = S.algo.client_round(st, d, rnd, torch.Generator().manual_seed(s))
        assert math.isfinite(loss)
    return uploads


def one_round(S, rnd: int = 0):
    uploads = client_uploads(S, rnd)
    downloads = S.algo.server_round(uploads, rnd)
    for st in S.states:
        S.algo.receive(st, downloads[st.cid])
    return uploads, downloads


def weighted(uploads: dict[int, Message], key: str, weights: dict[int, int]) -> torch.Tensor:
    total = sum(weights.values())
    return sum(uploads[c][key] * (weights[c] / total) for c in uploads)


def test_registry_has_all_nine():
    from tinyproto.config import ALGORITHMS

    assert set(REGISTRY) == set(ALGORITHMS)


# -- LG-FedAvg ----------------------------------------------------------------------------------


def test_lg_fedavg_heads_are_the_weighted_mean_and_bodies_stay_local():
    S = make("lg-fedavg")
    n = {st.cid: d.num_train for st, d in zip(S.states, S.data)}
    assert len(set(n.values())) > 1  # unequal counts: weighting matters
    uploads = client_uploads(S)
    for cid, m in uploads.items():
        assert set(m.arrays) == {"weight", "bias"}  # n_i is metadata: an int config entry
        assert m.config == {"num_train": n[cid]} and type(m.config["num_train"]) is int
        assert m.floats() == 16 * 6 + 6 and m.nbytes() == 4 * (16 * 6 + 6)
    bodies = {st.cid: [p.detach().clone() for p in st.model.base.parameters()] for st in S.states}
    downloads = S.algo.server_round(uploads, 0)
    for st in S.states:
        S.algo.receive(st, downloads[st.cid])
    W, b = weighted(uploads, "weight", n), weighted(uploads, "bias", n)
    uniform = sum(m["weight"] for m in uploads.values()) / len(uploads)
    assert not torch.allclose(W, uniform)
    for st in S.states:
        torch.testing.assert_close(st.model.head.weight, W)
        torch.testing.assert_close(st.model.head.bias, b)
        for p, q in zip(st.model.base.parameters(), bodies[st.cid]):
            assert torch.equal(p, q)


# -- FedDistill ---------------------------------------------------------------------------------


def test_feddistill_server_averages_each_class_over_its_holders_only():
    S = make("feddistill")
    algo: FedDistill = S.algo
    K = 6
    a = torch.arange(2 * K, dtype=torch.float32).reshape(2, K)
    b = -torch.ones(3, K)
    uploads = {
        0: Message({"classes": torch.tensor([0, 2]), "logits": a}),
        1: Message({"classes": torch.tensor([2, 3, 5]), "logits": b}),
        2: Message({"classes": torch.tensor([5]), "logits": torch.full((1, K), 4.0)}),
    }
    down = algo.server_round(uploads, 0)
    assert set(down) == {0, 1, 2}
    msg = down[0]
    assert msg["classes"].tolist() == [0, 2, 3, 5]  # classes 1 and 4: no holder, not sent
    L = dict(zip(msg["classes"].tolist(), msg["logits"]))
    torch.testing.assert_close(L[0], a[0])
    torch.testing.assert_close(L[2], (a[1] + b[0]) / 2)
    torch.testing.assert_close(L[3], b[1])
    torch.testing.assert_close(L[5], (b[2] + 4.0) / 2)
    assert msg.floats() == 4 * K
    algo.receive(S.states[0], msg)
    assert S.states[0].has_logit.tolist() == [True, False, True, True, False, True]


def test_feddistill_upload_is_eval_mode_class_mean_logits():
    S = make("feddistill")
    st, d = S.states[1], S.data[1]
    up, _ = S.algo.client_round(st, d, 0, torch.Generator().manual_seed(0))
    held = torch.nonzero(torch.as_tensor(d.split.train_counts)).squeeze(1)
    assert up["classes"].tolist() == held.tolist()
    st.model.eval()
    with torch.no_grad():
        x = d.dataset.images(d.split.train_idx)
        y = d.dataset.y[d.split.train_idx]
        logits = st.model(x)[1]
    c = int(held[0])
    torch.testing.assert_close(up["logits"][0], logits[y == c].mean(0), rtol=1e-5, atol=1e-5)


def test_feddistill_loss_only_regularises_classes_with_a_global_logit():
    torch.manual_seed(0)
    out = torch.randn(4, 3)
    y = torch.tensor([0, 1, 1, 2])
    G = torch.randn(3, 3)
    has = torch.tensor([True, False, True])
    ce = F.cross_entropy(out, y)
    assert soft_target_loss(out, y, None, None, 1.0) == ce
    assert soft_target_loss(out, y, G, has, 0.0) == ce
    soft = -(G[y].softmax(1) * out.log_softmax(1)).sum(1)
    want = ce + 2.0 * (soft[0] + soft[3]) / 4
    torch.testing.assert_close(soft_target_loss(out, y, G, has, 2.0), want)


# -- FML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["uniform", "samples"])
def test_fml_memes_identical_after_aggregation_and_weighted(weighting):
    S = make("fml", fml_weighting=weighting)
    assert S.algo.shared_params == sum(p.numel() for p in S.algo.initial.parameters())
    # all memes start equal; local models are heterogeneous
    p0 = [p.clone() for p in S.states[0].meme.parameters()]
    for st in S.states[1:]:
        assert all(torch.equal(p, q) for p, q in zip(st.meme.parameters(), p0))
    n = {st.cid: d.num_train for st, d in zip(S.states, S.data)}
    if weighting == "uniform":  # HtFLlib: 1/N whatever n_i
        n = {cid: 1 for cid in n}
    uploads, _ = one_round(S)
    # training moved the memes apart before aggregation
    assert not torch.equal(uploads[0]["head.weight"], uploads[1]["head.weight"])
    for name, p in S.states[0].meme.named_parameters():
        torch.testing.assert_close(p, weighted(uploads, name, n))
        for st in S.states[1:]:
            assert torch.equal(dict(st.meme.named_parameters())[name], p)
    assert uploads[0].floats() == S.algo.shared_params


def test_fml_kl_is_htfllib_elementwise_mean():
    torch.manual_seed(1)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = F.kl_div(F.log_softmax(a, 1), F.softmax(b, 1))  # nn.KLDivLoss() default
    torch.testing.assert_close(kl_htfllib(a, b), ref)
    assert kl_htfllib(a, a) == pytest.approx(0.0, abs=1e-7)


def test_fml_sends_parameters_only_bn_statistics_stay_local():
    S = make("fml", shared_model="resnet8", num_clients=2)
    meme = S.states[0].meme
    assert meme.arch == "resnet8"
    bn = meme.base.bn1
    bn.running_mean.fill_(7.0)
    down = Message({k: p.detach().clone() for k, p in S.algo.initial.named_parameters()})
    S.algo.receive(S.states[0], down)
    assert torch.all(bn.running_mean == 7.0)
    assert not any("running" in k for k in down.arrays)


def test_fml_rejects_unknown_shared_model():
    with pytest.raises(ConfigError, match="shared_model"):
        make("fml", shared_model="vgg99")


# -- FedKD --------------------------------------------------------------------------------------


def low_rank_matrix(m: int, n: int, S: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(S), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(S), generator=g, dtype=torch.float64))
    return (U * torch.tensor(S, dtype=torch.float64)) @ V.T


@pytest.mark.parametrize("T", [0.5, 0.95, 0.98])
def test_fedkd_svd_keeps_the_smallest_rank_reaching_the_threshold(T):
    sv = [10.0, 6.0, 3.0, 2.0, 1.0, 0.5, 0.2]
    M = low_rank_matrix(40, 30, sv).float()
    conv = low_rank_matrix(12, 3 * 3 * 3, [5.0, 1.0, 0.1], seed=1).float().reshape(12, 3, 3, 3)
    params = {"fc.weight": M, "conv.weight": conv, "fc.bias": torch.ones(40)}
    c = compress(params, T)
    energies = torch.tensor(sv, dtype=torch.float64).pow(2)
    frac = energies.cumsum(0) / energies.sum()
    k = int((frac < T).sum()) + 1  # the smallest k with energy >= T
    assert c.ranks["fc.weight"] == k
    assert c.energy["fc.weight"] >= T
    assert k == 1 or frac[k - 2] < T  # one fewer factor would not reach T
    assert c.ranks["fc.bias"] is None and "fc.bias" in c.tensors
    assert tuple(c.tensors[factor_key("fc.weight", "U")].shape) == (40, k)
    assert tuple(c.tensors[factor_key("fc.weight", "V")].shape) == (k, 30)
    # reconstruction error = the dropped energy (Eckart-Young)
    rebuilt, kept = decompress(
        Message(c.tensors), {n: tuple(p.shape) for n, p in params.items()}, "test"
    )
    err = (rebuilt["fc.weight"].double() - M.double()).pow(2).sum()
    total = M.double().pow(2).sum()
    assert float(err / total) == pytest.approx(1 - c.energy["fc.weight"], abs=1e-5)
    assert rebuilt["conv.weight"].shape == conv.shape
    assert kept == c.kept_floats == Message(c.tensors).floats()


def test_fedkd_sends_dense_when_factors_are_not_smaller():
    full_rank = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    c = compress({"w": full_rank, "z": torch.zeros(5, 4)}, 0.95)
    assert c.ranks == {"w": None, "z": None}  # k*(6+6+1) >= 36 for k >= 3; zero matrix
    assert torch.equal(c.tensors["w"], full_rank) and c.kept_floats == 36 + 20


def test_fedkd_threshold_schedule():
    assert threshold(0, 10, 0.95, 0.98) == pytest.approx(0.953)
    assert threshold(9, 10, 0.95, 0.98) == pytest.approx(0.98)
    S = torch.tensor([3.0, 2.0, 1.0])
    assert energy_rank(S, 9 / 14) == 1 and energy_rank(S, 9 / 14 + 1e-6) == 2
    assert energy_rank(S, 1.0) == 3


def test_fedkd_mentees_identical_after_aggregation_and_w_h_stays_local():
    S = make("fedkd", fedkd_t_start=0.6, fedkd_t_end=0.7)
    uploads, downloads = one_round(S)
    assert all(isinstance(m.metrics["kept_floats"], int) for m in uploads.values())
    for m in uploads.values():
        assert not any(k.startswith("w_h") for k in m.arrays)
    assert any(k is not None for k in ranks(downloads[0]).values())
    params, _ = decompress(downloads[0], S.algo.shapes, "server")
    for st in S.states:
        for name, p in st.mentee.named_parameters():
            torch.testing.assert_close(p, params[name].to(p.dtype))
    w = [st.w_h.weight for st in S.states]
    assert not torch.equal(w[0], w[1])  # private projections, never averaged
    assert S.algo.server.kept_floats_per_round[0] == sum(
        m.floats() for m in [*uploads.values(), *downloads.values()]
    )


def test_fedkd_server_averages_reconstructed_mentees_weighted():
    S = make("fedkd", fedkd_t_start=0.99, fedkd_t_end=1.0)  # T=1: lossless (all dense or exact)
    n = {st.cid: d.num_train for st, d in zip(S.states, S.data)}
    uploads = client_uploads(S)
    rebuilt = {c: decompress(m, S.algo.shapes, f"client {c}")[0] for c, m in uploads.items()}
    down = S.algo.server_round(uploads, S.config.rounds - 1)  # last round: T = T_end = 1
    avg, _ = decompress(down[0], S.algo.shapes, "server")
    total = sum(n.values())
    for name in S.algo.shapes:
        want = sum(rebuilt[c][name] * (n[c] / total) for c in uploads)
        torch.testing.assert_close(avg[name], want, rtol=1e-4, atol=1e-5)


# -- malformed messages -------------------------------------------------------------------------


def corruptions(msg: Message, key: str):
    """(label, corrupted copy) for one field: wrong shape, missing, NaN, wrong dtype."""
    t = dict(msg.arrays)
    bad_shape = dict(t)
    bad_shape[key] = torch.cat([t[key], t[key]]) if t[key].dim() else t[key].reshape(1, -1)
    missing = {k: v for k, v in t.items() if k != key}
    nan = dict(t)
    nan[key] = t[key].clone().float()
    nan[key].view(-1)[0] = float("nan")
    cfg = dict(msg.config)
    return [
        ("shape", Message(bad_shape, cfg)),
        ("missing", Message(missing, cfg)),
        ("nan", Message(nan, cfg)),
    ]


@pytest.mark.parametrize(
    "algorithm,key",
    [
        ("lg-fedavg", "weight"),
        ("lg-fedavg", "bias"),
        ("feddistill", "logits"),
        ("fml", "head.weight"),
        ("fedkd", "head.bias"),
    ],
)
def test_malformed_uploads_raise_one_line_message_error(algorithm, key):
    S = make(algorithm)
    uploads = client_uploads(S)
    for label, bad in corruptions(uploads[1], key):
        broken = dict(uploads)
        broken[1] = bad
        with pytest.raises(MessageError) as e:
            S.algo.server_round(broken, 0)
        text = str(e.value)
        assert "client 1" in text and "\n" not in text, (label, text)
        assert key in text or label == "shape" and "class ids" in text, (label, text)


@pytest.mark.parametrize("algorithm", ["lg-fedavg", "fml", "fedkd"])
def test_bad_sample_counts_are_rejected(algorithm):
    S = make(algorithm)
    uploads = client_uploads(S)
    for value in (0, -3, 3.0, True, "3", [3], torch.tensor([3]), None):
        config = dict(uploads[2].config)
        if value is None:
            del config["num_train"]
        else:
            config["num_train"] = value
        broken = {**uploads, 2: Message(uploads[2].arrays, config, uploads[2].metrics)}
        with pytest.raises(MessageError, match="client 2.*num_train"):
            S.algo.server_round(broken, 0)
    t = {**uploads[2].arrays, "num_train": torch.tensor([3])}  # a count as payload: refused
    broken = {**uploads, 2: Message(t, uploads[2].config, uploads[2].metrics)}
    with pytest.raises(MessageError, match="client 2.*unexpected field 'num_train'"):
        S.algo.server_round(broken, 0)


def test_fedkd_rejects_inconsistent_factors():
    S = make("fedkd", fedkd_t_start=0.6, fedkd_t_end=0.7)
    uploads = client_uploads(S)
    name = next(n for n, k in ranks(uploads[0]).items() if k is not None)
    cfg = uploads[0].config
    t = dict(uploads[0].arrays)
    t[factor_key(name, "S")] = torch.cat([t[factor_key(name, "S")], torch.ones(1)])
    with pytest.raises(MessageError, match=f"client 0.*{name}.*inconsistent"):
        S.algo.server_round({**uploads, 0: Message(t, cfg)}, 0)
    t = dict(uploads[0].arrays)
    t[name] = torch.zeros(S.algo.shapes[name])  # dense and factored at once
    with pytest.raises(MessageError, match="dense and factored"):
        S.algo.server_round({**uploads, 0: Message(t, cfg)}, 0)
    assert isinstance(Compressed().meta(0.9), dict)


@pytest.mark.parametrize("algorithm", ["fml", "fedkd", "feddistill"])
def test_resume_gives_the_uninterrupted_numbers(algorithm, tmp_path):
    from tinyproto import run

    cfg = Config(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=5,
        num_clients=2,
        rounds=2,
        max_samples=120,
        feature_dim=12,
        save_prototypes=False,
        **(dict(fedkd_t_start=0.6, fedkd_t_end=0.7) if algorithm == "fedkd" else {}),
    )
    full = run(cfg, root=tmp_path / "a", progress=False)
    run(cfg, root=tmp_path / "b", progress=False, stop_after=1)
    resumed = run(cfg, root=tmp_path / "b", progress=False, resume=True)
    cols = ["test_acc", "train_loss", "upload_floats", "download_floats"]
    assert full.metrics[cols].equals(resumed.metrics[cols])
