"""Payload codecs (tinyproto.comm.codecs): round-trip error bounds, bytes on the wire equal to
the closed form, determinism, and one-line refusals of malformed encodings."""

from __future__ import annotations

import math

import pytest
import torch

from tinyproto.comm import Message, MessageError
from tinyproto.comm.codecs import Codec, parse

SPECS = ("fp32", "fp16", "int8", "int4", "topk:3", "topk:1", "topk:50")


def _msg(rows=4, cols=7, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(rows, cols, generator=g) * scale
    return Message({"classes": torch.arange(rows), "protos": protos}, {"n": 3}, {"m": 1.5})


def _roundtrip(spec, msg):
    codec = parse(spec)
    wire = codec.encode(msg)
    back = codec.decode(Message.from_bytes(wire.to_bytes(), "client 0"), "client 0")
    return codec, wire, back


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(4, 7), (3, 8), (1, 1), (0, 5), (2, 3, 5)])
def test_bytes_on_the_wire_equal_the_closed_form(spec, shape):
    msg = _msg()
    msg.arrays["protos"] = torch.randn(*shape)
    codec, wire, back = _roundtrip(spec, msg)
    rows, cols = math.prod(shape[:-1]), shape[-1]
    payload = wire.nbytes() - msg.arrays["classes"].numel() * 8
    assert payload == codec.payload_bytes(rows, cols)
    assert back["protos"].shape == torch.Size(shape) and back["protos"].dtype == torch.float32
    assert torch.equal(back["classes"], msg["classes"])  # integer arrays as they are
    assert back.config == msg.config and back.metrics == msg.metrics  # .cols entries removed


def test_closed_forms():
    assert Codec("fp32").payload_bytes(10, 500) == 20_000
    assert Codec("fp16").payload_bytes(10, 500) == 10_000
    assert Codec("int8").payload_bytes(10, 500) == 5_040
    assert Codec("int4").payload_bytes(10, 501) == 10 * 251 + 40
    assert parse("topk:25").payload_bytes(10, 500) == 10 * 25 * 6
    assert parse("topk:25").payload_bytes(10, 40_000) == 10 * 25 * 8  # int32 indices
    assert parse("topk:900").payload_bytes(10, 500) == 10 * 500 * 6  # at most the row


@pytest.mark.parametrize("spec,bound", [("fp16", 2**-11), ("int8", 0.5 / 127), ("int4", 0.5 / 7)])
def test_round_trip_error_is_within_the_codecs_bound(spec, bound):
    """fp16: relative half-ulp; int8/int4: half a step of the row's scale (max |x| / levels)."""
    msg = _msg(rows=16, cols=33, scale=5.0)
    _, _, back = _roundtrip(spec, msg)
    x, y = msg["protos"], back["protos"]
    if spec == "fp16":
        assert bool(((x - y).abs() <= x.abs() * bound + 1e-12).all())
    else:
        amax = x.abs().amax(dim=1, keepdim=True)
        assert bool(((x - y).abs() <= amax * bound * (1 + 1e-6)).all())
        torch.testing.assert_close(y.abs().amax(dim=1), x.abs().amax(dim=1), rtol=1e-6, atol=0)


