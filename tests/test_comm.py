"""Communication: what the messages carry equals paper Table 2's closed forms, exactly.

Every algorithm runs end to end on several random partitions (synthetic data, tiny models);
each round's measured upload + download floats must equal ``comm.expected_cost`` with U counted
on the clients' training splits. Plus: the Comm-column table (comm_table.py) on the paper's
partitions, and its command line.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from tinyproto import Config, algorithms, comm, run
from tinyproto.algorithms.fedtiny.pruning import sparse_round_costs
from tinyproto.algorithms.svd import FACTORS, factor_key, ranks
from tinyproto.cli.comm_table import add_parser, cmd
from tinyproto.config import ALGORITHMS, ConfigError
from tinyproto.models import FAMILIES, build_model, count_params
from tinyproto.runtime.engine import seed_for, setup
from tinyproto.scorecard.comm_table import PAPER_M, build_comm_table, class_presence

# (num_classes, num_clients, alpha, partition_seed, rounds): different skews and sizes
PARTITIONS = [
    (10, 4, 0.5, 1, 2),
    (7, 5, 0.1, 3, 1),
    (12, 3, 1.0, 5, 1),
]


def tiny_config(algorithm: str, K: int, N: int, alpha: float, pseed: int, rounds: int, **kw):
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=K,
        num_clients=N,
        alpha=alpha,
        partition_seed=pseed,
        rounds=rounds,
        max_samples=360,
        feature_dim=16,
        save_prototypes=False,
    )
    if algorithm in ("fedtgp", "tinyproto-ft"):
        base["server_epochs"] = 1
    base.update(kw)
    return Config(**base)


def svd_floats(msg: comm.Message, shapes: dict[str, tuple]) -> int:
    """Floats of a FedKD message from its ranks alone: k*(m+n+1) per factored matrix, else dense."""
    total = 0
    for name, shape in shapes.items():
        m, n = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
        k = ranks(msg)[name]
        total += int(np.prod(shape)) if k is None else k * (m + n + 1)
    return total


def replay(cfg: Config):
    """The engine's rounds by hand, same seeds and order: yields (rnd, algo, uploads, downloads)."""
    S = setup(cfg)
    for rnd in range(cfg.rounds):
        uploads = {}
        for st, d in zip(S.states, S.data):
            sd = seed_for(cfg.seed, rnd, st.cid)
            torch.manual_seed(sd)
            uploads[st.cid], _ = S.algo.client_round(st, d, rnd, torch.Generator().manual_seed(sd))
        downloads = S.algo.server_round(uploads, rnd)
        for st in S.states:
            S.algo.receive(st, downloads[st.cid])
        yield rnd, S.algo, uploads, downloads


@pytest.mark.parametrize("partition", PARTITIONS, ids=lambda p: f"K{p[0]}-N{p[1]}-a{p[2]}")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_measured_equals_expected(algorithm, partition, tmp_path):
    cfg = tiny_config(algorithm, *partition)
    res = run(cfg, root=tmp_path, progress=False)
    s = res.summary
    K, N, d = s["num_classes"], cfg.num_clients, cfg.feature_dim
    U = s["classes_present_train"]
    assert U <= s["classes_present_full"] <= N * K
    measured = (res.metrics["upload_floats"] + res.metrics["download_floats"]).tolist()
    assert len(measured) == cfg.rounds
    kw = dict(num_classes=K, dim=d, num_clients=N, classes_present=U, cps_dim=cfg.cps_dim)
    if algorithm in ("fml", "fedkd", "fedavg"):  # the shared model: the family's first arch
        shared = build_model(FAMILIES[cfg.family][0], num_classes=K, feature_dim=d, in_channels=1)
        kw["model_params"] = count_params(shared)
    if algorithm == "fedkd":  # data-dependent: the floats its SVD kept, from a replay
        kept = [algo.server.kept_floats_per_round[rnd] for rnd, algo, _, _ in replay(cfg)]
        expected = [algorithms.expected_cost(algorithm, **kw, kept_floats=k) for k in kept]
        assert all(e <= algorithms.expected_cost(algorithm, **kw) for e in expected)  # dense bound
    elif algorithm == "fedtiny":  # setup exchanges, adjustments: per round (test_fedtiny.py)
        *_, (_, algo, _, _) = replay(cfg)
        costs = sparse_round_costs(algo.plan())
        expected = [r["upload_floats"] + r["download_floats"] for r in costs]
    else:
        expected = [algorithms.expected_cost(algorithm, **kw)] * cfg.rounds
    assert measured == expected
    if algorithm == "local":
        assert measured == [0] * cfg.rounds
    else:
        assert min(measured) > 0


