"""FedTiny (../shared/FEDTINY.md) and dense FedAvg: masks, ABNS, progressive pruning, messages.

Tiny synthetic runs: cnn_a (no BatchNorm) for most checks, ResNet-8 where ABNS needs BatchNorm.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tinyproto import Config, algorithms, run, store
from tinyproto.algorithms.common import weighted_mean
from tinyproto.algorithms.compute import layer_flops
from tinyproto.algorithms.fedtiny import client as fedtiny_module
from tinyproto.algorithms.fedtiny.fewshot import outside_shots, server_shots
from tinyproto.algorithms.fedtiny.protocol import Phase, Stage, bn_key
from tinyproto.algorithms.fedtiny.pruning import (
    adjustment_rounds,
    blocks,
    candidate_masks,
    cosine_rate,
    magnitude_mask,
    maskable,
    pack_bits,
    prune_grow,
    sparse_round_costs,
    unpack_bits,
)
from tinyproto.comm import Message, MessageError
from tinyproto.config import GROUP_OF, ConfigError
from tinyproto.config.core import ADDED_FIELDS
from tinyproto.data import make_synthetic
from tinyproto.models import build_model
from tinyproto.runtime.engine import seed_for, setup

N, K = 3, 6


def config(**kw) -> Config:
    base = dict(
        algorithm="fedtiny",
        profile="smoke",
        dataset="synthetic",
        num_classes=K,
        num_clients=N,
        alpha=0.3,
        rounds=8,
        max_samples=240,
        feature_dim=16,
        save_prototypes=False,
    )
    if kw.get("algorithm", "fedtiny") == "fedtiny":
        base.update(density=0.05)
        if kw.get("progressive", True):
            base.update(adjust_every=2)
    base.update(kw)
    return Config(**base)


def rounds(S, upto: int | None = None):
    """The engine's rounds by hand; yields (rnd, uploads, downloads) after the clients received."""
    for rnd in range(S.config.rounds if upto is None else upto):
        uploads = {}
        for st, d in zip(S.states, S.data):
            s = seed_for(S.config.seed, rnd, st.cid)
            torch.manual_seed(s)
            uploads[st.cid], _ = S.algo.client_round(st, d, rnd, torch.Generator().manual_seed(s))
        downloads = S.algo.server_round(uploads, rnd)
        for st in S.states:
            S.algo.receive(st, downloads[st.cid])
        yield rnd, uploads, downloads


# -- masks -----------------------------------------------------------------------------------------


def test_maskable_layers_skip_the_first_conv_and_blocks_go_backwards():
    cnn = build_model("cnn_a", num_classes=10, feature_dim=20, in_channels=1)
    names = maskable(cnn)
    assert names == ["base.conv.2.weight", "base.fc.weight", "head.weight"]
    assert blocks(cnn, names) == [["base.fc.weight", "head.weight"], ["base.conv.2.weight"]]
    res = build_model("resnet8", num_classes=10, feature_dim=20, in_channels=1)
    names = maskable(res)
    assert "base.conv1.weight" not in names and names[-1] == "head.weight"
    b = blocks(res, names)
    assert [x[0].split(".")[1] for x in b] == ["layer3", "layer2", "layer1"]
    assert b[0][-1] == "head.weight" and sum(map(len, b)) == len(names)
    assert "base.layer2.downsample.0.weight" in b[1]


def test_candidates_keep_the_largest_weights_near_the_target_density():
    g = torch.Generator().manual_seed(0)
    w = {
        "a": torch.randn(40, 30, generator=g),
        "b": torch.randn(500, generator=g),
        "c": torch.randn(7),
    }
    sizes = sum(t.numel() for t in w.values())
    cands = candidate_masks(w, 0.1, 4, np.random.RandomState(0))
    assert len(cands) == 4 and len({tuple(int(m.sum()) for m in c.values()) for c in cands}) > 1
    for c in cands:
        total = sum(int(m.sum()) for m in c.values())
        assert abs(total / sizes - 0.1) <= 0.02 * 0.1
        for name, m in c.items():
            k = int(m.sum())
            assert k >= 1 and m.shape == w[name].shape
            assert w[name][m].abs().min() >= w[name][~m].abs().max()  # the k largest |w|
    with pytest.raises(ValueError, match="invalid density=0.001"):
        candidate_masks(
            {"x": torch.randn(10), "y": torch.randn(10)}, 0.001, 1, np.random.RandomState(0)
        )