def test_topk_keeps_the_largest_values_exactly_and_zeroes_the_rest():
    x = torch.tensor([[0.1, -3.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
    msg = Message({"protos": x})
    _, wire, back = _roundtrip("topk:2", msg)
    assert torch.equal(back["protos"], torch.tensor([[0.0, -3.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
    assert wire["protos.index"].dtype == torch.int16  # ties: the lower index
    _, _, whole = _roundtrip("topk:10", msg)
    assert torch.equal(whole["protos"], x)


def test_zero_rows_and_fp32_are_exact():
    msg = Message({"protos": torch.zeros(3, 5)})
    for spec in ("int8", "int4", "topk:2"):
        assert torch.equal(_roundtrip(spec, msg)[2]["protos"], torch.zeros(3, 5))
    m = _msg()
    assert parse("fp32").encode(m) is m and torch.equal(_roundtrip("fp32", m)[2]["protos"], m["protos"])


@pytest.mark.parametrize("spec", SPECS)
def test_encoding_is_deterministic(spec):
    a = parse(spec).encode(_msg(seed=3)).to_bytes()
    b = parse(spec).encode(_msg(seed=3)).to_bytes()
    assert a == b


def test_fp16_overflow_becomes_inf_for_the_receiver_to_refuse():
    back = _roundtrip("fp16", Message({"protos": torch.tensor([[1e6, 1.0]])}))[2]
    assert math.isinf(back["protos"][0, 0].item())


@pytest.mark.parametrize(
    "spec,tamper,needle",
    [
        ("fp16", lambda m: m.arrays.__setitem__("protos", m["protos"].float()), "is float32, expected float16"),
        ("int8", lambda m: m.arrays.pop("protos.scale"), "field 'protos.scale' missing"),
        ("int8", lambda m: m.arrays.__setitem__("protos.scale", torch.ones(2)), "expected float32 [4]"),
        ("int8", lambda m: m.arrays.__setitem__("protos.scale", -torch.ones(4)), "negative, NaN or inf"),
        ("int8", lambda m: m.arrays["protos"].__setitem__((0, 0), -128), "outside the int8 code range"),
        ("int4", lambda m: m.config.pop("protos.cols"), "protos.cols missing"),
        ("int4", lambda m: m.config.__setitem__("protos.cols", 99), "do not hold 99 int4 values"),
        ("int4", lambda m: m.arrays["protos"].__setitem__((0, 0), 0), "nibble 0"),
        ("int4", lambda m: m.arrays["protos"].__setitem__((0, 3), 0x18), "padding nibble"),
        ("topk:3", lambda m: m.arrays["protos.index"].__setitem__((0, 0), 7), "points outside 0..6"),
        ("topk:3", lambda m: m.arrays["protos.index"].__setitem__((0, 1), m["protos.index"][0, 0]), "strictly increasing"),
        ("topk:3", lambda m: m.arrays.__setitem__("protos", m["protos"][:, :2].contiguous()), "expected 3 (topk)"),
        ("topk:3", lambda m: m.arrays.__setitem__("extra.index", torch.zeros(1)), "belongs to no topk:3 field"),
    ],
)
def test_malformed_encodings_are_refused_with_one_line(spec, tamper, needle):
    codec = parse(spec)
    wire = codec.encode(_msg())
    wire = Message.from_bytes(wire.to_bytes(), "client 2")
    tamper(wire)
    with pytest.raises(MessageError) as e:
        codec.decode(wire, "client 2")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(e.value).startswith("message from client 2")


@pytest.mark.parametrize("bad", ["", "int2", "topk", "topk:0", "topk:-1", "topk:1.5", "FP16", 8, None])
def test_bad_specs_are_refused(bad):
    with pytest.raises(ValueError, match="is not one of fp32, fp16, int8, int4, topk:K"):
        parse(bad)


# -- in a run -------------------------------------------------------------------------------------
SMALL = dict(profile="smoke", rounds=2, eval_every=1)


@pytest.mark.parametrize("algorithm", ["fedproto", "tinyproto-fp", "tinyproto-ft", "feddistill"])
@pytest.mark.parametrize("spec", ["fp16", "int8", "int4", "topk:5"])
def test_a_run_counts_the_encoded_bytes_both_ways(algorithm, spec, tmp_path):
    """Round 1 trains the same in both runs (the codec acts after training), so its uploads
    have the same rows and widths: the encoded run's upload bytes are the float32 run's minus
    4 bytes per value plus the codec's closed form. Downloads: the same for every client row."""
    from tinyproto import Config, run
    from tinyproto.config import DATASET_CLASSES

    base = Config(algorithm=algorithm, client_workers=1, **SMALL)
    coded = base.replace(payload=spec)
    assert coded.run_id() != base.run_id()
    a = run(base, root=tmp_path / "a", progress=False).metrics.iloc[0]
    b = run(coded, root=tmp_path / "b", progress=False).metrics.iloc[0]
    width = (base.cps_dim if algorithm.startswith("tinyproto") else base.feature_dim)
    if algorithm == "feddistill":
        width = DATASET_CLASSES[base.dataset]
    c = parse(spec)
    for way in ("upload", "download"):
        values = int(a[f"{way}_floats"])
        rows = values // width
        assert rows * width == values
        if way == "upload" or algorithm != "tinyproto-ft":  # FT's download: one table per client
            expected = a[f"{way}_bytes"] - 4 * values + c.payload_bytes(rows, width)
            assert b[f"{way}_bytes"] == expected, way
    if c.payload_bytes(1, width) < 4 * width:  # topk:5 of TinyProto's s = 4: indices on top
        assert b["upload_bytes"] < a["upload_bytes"]


def test_the_codec_is_lossy_but_the_run_trains(tmp_path):
    from tinyproto import Config, run

    base = Config(algorithm="fedproto", client_workers=1, **SMALL)
    a = run(base, root=tmp_path / "a", progress=False)
    b = run(base.replace(payload="int8"), root=tmp_path / "b", progress=False)
    assert abs(a.last_acc - b.last_acc) < 0.1
    # d = 40: 160 bytes per row become 44, beside 8 bytes of class id
    assert b.summary["comm_bytes_per_round"] < 0.35 * a.summary["comm_bytes_per_round"]


def test_encoded_runs_are_the_same_in_client_workers(tmp_path):
    from tinyproto import Config, run

    cfg = Config(algorithm="tinyproto-fp", payload="int4", **SMALL)
    a = run(cfg.replace(client_workers=1), root=tmp_path / "a", progress=False)
    b = run(cfg.replace(client_workers=2), root=tmp_path / "b", progress=False)
    cols = [c for c in a.metrics.columns if c != "seconds"]
    import pandas as pd

    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols])


def test_payload_is_refused_for_algorithms_that_send_models():
    from tinyproto import Config, ConfigError

    for algorithm in ("fml", "lg-fedavg", "fedkd", "fedavg", "local"):
        with pytest.raises(ConfigError, match="invalid payload='int8'"):
            Config(algorithm=algorithm, payload="int8")
    with pytest.raises(ConfigError, match=r"invalid payload='int3': fp32, fp16, int8, int4 or topk:K"):
        Config(payload="int3")