@pytest.mark.parametrize("partition", PARTITIONS[:2], ids=lambda p: f"K{p[0]}-N{p[1]}")
def test_fedkd_measured_equals_kept_floats(partition):
    """FedKD: messages carry exactly the floats its SVD keeps (from the ranks), round by round."""
    K, N, alpha, pseed, _ = partition
    # random-like weights need nearly full rank at 0.95: a lower schedule exercises the factors
    cfg = tiny_config(
        "fedkd", K, N, alpha, pseed, 2, feature_dim=48, fedkd_t_start=0.5, fedkd_t_end=0.7
    )
    any_factored = False
    for rnd, algo, uploads, downloads in replay(cfg):
        shapes = algo.shapes
        measured = sum(m.floats() for m in uploads.values())
        measured += sum(m.floats() for m in downloads.values())
        from_ranks = sum(svd_floats(m, shapes) for m in uploads.values())
        from_ranks += sum(svd_floats(m, shapes) for m in downloads.values())
        kept = algo.server.kept_floats_per_round[rnd]
        assert measured == from_ranks == kept
        assert measured == algorithms.expected_cost(
            "fedkd", num_classes=K, dim=48, num_clients=N, classes_present=0, kept_floats=kept
        )
        T = algo.threshold(rnd)
        for m in [*uploads.values(), downloads[0]]:
            assert m.metrics["threshold"] == pytest.approx(T)
            for name, k in ranks(m).items():
                if k is not None:
                    any_factored = True
                    assert m.metrics[f"energy/{name}"] >= T - 1e-9
                    assert all(factor_key(name, f) in m for f in FACTORS)
                    assert name not in m
                else:
                    assert name in m
    assert algo.threshold(cfg.rounds - 1) == pytest.approx(cfg.fedkd_t_end)
    assert any_factored, "no matrix was compressed: the test would not check the SVD path"


def test_tinyproto_is_s_over_d_of_fedproto(tmp_path):
    K, N, alpha, pseed, rounds = PARTITIONS[1]
    fp = run(
        tiny_config("fedproto", K, N, alpha, pseed, rounds, feature_dim=40),
        root=tmp_path,
        progress=False,
    )
    tp = run(
        tiny_config("tinyproto-fp", K, N, alpha, pseed, rounds, feature_dim=40, cps_dim=10),
        root=tmp_path,
        progress=False,
    )
    assert fp.summary["classes_present_train"] == tp.summary["classes_present_train"]
    fp_floats = (fp.metrics["upload_floats"] + fp.metrics["download_floats"]).to_numpy()
    tp_floats = (tp.metrics["upload_floats"] + tp.metrics["download_floats"]).to_numpy()
    assert fp_floats.min() > 0
    np.testing.assert_array_equal(tp_floats * 40, fp_floats * 10)  # s / d = 10 / 40


def test_tinyproto_fp_upload_holds_only_compressed_vectors():
    cfg = tiny_config("tinyproto-fp", 10, 4, 0.1, 1, 1, feature_dim=40, cps_dim=10)
    S = setup(cfg)
    for cid in (0, 2):
        st, d = S.states[cid], S.data[cid]
        up, _ = S.algo.client_round(st, d, 0, torch.Generator().manual_seed(0))
        k_i = int((d.split.train_counts > 0).sum())
        assert set(up.arrays) == {"classes", "protos"}
        assert tuple(up["protos"].shape) == (k_i, 10)
        assert not up["classes"].is_floating_point()
        assert up.floats() == k_i * 10
        held = np.flatnonzero(d.split.train_counts)
        assert up["classes"].cpu().tolist() == held.tolist()


def test_expected_cost_fedkd_forms():
    kw = dict(num_classes=10, dim=8, num_clients=3, classes_present=5)
    assert algorithms.expected_cost("fedkd", **kw, model_params=100) == 600
    assert algorithms.expected_cost("fedkd", **kw, model_params=100, kept_floats=123) == 123
    assert algorithms.expected_cost("fml", **kw, model_params=100, kept_floats=123) == 600
    with pytest.raises(ValueError, match="model_params"):
        algorithms.expected_cost("fedkd", **kw)


# -- the message itself: arrays apart from metadata, and its bytes --------------------------------