def test_one_shot_magnitude_mask_is_global_with_one_weight_per_layer():
    w = {"big": torch.linspace(1, 2, 100), "small": torch.linspace(0.01, 0.02, 50)}
    m = magnitude_mask(w, 0.1)  # 15 weights: all from "big" but the floor of "small"
    assert int(m["small"].sum()) == 1 and bool(m["small"][-1])
    assert int(m["big"].sum()) == 14 and bool(m["big"][-14:].all())


def test_prune_grow_drops_smallest_grows_largest_and_keeps_the_count():
    w = torch.tensor([0.5, -0.1, 0.0, 0.9, 0.0, 0.0, 0.3, 0.0])
    mask = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0], dtype=torch.bool)
    score = torch.tensor([9.0, 9.0, 0.2, 9.0, 0.7, 0.1, 9.0, 0.7])
    new_w, new_mask = prune_grow(w, mask, score, 2)
    assert int(new_mask.sum()) == int(mask.sum())
    assert new_mask.tolist() == [True, False, False, True, True, False, False, True]
    want = torch.tensor([0.5, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0])  # grown at 0, dropped at 0
    assert torch.equal(new_w.abs(), want)
    assert torch.equal(prune_grow(w, mask, score, 0)[1], mask)


def test_bitmaps_round_trip_and_refuse_padding():
    g = torch.Generator().manual_seed(1)
    for n in (1, 7, 8, 9, 1000):
        m = torch.rand(n, generator=g) < 0.3
        bits = pack_bits(m)
        assert bits.dtype == torch.uint8 and bits.numel() == math.ceil(n / 8)
        assert torch.equal(unpack_bits(bits, n), m)
    with pytest.raises(ValueError, match="padding"):
        unpack_bits(torch.tensor([0b1000_0000], dtype=torch.uint8), 7)


def test_cosine_schedule_and_adjustment_rounds():
    assert adjustment_rounds(15, 3, 12) == [3, 6, 9, 12]
    assert adjustment_rounds(11, 10, 100) == [10]  # the round after training round 10
    assert adjustment_rounds(10, 10, 100) == []
    assert adjustment_rounds(40, 10, 25) == [10, 20]
    assert cosine_rate(0, 4, 0.1) == pytest.approx(0.1)
    assert cosine_rate(2, 4, 0.1) == pytest.approx(0.05)
    assert cosine_rate(3, 4, 0.1) == pytest.approx(0.05 * (1 + math.cos(0.75 * math.pi)))


# -- a run: density, prune/grow, selection ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["block", "entire"])
def test_mask_density_is_exact_after_every_step_and_every_adjustment(mode, monkeypatch):
    S = setup(config(prune_mode=mode))
    seen = {"steps": 0}
    real = fedtiny_module.apply_masks

    def checked(params, masks, opt):
        real(params, masks, opt)
        seen["steps"] += 1
        for n, p in params.items():
            assert int(masks[n].sum()) == kept[n]
            assert not p.detach()[~masks[n]].any()  # off-mask weights are exactly 0

    monkeypatch.setattr(fedtiny_module, "apply_masks", checked)
    kept = None
    adjusted = 0
    for rnd, uploads, downloads in rounds(S):
        masks = S.algo.server.masks
        if masks and kept is None:
            kept = {n: int(m.sum()) for n, m in masks.items()}
        if rnd in S.algo.consts.schedule:
            adjusted += 1
            K = S.algo.consts.adjust_sizes(rnd, kept)
            assert set(K) == set(S.algo.consts.schedule[rnd][1])
            for up in uploads.values():
                for n, k in K.items():
                    assert up[f"gidx/{n}"].numel() == k and up[f"grad/{n}"].numel() == k
            assert "mask/head.weight" in downloads[0]  # the changed mask is sent
        if kept is not None:
            assert {n: int(m.sum()) for n, m in S.algo.server.masks.items()} == kept
            for st in S.states:
                assert {n: int(m.sum()) for n, m in st.masks.items()} == kept
                for n, m in st.masks.items():
                    assert torch.equal(m, S.algo.server.masks[n])
    assert adjusted == len(adjustment_rounds(8 - 2, 2, 100)) == 2 and seen["steps"] > 0
    density = sum(kept.values()) / sum(S.algo.consts.sizes.values())
    assert abs(density - 0.05) <= 0.02 * 0.05


