"""Hostile messages: the server refuses every malformed upload, with its state unchanged.

Real uploads come from one round of tiny synthetic runs; each case corrupts a copy and hands it
to ``server_round``. A refusal must be a ``MessageError`` whose text is one line naming the
sender and the field, must leave ``server_state_dict()`` exactly as it was, and a valid round
afterwards must give exactly what it gives when the bad call never happened. Clients refuse
malformed downloads the same way, their state untouched.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tinyproto import Config
from tinyproto.algorithms import fedtgp as fedtgp_module
from tinyproto.algorithms.svd import ranks
from tinyproto.comm import Message, MessageError
from tinyproto.runtime.engine import seed_for, setup

ALL = (
    "local",
    "fedproto",
    "fedtgp",
    "tinyproto-fp",
    "tinyproto-ft",
    "feddistill",
    "lg-fedavg",
    "fml",
    "fedkd",
    "fedavg",
    "fedtiny",
)
N, K, D = 3, 6, 16
F32_MAX = torch.finfo(torch.float32).max


def config(algorithm: str, **kw) -> Config:
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=K,
        num_clients=N,
        alpha=0.3,
        rounds=3,
        max_samples=240,
        feature_dim=D,
        save_prototypes=False,
    )
    if algorithm in ("fedtgp", "tinyproto-ft"):
        base["server_epochs"] = 1
    if algorithm == "fedkd":  # low thresholds: some matrices travel as SVD factors
        base.update(fedkd_t_start=0.5, fedkd_t_end=0.7)
    base.update(kw)
    return Config(**base)


_CACHE: dict = {}


def prepared(algorithm: str, **kw):
    """(setup, round-0 uploads) after one round of client training; built once per config."""
    key = (algorithm, tuple(sorted(kw.items())))
    if key not in _CACHE:
        S = setup(config(algorithm, **kw))
        uploads = {}
        for st, d in zip(S.states, S.data):
            s = seed_for(S.config.seed, 0, st.cid)
            torch.manual_seed(s)
            uploads[st.cid], _ = S.algo.client_round(st, d, 0, torch.Generator().manual_seed(s))
        _CACHE[key] = (S, uploads)
    return _CACHE[key]


# -- corrupting copies of real messages ----------------------------------------------------------


def edited(msg: Message, changes: dict) -> Message:
    """A copy of ``msg`` with fields replaced (value None: field dropped)."""
    t = dict(msg.arrays)
    for k, v in changes.items():
        if v is None:
            t.pop(k, None)
        else:
            t[k] = v
    return Message(t, dict(msg.config), dict(msg.metrics))


def put(uploads: dict, cid: int, changes: dict) -> dict:
    out = dict(uploads)
    out[cid] = edited(uploads[cid], changes)
    return out


def put_all(uploads: dict, key: str, fn) -> dict:
    return {c: edited(m, {key: fn(m[key])}) for c, m in uploads.items()}


def with_value(t: torch.Tensor, index: int, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[index] = value
    return t


def factored(uploads: dict, cid: int) -> str:
    """A parameter that client ``cid``'s FedKD upload sends as SVD factors."""
    return next(n for n, k in ranks(uploads[cid]).items() if k is not None)


def fedkd_factor_overflow(u: dict) -> dict:
    name = factored(u, 0)
    big = {
        f"{name}#U": torch.full_like(u[0][f"{name}#U"], 1e13),
        f"{name}#S": torch.full_like(u[0][f"{name}#S"], 1e13),
        f"{name}#V": torch.full_like(u[0][f"{name}#V"], 1e13),
    }
    return put(u, 0, big)  # every factor finite; (U * S) @ V overflows


def fedkd_factor_above_bound(u: dict) -> dict:
    name = factored(u, 1)
    big = {f"{name}#{f}": torch.full_like(u[1][f"{name}#{f}"], 1e7) for f in "USV"}
    return put(u, 1, big)  # finite product ~k * 1e21, above the Frobenius bound


def fedkd_float64_factor(u: dict) -> dict:
    key = factored(u, 1) + "#S"
    return put(u, 1, {key: u[1][key].double()})