def sample_message() -> comm.Message:
    g = torch.Generator().manual_seed(0)
    arrays = {
        "protos": torch.randn(3, 5, generator=g),
        "classes": torch.tensor([0, 4, 7]),
        "half": torch.randn(4, generator=g).half(),
        "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "double": torch.randn(2, generator=g).double(),
        "flags": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6, generator=g)[:, ::2],  # not contiguous
        "nan": torch.tensor([float("nan"), float("inf"), -0.0]),
    }
    config = {"num_train": 17, "lr": 0.1, "name": "x", "flag": True, "ids": [1, 2]}
    metrics = {"kept_floats": 12, "threshold": 0.95, "energy": [0.5, 1.0]}
    return comm.Message(arrays, config, metrics)


def test_message_round_trips_through_bytes_bit_for_bit():
    m = sample_message()
    data = m.to_bytes()
    back = comm.Message.from_bytes(data)
    assert list(back.arrays) == list(m.arrays)
    for k, t in m.arrays.items():
        u = back[k]
        assert u.dtype == t.dtype and u.shape == t.shape, k
        assert torch.equal(
            u.reshape(-1).view(torch.uint8), t.contiguous().reshape(-1).view(torch.uint8)
        )
    assert back.config == m.config and back.metrics == m.metrics
    for rec, rec2 in ((m.config, back.config), (m.metrics, back.metrics)):
        assert [type(v) for v in rec.values()] == [type(v) for v in rec2.values()]  # bool stays
    assert back.floats() == m.floats() and back.nbytes() == m.nbytes()
    # on the wire: magic, header length, header, then exactly the arrays' bytes
    header = int.from_bytes(data[7:15], "little")
    assert len(data) - 15 - header == m.nbytes()
    assert back.to_bytes() == data


def test_counts_and_reports_are_metadata_not_payload():
    m = sample_message()
    bare = comm.Message(m.arrays)
    assert m.floats() == bare.floats() and m.nbytes() == bare.nbytes()
    assert comm.Message({}, {"num_train": 10**6}).nbytes() == 0


@pytest.mark.parametrize(
    "corrupt,needle",
    [
        (lambda b: b"XXXXXX\n" + b[7:], "bad magic"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:7] + (10**9).to_bytes(8, "little") + b[15:], "header"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\0", "after the last field"),
        (lambda b: b.replace(b'"float32"', b'"float99"', 1), "malformed array entry"),
        (lambda b: b.replace(b'"arrays":[[', b'"arrays":[[[', 1), "header"),
        (lambda b: b.replace(b'"config":{', b'"config":[{', 1), "header"),
        (lambda b: b.replace(b'"classes"', b'"protos" ', 1), "twice"),  # same header length
        (lambda b: "not bytes", "expected bytes"),
    ],
)
def test_malformed_bytes_are_a_one_line_message_error(corrupt, needle):
    data = comm.Message({"protos": torch.ones(2, 3), "classes": torch.tensor([1, 2])}).to_bytes()
    with pytest.raises(comm.MessageError) as e:
        comm.Message.from_bytes(corrupt(data), "client 3")
    text = str(e.value)
    assert "\n" not in text and "client 3" in text and needle in text, text


@pytest.mark.parametrize(
    "config,metrics,needle",
    [
        ({"n": torch.tensor([3])}, {}, "Tensor"),
        ({"n": np.int64(3)}, {}, "int64"),
        ({"n": {"a": 1}}, {}, "dict"),
        ({"n": [1, "a"]}, {}, "mixed"),
        ({}, {"ok": True}, "bool"),
        ({}, {"s": "text"}, "str"),
        ({1: 2}, {}, "str key"),
    ],
)
def test_only_flower_record_values_go_on_the_wire(config, metrics, needle):
    with pytest.raises(comm.MessageError, match=needle):
        comm.Message({}, config, metrics).to_bytes()


def test_declared_metadata_is_checked_for_key_and_exact_type():
    spec = {"num_train": int}
    comm.check_message(comm.Message({}, {"num_train": 3}), "client 0", config=spec)
    comm.check_message(comm.Message(), "client 0", config=spec)  # absent: its reader decides
    for config, needle in [
        ({"num_train": True}, "has type bool, expected int"),
        ({"num_train": 3.0}, "has type float, expected int"),
        ({"other": 3}, "unexpected config entry 'other'"),
    ]:
        with pytest.raises(comm.MessageError, match=needle):
            comm.check_message(comm.Message({}, config), "client 0", config=spec)
    with pytest.raises(comm.MessageError, match="unexpected metrics entry 'x'.*declares none"):
        comm.check_message(comm.Message({}, {}, {"x": 1}), "client 0", metrics={})
    with pytest.raises(comm.MessageError, match="client 0: missing config entry 'num_train'"):
        comm.read_config(comm.Message(), "client 0", "num_train", int)


