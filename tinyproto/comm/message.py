"""What crosses the network: a Message of arrays apart from metadata, its size, its bytes.

A Message maps one to one onto a Flower message's RecordDict:

    arrays   ArrayRecord    named tensors: the payload; the only thing counted as communication
    config   ConfigRecord   entries the receiver acts on (LG-FedAvg's n_i: an int)
    metrics  MetricRecord   what the sender reports (FedKD: ranks and kept energy of its SVD)

Record values are Flower's scalar types (ConfigRecord: int, float, str, bool; MetricRecord: int,
float) or lists of one such type. ``floats()`` counts the floating-point elements of the arrays
(the unit of the paper's Comm column) and ``nbytes()`` their bytes (the size on the wire).

``to_bytes`` / ``from_bytes`` are the wire format: a JSON header (metadata, then each array's
name, dtype and shape) followed by the arrays' raw little-endian bytes. A round trip gives back
bit-identical arrays and equal metadata; malformed bytes are a one-line ``MessageError``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

import torch


class MessageError(ValueError):
    """A malformed message; ``str(e)`` is one line naming the sender, the field and the problem."""


# Flower's record value types; bool is not an int here (Flower's MetricRecord refuses it)
CONFIG_TYPES = (int, float, str, bool)
METRIC_TYPES = (int, float)
MAGIC = b"TPMSG1\n"
WIRE_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


@dataclass
class Message:
    """Named arrays (the payload) plus config and metric entries (metadata, never counted).

    Floats are the floating-point elements of the arrays: the unit of the paper's Comm column.
    Bytes count every array element (class ids included) at its dtype's size. A server counts
    only messages it has validated, so only the fields the algorithm declares are ever counted.
    """

    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def floats(self) -> int:
        return sum(t.numel() for t in self.arrays.values() if t.is_floating_point())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.arrays.values())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def to_bytes(self) -> bytes:
        """The wire format: header (metadata, array names, dtypes, shapes), then array bytes."""
        for record, types in ((self.config, CONFIG_TYPES), (self.metrics, METRIC_TYPES)):
            for key, value in record.items():
                why = value_problem(value, types) if isinstance(key, str) else "is not a str key"
                if why:
                    raise MessageError(f"cannot send metadata entry {show(key)}: it {why}")
        specs, blobs = [], []
        for name, t in self.arrays.items():
            t = t.detach().to("cpu").contiguous()
            specs.append([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
            blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        head = {"config": self.config, "metrics": self.metrics, "arrays": specs}
        header = json.dumps(head, allow_nan=True, separators=(",", ":")).encode()
        return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes, sender: str = "the network") -> Message:
        """Parse ``to_bytes``'s format; MessageError (one line, naming ``sender``) if malformed.
        Values are not checked here: the receiver validates the message as it would any other."""
        where = f"message from {sender}"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MessageError(f"{where}: got a {type(data).__name__}, expected bytes")
        data = bytes(data)
        n = len(MAGIC)
        if data[:n] != MAGIC or len(data) < n + 8:
            raise MessageError(f"{where}: not a tinyproto message (bad magic or truncated header)")
        (size,) = struct.unpack("<Q", data[n : n + 8])
        start = n + 8
        if size > len(data) - start:
            raise MessageError(f"{where}: header of {size} bytes, only {len(data) - start} sent")
        try:
            head = json.loads(data[start : start + size])
            config, metrics, specs = head["config"], head["metrics"], head["arrays"]
            if not (isinstance(config, dict) and isinstance(metrics, dict)):
                raise TypeError("records are not objects")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise MessageError(f"{where}: unreadable header ({type(e).__name__})") from None
        arrays, pos = {}, start + size
        for spec in specs if isinstance(specs, list) else [None]:
            name, dtype, shape = _array_spec(spec, where)
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > len(data) - pos:
                raise MessageError(f"{where}: field {show(name)} truncated")
            if name in arrays:
                raise MessageError(f"{where}: field {show(name)} appears twice")
            arrays[name] = _array(data[pos : pos + nbytes], dtype, shape)
            pos += nbytes
        if pos != len(data):
            raise MessageError(f"{where}: {len(data) - pos} bytes after the last field")
        return cls(arrays, config, metrics)


def _array_spec(spec, where: str) -> tuple[str, torch.dtype, tuple[int, ...]]:
    ok = isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str)
    if ok:
        name, dtype, shape = spec
        ok = dtype in WIRE_DTYPES and isinstance(shape, list)
        ok = ok and all(type(s) is int and 0 <= s < 2**40 for s in shape) and len(shape) <= 8
    if not ok:
        raise MessageError(f"{where}: malformed array entry in the header")
    return name, WIRE_DTYPES[dtype], tuple(shape)


def _array(raw: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if not raw:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def show(x) -> str:
    """repr(x) for an error message: one line, short (else just its type)."""
    if isinstance(x, str) and len(x) > 60:
        return repr(x[:57]) + "..."
    try:
        r = repr(x)
    except Exception:  # a hostile object's own __repr__ may fail
        r = "\n"
    return r if "\n" not in r and "\r" not in r and len(r) <= 60 else f"<a {type(x).__name__}>"


def value_problem(value, types: tuple[type, ...]) -> str | None:
    """Why ``value`` is not a record value: one of ``types`` or a list of one of them (exact
    types: a bool is not an int, a numpy scalar is not a float). None when it is."""
    items = value if isinstance(value, list) else [value]
    kinds = {type(v) for v in items}
    if not kinds <= set(types):
        bad = next(type(v).__name__ for v in items if type(v) not in types)
        return f"has type {bad}, expected {' or '.join(t.__name__ for t in types)}"
    if len(kinds) > 1:
        return "is a list of mixed types"
    return None