def duplicate_pairs(u: dict) -> list:
    return [(0, u[0]), (1, u[1]), (2, u[2]), (1, u[1])]


def keys(u: dict, ids: list) -> dict:
    """The same messages under other sender ids (dict order kept)."""
    return dict(zip(ids, u.values()))


# (case id, algorithm, corrupt(uploads) -> what server_round receives, texts the error must hold)
CASES = [
    # exact dtypes
    (
        "float64-protos",
        "fedproto",
        lambda u: put(u, 1, {"protos": u[1]["protos"].double()}),
        ["client 1", "'protos'", "torch.float64", "torch.float32"],
    ),
    (
        "float16-protos",
        "tinyproto-fp",
        lambda u: put(u, 1, {"protos": u[1]["protos"].half()}),
        ["client 1", "'protos'", "torch.float16", "torch.float32"],
    ),
    (
        "bfloat16-logits",
        "feddistill",
        lambda u: put(u, 0, {"logits": u[0]["logits"].bfloat16()}),
        ["client 0", "'logits'", "torch.bfloat16"],
    ),
    (
        "int32-classes",
        "fedtgp",
        lambda u: put(u, 2, {"classes": u[2]["classes"].int()}),
        ["client 2", "'classes'", "torch.int32", "torch.int64"],
    ),
    (
        "bool-classes",
        "tinyproto-ft",
        lambda u: put(u, 0, {"classes": torch.ones_like(u[0]["classes"], dtype=torch.bool)}),
        ["client 0", "'classes'", "torch.bool", "torch.int64"],
    ),
    (
        "uint8-count",
        "lg-fedavg",
        lambda u: {**u, 2: replace(u[2], config={"num_train": np.uint8(u[2].config["num_train"])})},
        ["client 2", "'num_train'", "uint8", "expected int"],
    ),
    (
        "int32-count",
        "fml",
        lambda u: {**u, 1: replace(u[1], config={"num_train": np.int32(u[1].config["num_train"])})},
        ["client 1", "'num_train'", "int32", "expected int"],
    ),
    (
        "float64-weight",
        "lg-fedavg",
        lambda u: put(u, 0, {"weight": u[0]["weight"].double()}),
        ["client 0", "'weight'", "torch.float64"],
    ),
    ("float64-factor", "fedkd", fedkd_float64_factor, ["client 1", "#S'", "torch.float64"]),
    (
        "float64-fedavg",
        "fedavg",
        lambda u: put(u, 2, {"head.weight": u[2]["head.weight"].double()}),
        ["client 2", "'head.weight'", "torch.float64"],
    ),
    (
        "join-with-a-field",
        "fedtiny",
        lambda u: put(u, 0, {"head.weight": torch.zeros(3)}),
        ["client 0", "'head.weight'", "no mask chosen yet"],
    ),
    # fields: extra, missing, not a tensor, wrong shape, layout, device, autograd
    (
        "extra-field",
        "fedproto",
        lambda u: put(u, 1, {"debug": torch.zeros(3)}),
        ["client 1", "'debug'", "unexpected"],
    ),
    (
        "extra-int-field",
        "feddistill",
        lambda u: put(u, 2, {"counts": torch.ones(3, dtype=torch.long)}),
        ["client 2", "'counts'", "unexpected"],
    ),
    (
        "extra-bn-stats",
        "fml",
        lambda u: put(u, 0, {"base.bn.running_mean": torch.zeros(16)}),
        ["client 0", "'base.bn.running_mean'", "unexpected"],
    ),
    (
        "extra-private-projection",
        "fedkd",
        lambda u: put(u, 2, {"w_h.weight": torch.zeros(D, D)}),
        ["client 2", "'w_h.weight'", "unexpected"],
    ),
    (
        "extra-field-local",
        "local",
        lambda u: put(u, 0, {"x": torch.zeros(2)}),
        ["client 0", "'x'", "unexpected"],
    ),
    (
        "extra-meta",
        "fedproto",
        lambda u: {**u, 1: Message(dict(u[1].arrays), {"payload": torch.zeros(1000)})},
        ["client 1", "'payload'", "meta"],
    ),
    (
        "missing-classes",
        "tinyproto-ft",
        lambda u: put(u, 1, {"classes": None}),
        ["client 1", "'classes'", "missing"],
    ),
    (
        "missing-bias",
        "lg-fedavg",
        lambda u: put(u, 1, {"bias": None}),
        ["client 1", "'bias'", "missing"],
    ),
    (
        "not-a-tensor",
        "lg-fedavg",
        lambda u: put(u, 2, {"weight": u[2]["weight"].tolist()}),
        ["client 2", "'weight'", "not a tensor"],
    ),
    (
        "shape-protos",
        "fedtgp",
        lambda u: put(u, 0, {"protos": torch.cat([u[0]["protos"], u[0]["protos"][:, :1]], 1)}),
        ["client 0", "'protos'", "shape"],
    ),
    (
        "shape-classes-2d",
        "tinyproto-fp",
        lambda u: put(u, 2, {"classes": u[2]["classes"].unsqueeze(0)}),
        ["client 2", "'classes'", "shape"],
    ),
    (
        "shape-logits",
        "feddistill",
        lambda u: put(u, 1, {"logits": u[1]["logits"][:, :-1]}),
        ["client 1", "'logits'", "shape"],
    ),
    (
        "count-mismatch",
        "fedproto",
        lambda u: put(u, 0, {"classes": u[0]["classes"][:-1]}),
        ["client 0", "'classes'", "class ids"],
    ),
    (
        "sparse-protos",
        "fedproto",
        lambda u: put(u, 2, {"protos": u[2]["protos"].to_sparse()}),
        ["client 2", "'protos'", "layout"],
    ),
    (
        "meta-device",
        "fedtgp",
        lambda u: put(u, 1, {"protos": u[1]["protos"].to("meta")}),
        ["client 1", "'protos'", "device"],
    ),
    (
        "requires-grad",
        "fedproto",
        lambda u: put(u, 1, {"protos": u[1]["protos"].clone().requires_grad_()}),
        ["client 1", "'protos'", "grad"],
    ),
    # values: NaN, inf, magnitude
    (
        "nan-protos",
        "fedproto",
        lambda u: put(u, 1, {"protos": with_value(u[1]["protos"], 0, math.nan)}),
        ["client 1", "'protos'", "NaN"],
    ),
    (
        "inf-protos",
        "fedtgp",
        lambda u: put(u, 2, {"protos": with_value(u[2]["protos"], 3, math.inf)}),
        ["client 2", "'protos'", "inf"],
    ),
    (
        "nan-logits",
        "feddistill",
        lambda u: put(u, 0, {"logits": with_value(u[0]["logits"], 1, math.nan)}),
        ["client 0", "'logits'", "NaN"],
    ),
    (
        "inf-bias",
        "lg-fedavg",
        lambda u: put(u, 1, {"bias": with_value(u[1]["bias"], 0, -math.inf)}),
        ["client 1", "'bias'", "inf"],
    ),
    (
        "1e38-sum-overflow",
        "fedproto",
        lambda u: put_all(u, "protos", lambda t: t * 0 + 1e38),
        ["client 0", "'protos'", "bound"],
    ),
    (
        "-1e38-sum-overflow",
        "tinyproto-fp",
        lambda u: put_all(u, "protos", lambda t: t * 0 - 1e38),
        ["client 0", "'protos'", "bound"],
    ),
    (
        "1e38-logits",
        "feddistill",
        lambda u: put_all(u, "logits", lambda t: t * 0 + 1e38),
        ["client 0", "'logits'", "bound"],
    ),
    (
        "1e38-meme",
        "fml",
        lambda u: put_all(u, "head.weight", lambda t: t * 0 + 1e38),
        ["client 0", "'head.weight'", "bound"],
    ),
    (
        "1e20-squared-distances",
        "fedtgp",
        lambda u: put_all(u, "protos", lambda t: t * 0 + 1e20),
        ["client 0", "'protos'", "bound"],
    ),
    (
        "1e30-squared-distances",
        "tinyproto-ft",
        lambda u: put(u, 1, {"protos": u[1]["protos"] * 0 + 1e30}),
        ["client 1", "'protos'", "bound"],
    ),
    (
        "factor-product-overflow",
        "fedkd",
        fedkd_factor_overflow,
        ["client 0", "rebuilt from its SVD factors", "NaN or inf"],
    ),
    (
        "factor-product-above-bound",
        "fedkd",
        fedkd_factor_above_bound,
        ["client 1", "rebuilt from its SVD factors", "bound"],
    ),
    # class ids
    (
        "class-out-of-range",
        "fedproto",
        lambda u: put(u, 1, {"classes": u[1]["classes"] * 0 + K}),
        ["client 1", "'classes'", f"[0, {K})"],
    ),
    (
        "negative-class",
        "feddistill",
        lambda u: put(u, 2, {"classes": with_value(u[2]["classes"], 0, -1)}),
        ["client 2", "'classes'", f"[0, {K})"],
    ),
    (
        "repeated-class",
        "tinyproto-ft",
        lambda u: put(u, 0, {"classes": u[0]["classes"] * 0 + u[0]["classes"][0]}),
        ["client 0", "'classes'", "repeat"],
    ),
    # senders and the round's container
    (
        "unknown-sender-99",
        "fedproto",
        lambda u: keys(u, [0, 99, 2]),
        ["client 99", "sender id", f"[0, {N})"],
    ),
    ("negative-sender", "feddistill", lambda u: keys(u, [0, 1, -1]), ["client -1", "sender id"]),
    ("bool-sender", "lg-fedavg", lambda u: keys(u, [0, True, 2]), ["client True", "sender id"]),
    ("string-sender", "fml", lambda u: keys(u, ["0", 1, 2]), ["client '0'", "sender id"]),
    ("float-sender", "fedkd", lambda u: keys(u, [0, 1.0, 2]), ["client 1.0", "sender id"]),
    (
        "tensor-sender",
        "tinyproto-fp",
        lambda u: [(torch.zeros(2, 2), u[0])],
        ["client <a Tensor>", "sender id has type Tensor"],
    ),
    (
        "unnamed-field",
        "fedproto",
        lambda u: {**u, 0: Message({**u[0].arrays, 7: torch.zeros(1)})},
        ["client 0", "field 7", "not named by a string"],
    ),
    (
        "duplicate-sender-pairs",
        "fedtgp",
        duplicate_pairs,
        ["client 1", "sender id", "more than once"],
    ),
    (
        "not-a-pair",
        "tinyproto-fp",
        lambda u: [(0, u[0], "x"), (1, u[1])],
        ["upload #0", "(sender id, message)"],
    ),
    ("non-message", "fml", lambda u: {**u, 1: dict(u[1].arrays)}, ["client 1", "Message", "dict"]),
    ("non-message-local", "local", lambda u: {**u, 2: None}, ["client 2", "Message"]),
    (
        "1e38-fedavg",
        "fedavg",
        lambda u: put_all(u, "head.bias", lambda t: t * 0 + 1e38),
        ["client 0", "'head.bias'", "bound"],
    ),
    (
        "string-sender-fedtiny",
        "fedtiny",
        lambda u: keys(u, [0, "1", 2]),
        ["client '1'", "sender id"],
    ),
    ("uploads-not-a-collection", "feddistill", lambda u: u[0], ["uploads", "Message"]),
]