def test_adjustments_move_the_mask_and_follow_the_schedule():
    S = setup(config(prune_mode="entire", adjust_rate=0.5))
    masks = {}
    for rnd, _, _ in rounds(S):
        now = {n: m.clone() for n, m in S.algo.server.masks.items()}
        if rnd in S.algo.consts.schedule and masks:
            rate = S.algo.consts.schedule[rnd][0]
            for n, m in now.items():
                moved = int((m & ~masks[n]).sum())
                k = int(m.sum())
                assert moved <= min(math.ceil(rate * k), m.numel() - k)
            assert any(not torch.equal(now[n], masks[n]) for n in now)
        elif masks:
            assert all(torch.equal(now[n], masks[n]) for n in now)
        masks = now


def test_selection_picks_the_lowest_sample_weighted_mean_loss():
    S = setup(config(rounds=2))
    out = list(rounds(S))
    _, uploads, downloads = out[1]
    losses = torch.stack([u["loss"] for u in uploads.values()]).sum(0)
    n = sum(u.config["num_val"] for u in uploads.values())
    assert S.algo.server.losses == pytest.approx((losses / n).tolist())
    assert S.algo.server.chosen == int(torch.argmin(losses))
    assert int(downloads[0]["choice"]) == S.algo.server.chosen


# -- ABNS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def abns_setup():
    cfg = config(shared_model="resnet8", rounds=4, fedtiny_candidates=2, abns_passes=2, density=0.2)
    S = setup(cfg)
    return S, list(rounds(S, upto=2))


def test_abns_changes_only_batchnorm_running_statistics(abns_setup):
    S, _ = abns_setup
    model = build_model("resnet8", num_classes=K, feature_dim=16, in_channels=1)
    before = copy.deepcopy(model.state_dict())
    x = make_synthetic(K, 64, seed=3).images(torch.arange(64))
    fedtiny_module.adapt_bn(model, lambda: [(x[:32], None), (x[32:], None)], passes=3)
    after = model.state_dict()
    stats = ("running_mean", "running_var", "num_batches_tracked")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(stats) for k in changed)
    assert {k for k in before if k.endswith("running_var")} <= changed
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_aggregated_bn_statistics_are_the_sample_weighted_mean(abns_setup):
    S, history = abns_setup
    _, uploads, downloads = history[1]
    counts = {c: u.config["num_val"] for c, u in uploads.items()}
    assert len(set(counts.values())) > 1  # unequal: the weighting matters
    algo = S.algo
    for c in range(algo.consts.C):
        for name in algo.consts.bn_names:
            key = bn_key(c, name)
            want = weighted_mean([uploads[i][key] for i in counts], list(counts.values()))
            torch.testing.assert_close(downloads[0][key], want)
            plain = sum(uploads[i][key] for i in counts) / len(counts)
            assert not torch.allclose(want, plain)


# -- communication: measured == closed form --------------------------------------------------------

