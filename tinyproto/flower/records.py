"""Our Message as a Flower RecordDict, and the bytes Flower puts on the wire for a message.

    tinyproto Message          Flower RecordDict
    arrays  {name: tensor}  -> "arrays"   ArrayRecord   (each tensor a numpy-serialised Array)
    config  {key: value}    -> "config"   ConfigRecord
    metrics {key: value}    -> "metrics"  MetricRecord

Empty parts are left out. The engine's own records (round number, flags, the reported loss) sit
beside them under :data:`ENVELOPE` / :data:`REPORT` and are never part of the algorithm's
Message. :func:`from_records` is strict: a record of another type, an array Flower could not
have made from one of our dtypes, or a value of a type no Message holds is a one-line
MessageError naming the sender; the algorithm then validates the Message as it would any other.

:func:`wire_bytes` is what a Flower message costs on the wire: the Message protobuf of its
metadata, its object tree and the serialised form (``deflate``) of every object in it (the
Message, RecordDict, records, Arrays and ArrayChunks): what the SuperLink and a SuperNode push
and pull for it, apart from the HTTP framing around each request.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.app import Message as FlowerMessage
from flwr.app.message.message import remove_content_from_message
from flwr.common.serde import message_to_proto
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree

from tinyproto.comm.message import (
    CONFIG_TYPES,
    METRIC_TYPES,
    WIRE_DTYPES,
    Message,
    MessageError,
    show,
    value_problem,
)

PARTS = {"arrays": ArrayRecord, "config": ConfigRecord, "metrics": MetricRecord}
ENVELOPE = "tinyproto"  # ConfigRecord: what the server asks (round, flags)
REPORT = "report"  # MetricRecord: what a client reports besides its upload (loss, counts)
# torch dtypes a Message may carry that numpy (hence Flower's Array) also has
NUMPY_DTYPES = {name: dt for name, dt in WIRE_DTYPES.items() if name != "bfloat16"}


def to_records(
    msg: Message, envelope: dict | None = None, report: dict | None = None
) -> RecordDict:
    """``msg`` as a RecordDict (plus the engine's envelope / report records, if given)."""
    if not isinstance(msg, Message):
        raise MessageError(f"cannot send a {type(msg).__name__}: a tinyproto Message")
    rd = RecordDict()
    if msg.arrays:
        arrays = ArrayRecord()
        for name, t in msg.arrays.items():
            dtype = str(t.dtype).removeprefix("torch.")
            if dtype not in NUMPY_DTYPES:
                raise MessageError(
                    f"cannot send field {show(name)}: dtype {dtype} has no numpy form"
                )
            arrays[name] = Array(t.detach().to("cpu").contiguous().numpy())
        rd["arrays"] = arrays
    if msg.config:
        rd["config"] = ConfigRecord(dict(_checked(msg.config, CONFIG_TYPES, "config")))
    if msg.metrics:
        rd["metrics"] = MetricRecord(dict(_checked(msg.metrics, METRIC_TYPES, "metrics")))
    if envelope is not None:
        rd[ENVELOPE] = ConfigRecord(envelope)
    if report is not None:
        rd[REPORT] = MetricRecord(report)
    return rd


def _checked(record: dict, types: tuple, part: str):
    for key, value in record.items():
        why = value_problem(value, types) if isinstance(key, str) else "is not a str key"
        if why:
            raise MessageError(f"cannot send {part} entry {show(key)}: it {why}")
        yield key, value


def from_records(rd: RecordDict, sender: str) -> Message:
    """The tinyproto Message inside a RecordDict (the envelope and report are skipped)."""
    where = f"message from {sender}"
    extra = sorted(set(rd) - set(PARTS) - {ENVELOPE, REPORT})
    if extra:
        raise MessageError(f"{where}: unexpected record(s) {', '.join(map(show, extra))}")
    for part, cls in PARTS.items():
        if part in rd and not isinstance(rd[part], cls):
            raise MessageError(f"{where}: record {part!r} is a {type(rd[part]).__name__}")
    arrays = {}
    for name, arr in rd["arrays"].items() if "arrays" in rd else ():
        arrays[name] = _tensor(arr, where, name)
    config = dict(rd["config"]) if "config" in rd else {}
    metrics = dict(rd["metrics"]) if "metrics" in rd else {}
    for record, types, part in (
        (config, CONFIG_TYPES, "config"),
        (metrics, METRIC_TYPES, "metrics"),
    ):
        for key, value in record.items():
            why = value_problem(value, types)
            if why:
                raise MessageError(f"{where}: {part} entry {show(key)} {why}")
    return Message(arrays, config, metrics)


def _tensor(arr, where: str, name: str) -> torch.Tensor:
    if not isinstance(arr, Array) or arr.stype != "numpy.ndarray":
        raise MessageError(f"{where}: field {show(name)} is not a numpy-serialised Array")
    try:
        a = arr.numpy()
    except (ValueError, TypeError, OSError, EOFError) as e:
        raise MessageError(f"{where}: field {show(name)} unreadable ({type(e).__name__})") from None
    if a.dtype.name not in NUMPY_DTYPES or a.dtype.byteorder == ">":
        raise MessageError(f"{where}: field {show(name)} has dtype {a.dtype}, not one we send")
    if arr.dtype != a.dtype.name:  # what the record declares is what it must hold
        raise MessageError(
            f"{where}: field {show(name)} declares dtype {arr.dtype}, holds {a.dtype.name}"
        )
    if list(a.shape) != list(arr.shape):
        raise MessageError(
            f"{where}: field {show(name)} declares shape {arr.shape}, holds {a.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(a))


def envelope(rd: RecordDict) -> dict:
    return dict(rd[ENVELOPE]) if ENVELOPE in rd and isinstance(rd[ENVELOPE], ConfigRecord) else {}


def report(rd: RecordDict, sender: str, keys: dict[str, type]) -> dict:
    """The client's report: exactly ``keys`` with values of their types, else MessageError."""
    got = dict(rd[REPORT]) if REPORT in rd and isinstance(rd[REPORT], MetricRecord) else {}
    for key, kind in keys.items():
        value = got.get(key)
        ok = type(value) is kind or (kind is float and type(value) is int)
        if not ok:
            raise MessageError(
                f"message from {sender}: report {key!r} missing or not {kind.__name__}"
            )
    return {key: got[key] for key in keys}


def wire_bytes(message: FlowerMessage) -> int:
    """Bytes Flower pushes and pulls for ``message``: its metadata protobuf, object tree and the
    serialised form of each object it holds (an object shared by several parts counted once)."""
    head = message_to_proto(remove_content_from_message(message)).ByteSize()
    tree = get_object_tree(message).ByteSize()
    return head + tree + sum(len(o.deflate()) for o in get_all_nested_objects(message).values())