def same(a, b) -> bool:
    """Deep equality of nested dicts / lists of tensors and numbers (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.nan_to_num(), b.nan_to_num())
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def same_downloads(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(same(a[c].arrays, b[c].arrays) for c in a)


def assert_refused(algo, bad, rnd: int, needles, valid: dict) -> str:
    """server_round(bad) raises a one-line MessageError holding ``needles``; state unchanged;
    the next valid round equals the one a twin that never saw ``bad`` computes."""
    twin = copy.deepcopy(algo)
    before = copy.deepcopy(algo.server_state_dict())
    with pytest.raises(MessageError) as e:
        algo.server_round(bad, rnd)
    text = str(e.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    assert same(algo.server_state_dict(), before), "server state changed by a refused round"
    got = algo.server_round(valid, rnd)
    want = twin.server_round(valid, rnd)
    assert same_downloads(got, want)
    assert same(algo.server_state_dict(), twin.server_state_dict())
    return text


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_upload_is_refused(case):
    _, algorithm, corrupt, needles = case
    S, uploads = prepared(algorithm)
    algo = copy.deepcopy(S.algo)
    assert_refused(algo, corrupt(uploads), 0, needles, uploads)


@pytest.mark.parametrize("empty", [{}, []], ids=["dict", "list"])
@pytest.mark.parametrize("algorithm", ALL)
def test_empty_round_is_refused_alike(algorithm, empty):
    S, uploads = prepared(algorithm)
    algo = copy.deepcopy(S.algo)
    text = assert_refused(algo, empty, 4, ["server: round 4: no uploads to aggregate"], uploads)
    assert text == "server: round 4: no uploads to aggregate"


@pytest.mark.parametrize("algorithm", ["fedtgp", "tinyproto-ft", "fedkd"])
def test_stateful_servers_resume_exactly_after_several_refusals(algorithm):
    """Three refusals in a row, then two valid rounds: same as two valid rounds alone."""
    S, uploads = prepared(algorithm)
    algo, twin = copy.deepcopy(S.algo), copy.deepcopy(S.algo)
    key = next(k for k, t in uploads[0].arrays.items() if t.is_floating_point())
    for bad in (
        {},
        put(uploads, 2, {key: with_value(uploads[2][key], 0, math.nan)}),
        keys(uploads, [0, 1, 7]),
    ):
        with pytest.raises(MessageError):
            algo.server_round(bad, 0)
    for rnd in (0, 1):
        assert same_downloads(algo.server_round(uploads, rnd), twin.server_round(uploads, rnd))
    assert same(algo.server_state_dict(), twin.server_state_dict())


# -- NaN / inf produced on the server --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["fedtgp", "tinyproto-ft"])
def test_server_training_that_turns_nan_is_refused_and_rolled_back(algorithm, monkeypatch):
    """A server step that turns the trainable prototypes NaN: the post-check refuses the
    downloads, names the algorithm, field and class, and restores the TGP weights."""
    S, uploads = prepared(algorithm)
    algo = copy.deepcopy(S.algo)
    real = fedtgp_module.margin_contrastive_loss

    def poisoned(p, y, G, margin):
        return real(p, y, G, margin) * math.nan

    monkeypatch.setattr(fedtgp_module, "margin_contrastive_loss", poisoned)
    twin = copy.deepcopy(algo)
    before = copy.deepcopy(algo.server_state_dict())
    with pytest.raises(MessageError) as e:
        algo.server_round(uploads, 0)
    text = str(e.value)
    assert "\n" not in text
    for needle in (f"server: round 0: {algorithm}", "'protos'", "class 0", "NaN or inf"):
        assert needle in text, (needle, text)
    assert same(algo.server_state_dict(), before)
    assert all(torch.isfinite(p).all() for p in algo.server.tgp.parameters())
    monkeypatch.setattr(fedtgp_module, "margin_contrastive_loss", real)
    assert same_downloads(algo.server_round(uploads, 0), twin.server_round(uploads, 0))


def test_fedtgp_divergence_from_a_huge_server_lr_is_refused():
    """A real divergence (no patching): server_lr = 1e30 sends the TGP weights to inf/NaN."""
    S, uploads = prepared("fedtgp", server_lr=1e30)
    algo = copy.deepcopy(S.algo)
    before = copy.deepcopy(algo.server_state_dict())
    with pytest.raises(MessageError, match=r"server: round 0: fedtgp .*'protos'") as e:
        algo.server_round(uploads, 0)
    assert "\n" not in str(e.value)
    assert same(algo.server_state_dict(), before)


def test_values_just_below_the_bound_aggregate_to_finite_downloads():
    """The bound is what the server's sum needs: N uploads at 0.99 x bound stay finite."""
    S, uploads = prepared("fedproto")
    algo = copy.deepcopy(S.algo)
    with pytest.raises(MessageError) as e:
        algo.server_round(put_all(uploads, "protos", lambda t: t * 0 + 1e38), 0)
    bound = F32_MAX / (2 * N)
    assert f"{bound:.3g}" in str(e.value)
    near = put_all(uploads, "protos", lambda t: t * 0 + 0.99 * bound)
    down = algo.server_round(near, 0)
    assert torch.isfinite(down[0]["protos"]).all()


