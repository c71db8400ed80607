"""Secure aggregation (``Config.secure_agg``, tinyproto.comm.secagg): the masked tables sum to
the true per-class sums, one table alone tells the count attack nothing, a missing or malformed
table is a one-line refusal, and a run is the plain run up to fixed-point rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyproto import Config, ConfigError, run
from tinyproto.comm import Message, MessageError, secagg
from tinyproto.privacy import judge

K, W = 10, 6


def uploads(n: int, seed: int = 0) -> dict[int, Message]:
    """n clients' class-wise uploads: a random subset of classes each, rows scaled like APS's."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for cid in range(n):
        classes = torch.sort(torch.randperm(K, generator=g)[: 2 + cid % 5]).values
        counts = torch.randint(1, 400, (len(classes),), generator=g).float()
        rows = torch.randn(len(classes), W, generator=g) * counts.unsqueeze(1)
        out[cid] = Message({"classes": classes, "protos": rows})
    return out


def masked(msgs: dict[int, Message], sampled, rnd: int = 3, seed: int = 7):
    return {c: secagg.mask(m, "protos", K, W, seed, rnd, c, sampled) for c, m in msgs.items()}


def plain_sums(msgs: dict[int, Message]):
    total = torch.zeros(K, W, dtype=torch.float64)
    holders = torch.zeros(K, dtype=torch.long)
    for m in msgs.values():
        total[m["classes"]] += m["protos"].double()
        holders[m["classes"]] += 1
    return total, holders


@pytest.mark.parametrize("n", [2, 5, 20])
def test_masked_tables_sum_to_the_true_sums_within_the_fixed_point_resolution(n):
    msgs = uploads(n)
    tables = masked(msgs, range(n))
    checked = {c: secagg.check(t, f"client {c}", K, W) for c, t in tables.items()}
    total, holders = secagg.unmask_sum(checked, range(n), 3, W)
    want, want_holders = plain_sums(msgs)
    assert torch.equal(holders, want_holders)  # exact: the class counts of holders
    # n roundings of 2^-25 each, then float32's own rounding of the result
    err = (total.double() - want).abs()
    assert float((err - want.abs() * 2**-23).max()) <= n * 2**-25 + 1e-12
    assert tables[0].nbytes() == secagg.upload_bytes(K, W) == 8 * K * (W + 1)