# -- the Comm column (comm_table.py) ------------------------------------------------------------


@pytest.fixture(scope="module")
def table():
    return build_comm_table()


def test_comm_table_prototype_rows_match_paper(table):
    proto = table[table.algorithm.isin(["FedProto", "FedTGP", "TinyProto(50)"])]
    assert len(proto) == 9
    assert proto.matches_paper.all()
    by = table.set_index(["dataset", "algorithm"])
    # the U values behind them (HtFLlib partition, seed 1; 75/25 split seeds as make_federated)
    assert by.loc[("cifar10", "FedProto"), ["U_full", "U_train"]].tolist() == [102, 98]
    assert by.loc[("cifar100", "FedProto"), ["U_full", "U_train"]].tolist() == [921, 878]
    assert by.loc[("tinyimagenet", "FedProto"), ["U_full", "U_train"]].tolist() == [1853, 1732]
    assert by.loc[("cifar100", "FedProto"), "measured_M"] == pytest.approx(1.439)
    for algo, figures in PAPER_M.items():
        for ds, fig in zip(("cifar10", "cifar100", "tinyimagenet"), figures):
            assert by.loc[(ds, algo), "paper_M"] == fig
    # known mismatches are flagged and explained
    for ds, algo in [
        ("cifar10", "FedDistill"),
        ("tinyimagenet", "LG-FedAvg (with bias)"),
        ("cifar10", "FML"),
        ("cifar10", "FedKD"),
    ]:
        assert not by.loc[(ds, algo), "matches_paper"]
        assert by.loc[(ds, algo), "note"]
    assert by.loc[("cifar10", "FML"), "convention_M"] == pytest.approx(49.50856)
    assert np.isnan(by.loc[("cifar10", "FedKD"), "measured_M"])


def test_comm_table_least_samples_40_gives_same_partitions():
    counts = [600] * 100
    assert class_presence(counts, 20, 0.1, 1, 1) == class_presence(counts, 20, 0.1, 1, 40)


def test_comm_table_cli(tmp_path, capsys):
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    p = add_parser(sub)
    out = tmp_path / "t.csv"
    args = p.parse_args(
        [
            "--classes",
            "10,20",
            "--per-class",
            "100",
            "--num-clients",
            "5",
            "--dim",
            "64",
            "--cps-dim",
            "8",
            "--out",
            str(out),
        ]
    )
    assert cmd(args) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert set(df.dataset) == {"K10x100", "K20x100"}
    assert df.paper_M.isna().all()
    row = df[(df.dataset == "K10x100") & (df.algorithm == "TinyProto(8)")].iloc[0]
    assert row.measured_M * 1e6 == pytest.approx(8 * (row.U_train + 5 * 10))
    assert "saved" in capsys.readouterr().out
    for bad, name in [
        (["--cps-dim", "600"], "cps_dim"),
        (["--alpha", "0"], "alpha"),
        (["--datasets", "mnist"], "dataset"),
        (["--classes", "1"], "classes"),
        (["--num-clients", "0"], "num_clients"),
    ]:
        try:  # flags shared with `tinyproto run` are checked while parsing, the rest by cmd
            args = p.parse_args([*bad, "--out", str(tmp_path / f"bad-{name}.csv")])
        except SystemExit as e:
            assert e.code == 2
            assert f"invalid {name}=" in capsys.readouterr().err
            continue
        with pytest.raises(ConfigError, match=name) as e:
            cmd(args)
        assert "\n" not in str(e.value)


def test_comm_table_other_settings_never_overwrite_the_committed_table(tmp_path, monkeypatch):
    """Without --out, only the paper's setting writes results/table1_comm.csv (what make
    reproduce regenerates); any other setting goes to a file named after its parameters."""
    from tinyproto.cli.comm_table import default_out

    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    p = add_parser(sub)
    assert default_out(p.parse_args([])) == tmp_path / "table1_comm.csv"
    args = p.parse_args(["--classes", "10,20", "--per-class", "100", "--num-clients", "5"])
    out = default_out(args)
    assert out.parent == tmp_path / "comm-table" and "classes10_20" in out.name
    assert "numclients5" in out.name and out != tmp_path / "table1_comm.csv"
    assert cmd(args) == 0 and out.is_file() and not (tmp_path / "table1_comm.csv").exists()
    assert default_out(p.parse_args(["--dim", "64", "--cps-dim", "8"])) != out