@pytest.mark.parametrize("algorithm", ["fedtgp", "tinyproto-ft"])
@pytest.mark.parametrize("signs", ["same", "random"])
def test_fedtgp_training_stays_finite_just_below_its_bound(algorithm, signs):
    """FedTGP's bound (sqrt(float32 max / (8 d)), / mu under APS) keeps the server's squared
    distances finite: uploads at 0.99 x bound train to finite prototypes, no refusal."""
    S, uploads = prepared(algorithm)
    algo = copy.deepcopy(S.algo)
    scale = 0.99 * algo.bound.value
    assert algo.bound.value < F32_MAX / (2 * N)  # tighter than the sum bound
    gen = torch.Generator().manual_seed(0)

    def big(t):
        if signs == "same":
            return torch.full_like(t, scale)
        return (torch.randint(0, 2, t.shape, generator=gen) * 2 - 1).float() * scale

    down = algo.server_round(put_all(uploads, "protos", big), 0)
    assert torch.isfinite(down[0]["protos"]).all()
    assert all(torch.isfinite(p).all() for p in algo.server.tgp.parameters())


# -- what the server accepts -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["fedproto", "tinyproto-ft", "lg-fedavg", "fedkd"])
def test_pairs_and_partial_rounds_are_accepted(algorithm):
    """(sender id, message) pairs give what the dict gives; a subset of the clients is a round."""
    S, uploads = prepared(algorithm)
    a, b = copy.deepcopy(S.algo), copy.deepcopy(S.algo)
    assert same_downloads(a.server_round(uploads, 0), b.server_round(list(uploads.items()), 0))
    part = {0: uploads[0], 2: uploads[2]}
    assert set(a.server_round(part, 1)) == {0, 2}