VARIANTS = {
    "abns-resnet8": dict(
        shared_model="resnet8",
        rounds=6,
        num_clients=2,
        fedtiny_candidates=2,
        abns_passes=1,
        density=0.2,
    ),
    "select-block": dict(),
    "entire": dict(prune_mode="entire", rounds=9),
    "magnitude": dict(mask_init="magnitude", progressive=False, rounds=4),
    "magnitude-progressive": dict(mask_init="magnitude", rounds=7, adjust_every=1),
    "setup-only": dict(rounds=1),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_measured_comm_equals_the_closed_form(variant, tmp_path):
    cfg = config(**VARIANTS[variant])
    res = run(cfg, root=tmp_path, progress=False)
    S = setup(cfg)
    for _ in rounds(S):
        pass
    want = pd.DataFrame(sparse_round_costs(S.algo.plan()))
    m = res.metrics
    for col in ("upload_floats", "download_floats", "upload_bytes", "download_bytes"):
        assert m[col].tolist() == want[col].tolist(), col
    tally = S.algo.server
    assert [tally.mask_bytes[r] for r in range(cfg.rounds)] == want["mask_bytes"].tolist()
    assert [tally.index_list_bytes[r] for r in range(cfg.rounds)] == want[
        "index_list_bytes"
    ].tolist()
    s = res.summary
    assert s["expected_floats_per_round"] == pytest.approx(s["comm_floats_per_round"], rel=1e-12)
    assert s["mask_bytes_per_round"] == pytest.approx(want["mask_bytes"].mean())


def test_closed_form_by_hand():
    """Two layers (n = 100, 30; k = 10, 3), 2 dense floats, 2 clients, 2 candidates, select."""
    from tinyproto.algorithms.fedtiny.pruning import SparsePlan

    plan = SparsePlan(
        num_clients=2,
        rounds=5,
        sizes=(100, 30),
        kept=(10, 3),
        union=(15, 5),
        candidate_kept=26,
        dense=2,
        bn=0,
        candidates=2,
        abns=False,
        select=True,
        progressive=True,
        mode="entire",
        layer_blocks=((0, 1),),
        adjust_every=1,
        adjust_until=1,
        adjust_rate=0.5,
    )
    r = sparse_round_costs(plan)
    assert [x["download_floats"] for x in r] == [2 * 22, 0, 2 * 15, 2 * 15, 2 * 15]
    assert [x["upload_floats"] for x in r] == [0, 2 * 2, 2 * 15, 2 * (15 + 5 + 2), 2 * 15]
    bits = 13 + 4
    assert r[0]["download_bytes"] == 2 * (4 * 22 + 2 * bits) and r[1]["download_bytes"] == 16
    assert r[3]["upload_bytes"] == 2 * (4 * 22 + 4 * 7) and r[3]["download_bytes"] == 2 * (
        60 + bits
    )
    assert r[3]["index_list_bytes"] == 2 * 4 * 13 and r[0]["index_list_bytes"] == 2 * 4 * 26
    assert (
        algorithms.expected_cost(
            "fedtiny", num_classes=10, dim=1, num_clients=2, classes_present=0, sparse=plan
        )
        == sum(x["upload_floats"] + x["download_floats"] for x in r) / 5
    )


def test_fedavg_is_the_weighted_mean_of_whole_models_with_bn_statistics():
    cfg = config(algorithm="fedavg", shared_model="resnet8", rounds=1, num_clients=2)
    S = setup(cfg)
    ((_, uploads, downloads),) = rounds(S)
    n = {c: u.config["num_train"] for c, u in uploads.items()}
    assert any(k.endswith("running_var") for k in uploads[0].arrays)
    for key in uploads[0].arrays:
        torch.testing.assert_close(
            downloads[0][key], weighted_mean([uploads[c][key] for c in n], list(n.values()))
        )
    assert uploads[0].floats() == S.algo.shared_params
    assert (
        algorithms.expected_cost(
            "fedavg",
            num_classes=K,
            dim=16,
            num_clients=2,
            classes_present=0,
            model_params=S.algo.shared_params,
        )
        == 4 * S.algo.shared_params
    )


# -- resume ----------------------------------------------------------------------------------------


def comparable(res) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    s = {k: v for k, v in res.summary.items() if k not in ("wall_seconds", "seconds_per_round")}
    return res.metrics.drop(columns="seconds"), res.clients, s


@pytest.mark.parametrize(
    "stop,kw",
    [
        (1, {}),
        (3, {}),
        (5, {}),
        (
            2,
            {
                "shared_model": "resnet8",
                "num_clients": 2,
                "rounds": 5,
                "fedtiny_candidates": 2,
                "abns_passes": 1,
            },
        ),
    ],
    ids=["after-join", "first-training", "after-adjustment", "abns-resnet8"],
)
def test_resume_equals_uninterrupted(stop, kw, tmp_path):
    cfg = config(**{"rounds": 7, **kw})
    full = comparable(run(cfg, root=tmp_path / "a", progress=False))
    part = run(cfg, root=tmp_path / "b", progress=False, stop_after=stop)
    assert len(part.metrics) == stop and not part.summary
    resumed = comparable(run(cfg, root=tmp_path / "b", progress=False, resume=True))
    pd.testing.assert_frame_equal(full[0], resumed[0], check_exact=True)
    pd.testing.assert_frame_equal(full[1], resumed[1], check_exact=True)
    assert full[2] == resumed[2]
    store.verify_run(tmp_path / "b" / cfg.run_id())


def test_partial_participation_runs_and_late_clients_catch_up(tmp_path):
    cfg = config(rounds=9, num_clients=4, join_ratio=0.5, drop_rate=0.25, checkpoint_every=1)
    res = run(cfg, root=tmp_path, progress=False)
    assert res.summary["expected_floats_per_round"] is None
    assert (res.metrics["dropped"].fillna("").astype(str) != "").any()
    S = setup(cfg)
    from tinyproto.config.participation import participation

    for rnd in range(cfg.rounds):
        part = participation(cfg, rnd)
        uploads = {}
        for cid in part.sampled:
            st, d = S.states[cid], S.data[cid]
            s = seed_for(cfg.seed, rnd, cid)
            torch.manual_seed(s)
            up, _ = S.algo.client_round(st, d, rnd, torch.Generator().manual_seed(s))
            if cid not in part.dropped:
                uploads[cid] = up
        downloads = S.algo.server_round(uploads, rnd) if uploads else {}
        for cid, msg in downloads.items():
            S.algo.receive(S.states[cid], msg)
            if S.algo.server.phase is Phase.TRAIN and S.states[cid].stage is Stage.MODEL:
                assert S.states[cid].version == S.algo.server.version
                for n, m in S.states[cid].masks.items():
                    assert torch.equal(m, S.algo.server.masks[n])


# -- hostile messages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def at_adjustment():
    """A run stopped before its first adjustment round (4): setup, the uploads of round 4."""
    S = setup(config())
    for _ in rounds(S, upto=4):
        pass
    assert 4 in S.algo.consts.schedule
    uploads = {}
    for st, d in zip(S.states, S.data):
        uploads[st.cid], _ = S.algo.client_round(st, d, 4, torch.Generator().manual_seed(st.cid))
    return S, uploads


def edited(msg: Message, changes: dict, config=None) -> Message:
    arrays = dict(msg.arrays)
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    return Message(arrays, dict(msg.config if config is None else config), dict(msg.metrics))


def refused(algo, uploads: dict, rnd: int, needles: list[str]) -> None:
    before = copy.deepcopy(algo.server_state_dict())
    with pytest.raises(MessageError) as e:
        algo.server_round(uploads, rnd)
    text = str(e.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    after = algo.server_state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert repr(before[k]) == repr(after[k]), k  # tensors, dicts, numbers: unchanged


def kept_index(S, name: str) -> int:
    return int(torch.nonzero(S.algo.server.masks[name].flatten())[0])


HOSTILE = {
    "float64-values": (
        lambda S, u: {**u, 1: edited(u[1], {"head.weight": u[1]["head.weight"].double()})},
        ["client 1", "'head.weight'", "torch.float64"],
    ),
    "short-values": (
        lambda S, u: {**u, 0: edited(u[0], {"base.fc.weight": u[0]["base.fc.weight"][:-1]})},
        ["client 0", "'base.fc.weight'", "shape"],
    ),
    "nan-dense": (
        lambda S, u: {**u, 2: edited(u[2], {"head.bias": u[2]["head.bias"] * math.nan})},
        ["client 2", "'head.bias'", "NaN"],
    ),
    "gradient-at-kept-weight": (
        lambda S, u: {
            **u,
            1: edited(
                u[1],
                {
                    "gidx/base.fc.weight": torch.cat(
                        [
                            torch.tensor([kept_index(S, "base.fc.weight")], dtype=torch.int32),
                            u[1]["gidx/base.fc.weight"][1:],
                        ]
                    )
                },
            ),
        },
        ["client 1", "'gidx/base.fc.weight'", "kept weight"],
    ),
    "repeated-index": (
        lambda S, u: {
            **u,
            0: edited(
                u[0],
                {
                    "gidx/base.fc.weight": u[0]["gidx/base.fc.weight"] * 0
                    + u[0]["gidx/base.fc.weight"][0]
                },
            ),
        },
        ["client 0", "'gidx/base.fc.weight'", "repeats"],
    ),
    "index-out-of-range": (
        lambda S, u: {
            **u,
            2: edited(u[2], {"gidx/base.fc.weight": u[2]["gidx/base.fc.weight"] + 10**6}),
        },
        ["client 2", "'gidx/base.fc.weight'", "outside"],
    ),
    "int64-indices": (
        lambda S, u: {
            **u,
            2: edited(u[2], {"gidx/base.fc.weight": u[2]["gidx/base.fc.weight"].long()}),
        },
        ["client 2", "'gidx/base.fc.weight'", "torch.int64"],
    ),
    "one-gradient-short": (
        lambda S, u: {
            **u,
            1: edited(
                u[1],
                {
                    "gidx/base.fc.weight": u[1]["gidx/base.fc.weight"][:-1],
                    "grad/base.fc.weight": u[1]["grad/base.fc.weight"][:-1],
                },
            ),
        },
        ["client 1", "expected K ="],
    ),
    "missing-gradients": (
        lambda S, u: {
            **u,
            0: edited(u[0], {"gidx/base.fc.weight": None, "grad/base.fc.weight": None}),
        },
        ["client 0", "'grad/base.fc.weight'", "missing"],
    ),
    "missing-version": (
        lambda S, u: {**u, 1: edited(u[1], {}, config={"num_train": 5})},
        ["client 1", "'mask_version'", "missing"],
    ),
    "inf-gradient": (
        lambda S, u: {
            **u,
            0: edited(u[0], {"grad/base.fc.weight": u[0]["grad/base.fc.weight"] * math.inf}),
        },
        ["client 0", "'grad/base.fc.weight'", "inf"],
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_training_upload_is_refused_and_changes_nothing(case, at_adjustment):
    S, uploads = at_adjustment
    corrupt, needles = HOSTILE[case]
    algo = copy.deepcopy(S.algo)
    refused(algo, corrupt(S, uploads), 4, needles)
    twin = copy.deepcopy(S.algo)
    got, want = algo.server_round(uploads, 4), twin.server_round(uploads, 4)
    assert all(torch.equal(got[0][k], want[0][k]) for k in want[0].arrays)


def test_gradients_outside_an_adjustment_round_are_refused(at_adjustment):
    S, uploads = at_adjustment
    refused(copy.deepcopy(S.algo), uploads, 5, ["client 0", "'grad/", "unexpected"])


def test_a_stale_upload_is_answered_but_not_averaged(at_adjustment):
    S, uploads = at_adjustment
    algo = copy.deepcopy(S.algo)
    stale = dict(uploads)
    stale[2] = edited(uploads[2], {}, config={**uploads[2].config, "mask_version": 0})
    down = algo.server_round(stale, 4)
    n = {c: uploads[c].config["num_train"] for c in (0, 1)}
    avg = weighted_mean([uploads[c]["head.bias"] for c in n], list(n.values()))
    torch.testing.assert_close(down[0]["head.bias"], avg)
    assert "mask/head.weight" in down[2]


def test_setup_uploads_out_of_turn_are_refused():
    S = setup(config(rounds=3))
    list(rounds(S, upto=1))  # the join round: the server now waits for candidate losses
    ups = {}
    for st, d in zip(S.states, S.data):
        ups[st.cid], _ = S.algo.client_round(st, d, 1, torch.Generator().manual_seed(0))
    algo = S.algo
    train_like = {**ups, 0: Message({"head.weight": torch.zeros(3)}, {"num_train": 4})}
    refused(algo, train_like, 1, ["client 0", "'head.weight'", "no mask chosen yet"])
    neg = {**ups, 1: edited(ups[1], {"loss": -ups[1]["loss"]})}
    refused(algo, neg, 1, ["client 1", "'loss'", "negative"])
    bn = {**ups, 2: Message({"bn0/x": torch.zeros(1)}, {"num_val": 3})}
    refused(algo, bn, 1, ["client 2", "'bn0/x'", "no BN statistics"])
    no_count = {**ups, 2: edited(ups[2], {}, config={})}
    refused(algo, no_count, 1, ["client 2", "'num_val'", "missing"])


def test_negative_abns_variance_is_refused():
    S = setup(
        config(shared_model="resnet8", rounds=3, num_clients=2, fedtiny_candidates=2, abns_passes=1)
    )
    list(rounds(S, upto=1))
    ups = {}
    for st, d in zip(S.states, S.data):
        ups[st.cid], _ = S.algo.client_round(st, d, 1, torch.Generator().manual_seed(0))
    key = next(k for k in ups[1].arrays if k.endswith("running_var"))
    refused(
        S.algo,
        {**ups, 1: edited(ups[1], {key: -ups[1][key]})},
        1,
        ["client 1", key, "negative variance"],
    )


def client_refuses(algo, state, msg: Message, needle: str) -> None:
    before = copy.deepcopy(state.state_dict())
    with pytest.raises(MessageError) as e:
        algo.receive(state, msg)
    assert "\n" not in str(e.value) and "server" in str(e.value) and needle in str(e.value)
    after = state.state_dict()
    assert repr(before) == repr(after)


def test_client_refuses_malformed_downloads():
    S = setup(config(rounds=3))
    st = copy.deepcopy(S.states[0])
    ((_, _, down0),) = rounds(S, upto=1)
    pkg = down0[0]
    key = "cand0/head.weight"
    bad_bits = pkg[key].clone()
    bad_bits[-1] = 0xFF if S.algo.consts.sizes["head.weight"] % 8 else bad_bits[-1]
    if S.algo.consts.sizes["head.weight"] % 8:
        client_refuses(S.algo, st, edited(pkg, {key: bad_bits}), "padding")
    client_refuses(S.algo, st, edited(pkg, {"head.weight": pkg["head.weight"][:-1]}), "union")
    client_refuses(S.algo, st, Message({"choice": torch.tensor([0])}, {"mask_version": 1}), "stage")
    S.algo.receive(st, pkg)  # the valid one still goes in
    client_refuses(
        S.algo, st, Message({"choice": torch.tensor([99])}, {"mask_version": 1}), "outside"
    )


# -- configuration ---------------------------------------------------------------------------------


def test_fedtiny_options_are_validated_and_stay_out_of_old_run_ids():
    for kw, needle in [
        (dict(density=0), "invalid density=0"),
        (dict(density=1.5), "invalid density=1.5"),
        (dict(mask_init="random"), "invalid mask_init='random'"),
        (
            dict(progressive=False, adjust_every=3),
            "invalid adjust_every=3: progressive pruning is off",
        ),
        (dict(mask_init="magnitude", fedtiny_candidates=3), "no candidate pool"),
        (dict(mask_init="select", abns_passes=3), "runs no ABNS"),
        (dict(dataset="fmnist", num_classes=10, max_samples=0), "invalid max_samples=None"),
        (dict(dataset="fmnist", num_classes=10, max_samples=69_990), "at most 69950"),
    ]:
        with pytest.raises(ConfigError, match=needle) as e:
            config(**kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="invalid density=0.1: only fedtiny"):
        Config(algorithm="fedproto", density=0.1)
    names = [n for n, (g, _) in GROUP_OF.items() if g == "fedtiny"]
    assert len(names) == 11
    for n in names:  # at their defaults they stay out of every run id
        assert ADDED_FIELDS[n][0] == Config(algorithm="fedtiny", dataset="synthetic").flat(n)
    a, b = Config(algorithm="fedavg", profile="smoke"), Config(algorithm="fedavg", profile="smoke")
    assert a.run_id() == b.run_id() != Config(algorithm="fedavg", profile="smoke", seed=1).run_id()
    assert config().run_id() != config(density=0.1).run_id() != config(mask_init="select").run_id()


def test_cli_refuses_an_option_the_variant_never_reads(capsys):
    from tinyproto.cli import main

    code = main(
        [
            "run",
            "--profile",
            "smoke",
            "--algorithm",
            "fedtiny",
            "--dataset",
            "synthetic",
            "--no-progressive",
            "--adjust-every",
            "3",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--adjust-every=3" in err[0], err


# -- the server's few-shot set ---------------------------------------------------------------------


def test_the_server_shots_come_from_no_client():
    S = setup(config(rounds=1))
    x, y = server_shots(S.ctx)
    assert torch.bincount(y, minlength=K).tolist() == [S.config.fedtiny.shots] * K
    pool = S.fed.dataset
    client_imgs = {bytes(pool.x[i].cpu().numpy().tobytes()) for i in range(len(pool))}
    raw = ((x + 1.0) * 127.5).round().to(torch.uint8)
    assert not any(bytes(r.numpy().tobytes()) in client_imgs for r in raw)
    labels = np.repeat(np.arange(4), 50)
    idx = outside_shots(labels, 120, 1, 3, 0)
    from tinyproto.data import stratified_subset

    assert not set(idx) & set(stratified_subset(labels, 120, 1))
    assert np.bincount(labels[idx]).tolist() == [3] * 4
    with pytest.raises(ValueError, match="class 0 has 20 images outside"):
        outside_shots(labels, 120, 1, 21, 0)


# -- compute and memory ----------------------------------------------------------------------------


def test_flops_by_hand_and_sparse_flops_scale_with_layer_density(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 10)
    )
    assert layer_flops(net, 1, 8) == {"0.weight": 2 * 9 * 4 * 64, "2.weight": 2 * 256 * 10}
    res = run(config(rounds=4), root=tmp_path, progress=False)
    S = setup(config(rounds=4))
    for _ in rounds(S):
        pass
    model = S.states[0].model
    F = layer_flops(model, 1, 28)
    kept = {n: int(m.sum()) for n, m in S.states[0].masks.items()}
    per_image = sum(
        f * (kept[n] / S.algo.consts.sizes[n] if n in kept else 1.0) for n, f in F.items()
    )
    s = res.summary
    assert s["client_inference_flops_mean"] == pytest.approx(per_image)
    n_train = sum(d.num_train for d in S.data)
    assert s["train_flops_per_round"] == pytest.approx(3 * per_image * n_train)
    dense = run(config(algorithm="fedavg", rounds=1), root=tmp_path, progress=False).summary
    assert dense["client_inference_flops_mean"] == pytest.approx(sum(F.values()))
    assert s["client_step_memory_bytes_max"] < dense["client_step_memory_bytes_max"]
    assert s["client_activation_bytes_max"] == dense["client_activation_bytes_max"] > 0
    assert s["density_kept"] == sum(kept.values()) / sum(S.algo.consts.sizes.values())
    assert s["kept_per_layer"] == {n: [k, S.algo.consts.sizes[n]] for n, k in kept.items()}
    assert s["archs"] == {"cnn_a": sum(p.numel() for p in model.parameters())}