def test_one_masked_table_tells_the_count_attack_nothing():
    """The norm-ratio estimator that recovers APS counts (TVD ~0) is on a masked table no better
    than a blind guess, and the table's bits are uniform whatever the upload."""
    n = 8
    msgs = uploads(n, seed=1)
    tables = masked(msgs, range(n))
    plain, hidden, blind = [], [], []
    for cid, m in msgs.items():
        counts = torch.zeros(K)
        counts[m["classes"]] = m["protos"].norm(dim=1)  # the rows' norms are the counts' scale
        plain.append(judge(m["classes"], m["protos"], counts)["tvd_attack"])
        classes, rows = secagg.decode_alone(tables[cid]["masked"], W)
        j = judge(classes, rows, counts)
        hidden.append(j["tvd_attack"])
        blind.append(j["tvd_blind"])
    assert max(plain) < 1e-6  # in the clear the attack is exact here
    assert np.mean(hidden) > 0.8 * np.mean(blind)  # masked: about as bad as knowing nothing
    bits = np.unpackbits(np.stack([t["masked"].numpy() for t in tables.values()]).view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01  # 8 x 70 x 64 bits, uniform


def test_masks_depend_on_the_round_and_the_pair():
    m = uploads(3)
    a, b = masked(m, range(3), rnd=1), masked(m, range(3), rnd=2)
    assert not torch.equal(a[0]["masked"], b[0]["masked"])
    assert torch.equal(a[0]["masked"], masked(m, range(3), rnd=1)[0]["masked"])  # deterministic
    assert secagg.pair_key(0, 1, 2) != secagg.pair_key(0, 1, 3) != secagg.pair_key(1, 1, 3)


def test_a_missing_or_foreign_table_is_refused_in_one_line():
    msgs = uploads(4)
    tables = {c: t["masked"] for c, t in masked(msgs, range(4)).items()}
    del tables[2]
    with pytest.raises(MessageError, match=r"round 4: .*clients \[2\] sent no upload.*dropout"):
        secagg.unmask_sum(tables, range(4), 3, W)
    tables[2] = tables[0]
    with pytest.raises(MessageError, match=r"clients \[9\] were not sampled"):
        secagg.unmask_sum({**tables, 9: tables[0]}, range(4), 3, W)


def test_a_malformed_table_is_refused():
    msgs = uploads(4)
    tables = {c: t["masked"] for c, t in masked(msgs, range(4)).items()}
    tables[1] = tables[1] + 12345  # a corrupted table: the holders no longer decode
    with pytest.raises(MessageError, match="sum does not decode"):
        secagg.unmask_sum(tables, range(4), 0, W)
    bad = [
        Message({"masked": torch.zeros(K, W + 1)}),  # float, not int64
        Message({"masked": torch.zeros(K, W, dtype=torch.int64)}),  # wrong shape
        Message({"masked": torch.zeros(K, W + 1, dtype=torch.int64), "protos": torch.zeros(1)}),
        Message({"protos": torch.zeros(K, W)}),  # not masked at all
    ]
    for m in bad:
        with pytest.raises(MessageError, match="message from client 3: "):
            secagg.check(m, "client 3", K, W)


def test_a_value_outside_the_ring_range_is_refused_by_the_client():
    m = Message({"classes": torch.tensor([1]), "protos": torch.full((1, W), 1e11)})
    with pytest.raises(MessageError, match=r"client 0: .*fixed-point range.*--dp-clip"):
        secagg.mask(m, "protos", K, W, 0, 0, 0, range(10))
    m = Message({"classes": torch.tensor([1]), "protos": torch.full((1, W), float("nan"))})
    with pytest.raises(MessageError, match="client 0: .*NaN or inf"):
        secagg.mask(m, "protos", K, W, 0, 0, 0, range(10))


SMOKE = dict(profile="smoke", dataset="synthetic", rounds=3)


@pytest.mark.parametrize(
    "algorithm, extra",
    [
        ("tinyproto-fp", {}),
        ("tinyproto-fp", {"aps_divide": True}),
        ("fedproto", {}),
        ("feddistill", {}),
        ("tinyproto-fp", {"join_ratio": 0.5}),
    ],
)
def test_a_secure_run_is_the_plain_run_up_to_rounding(algorithm, extra, tmp_path):
    plain = run(Config(algorithm, **SMOKE, **extra), root=tmp_path / "a", progress=False)
    cfg = Config(algorithm, **SMOKE, **extra, secure_agg=True)
    secure = run(cfg, root=tmp_path / "b", progress=False)
    a, b = plain.metrics, secure.metrics
    assert np.allclose(a.train_loss, b.train_loss, rtol=1e-4)
    assert np.allclose(a.test_acc, b.test_acc, atol=0.01)
    # every sampled client uploads one int64 [K, w + 1] table, every round
    clients = cfg.num_clients if "join_ratio" not in extra else cfg.num_clients // 2
    width = 10 if algorithm == "feddistill" else (cfg.cps_dim or cfg.feature_dim)
    assert (b.upload_bytes == clients * secagg.upload_bytes(10, width)).all()
    assert (b.upload_floats == 0).all()  # ring elements, not floats
    if algorithm != "feddistill":
        ga = np.load(plain.run_dir / "prototypes.npz")["global"]
        gb = np.load(secure.run_dir / "prototypes.npz")["global"]
        assert np.allclose(ga, gb, rtol=1e-4, atol=1e-5)


def test_client_workers_give_the_same_secure_run(tmp_path):
    cfg = Config("tinyproto-fp", **SMOKE, secure_agg=True)
    a = run(cfg, root=tmp_path / "a", progress=False).metrics
    b = run(cfg.replace(client_workers=2), root=tmp_path / "b", progress=False).metrics
    assert a.drop(columns=[c for c in a if "second" in c]).equals(
        b.drop(columns=[c for c in b if "second" in c])
    )


@pytest.mark.parametrize(
    "kw, phrase",
    [
        (dict(algorithm="fedtgp"), "invalid secure_agg=True"),
        (dict(algorithm="tinyproto-ft"), "invalid secure_agg=True"),
        (dict(algorithm="fedavg"), "invalid secure_agg=True"),
        (dict(algorithm="fedproto", payload="int8"), "invalid payload='int8': fp32 with secure"),
        (dict(algorithm="fedproto", drop_rate=0.2), "invalid drop_rate=0.2: 0 with secure_agg"),
    ],
)
def test_secure_agg_is_refused_where_it_cannot_work(kw, phrase):
    with pytest.raises(ConfigError, match=phrase):
        Config(**{**SMOKE, **kw}, secure_agg=True)


def test_plain_run_ids_do_not_change():
    """secure_agg=False is left out of the run id: no finished run is renamed."""
    cfg = Config("tinyproto-fp", profile="quick")
    assert cfg.run_id() == Config("tinyproto-fp", profile="quick", secure_agg=False).run_id()
    assert cfg.run_id() != cfg.replace(secure_agg=True).run_id()


def test_a_secure_run_resumes_to_the_straight_runs_numbers(tmp_path):
    """The masks depend only on (seed, round, pair): stopped after round 2 and resumed, a
    secure run (with local DP before the masking) is the straight run exactly."""
    cfg = Config("tinyproto-fp", **{**SMOKE, "rounds": 4}, secure_agg=True, dp_clip=50.0)
    straight = run(cfg, root=tmp_path / "a", progress=False).metrics
    run(cfg.replace(checkpoint_every=1), root=tmp_path / "b", progress=False, stop_after=2)
    resumed = run(cfg, root=tmp_path / "b", progress=False, resume=True).metrics
    cols = ["round", "train_loss", "test_acc", "upload_bytes", "download_bytes"]
    assert straight[cols].equals(resumed[cols])


def test_the_run_command_says_uploads_are_masked_tables(tmp_path, capsys):
    from tinyproto.cli import main

    argv = ["run", "--profile", "smoke", "--dataset", "synthetic", "--secure-agg"]
    assert main([*argv, "--results", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(up: masked int64 tables, secure aggregation; down " in out
    assert "up 0," not in out