# -- the client side -------------------------------------------------------------------------------


def download_cases():
    def first_float(m):
        return next(k for k, t in m.arrays.items() if t.is_floating_point())

    return [
        ("fedproto", lambda m: edited(m, {"protos": m["protos"].double()}), "'protos'"),
        ("tinyproto-ft", lambda m: edited(m, {"classes": m["classes"] > 0}), "'classes'"),
        ("feddistill", lambda m: edited(m, {"extra": torch.zeros(1)}), "'extra'"),
        (
            "lg-fedavg",
            lambda m: edited(m, {"weight": with_value(m["weight"], 0, math.nan)}),
            "'weight'",
        ),
        ("fml", lambda m: edited(m, {"head.bias": None}), "'head.bias'"),
        ("fedkd", lambda m: edited(m, {first_float(m): m[first_float(m)].half()}), "torch.float16"),
        ("local", lambda m: edited(m, {"x": torch.zeros(1)}), "'x'"),
        ("fedavg", lambda m: edited(m, {"base.fc.bias": None}), "'base.fc.bias'"),
        ("fedtiny", lambda m: edited(m, {"extra": torch.zeros(1)}), "'extra'"),
    ]


@pytest.mark.parametrize(
    "algorithm,corrupt,needle", download_cases(), ids=[c[0] for c in download_cases()]
)
def test_client_refuses_malformed_download(algorithm, corrupt, needle):
    S, uploads = prepared(algorithm)
    algo = copy.deepcopy(S.algo)
    down = algo.server_round(uploads, 0)
    state = copy.deepcopy(S.states[0])
    before = copy.deepcopy(state.state_dict())
    with pytest.raises(MessageError) as e:
        algo.receive(state, corrupt(down[0]))
    text = str(e.value)
    assert "\n" not in text and "server" in text and needle in text, text
    assert same(state.state_dict(), before)
    algo.receive(state, down[0])  # the valid download still goes in
