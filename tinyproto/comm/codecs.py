"""Payload codecs: lossy coding of a message's floating-point arrays on the wire.

TinyProto's cut comes from sending s of d prototype dimensions; plain lossy coding of the dense
prototypes (or logits) is the obvious control (issue 24). A codec encodes every floating-point
array of a message (prototypes, logits; class ids and other integer arrays are left as they
are) into arrays of fewer bytes, and the receiver decodes them back into float32 before it
checks and uses them. Rows are the array's leading dimensions, columns its last one (a
prototype or logit vector per row).

    fp32     unchanged (4 bytes per value)
    fp16     IEEE half precision (2 bytes per value; values beyond 65504 become inf and are
             refused by the receiver like any non-finite value)
    int8     per row: scale = max |x| / 127 (float32), q = round(x / scale) in [-127, 127]
             (1 byte per value + 4 per row)
    int4     per row: scale = max |x| / 7, q in [-7, 7], two values per byte (q + 8 in a
             nibble, the low nibble first; an odd row ends in a 0 nibble); ceil(c / 2) bytes per
             row + 4 per row
    topk:K   per row the K values of largest magnitude (ties: the lower index), as float32
             values and int16 indices (int32 when a row has more than 32767 columns);
             min(K, c) x (4 + 2) bytes per row; the other values decode to 0

Encoded, a field ``name`` is the array ``name`` (the codes: float16, int8, uint8 or the topk
values) plus, where needed, ``name.scale`` (float32, one per row), ``name.index`` (topk) and the
metadata entry ``name.cols`` (the row length, for int4 and topk). Metadata is not counted as
communication (as elsewhere); :func:`payload_bytes` is the closed form of the arrays' bytes.
Encoding is deterministic; decoding refuses anything malformed with a one-line MessageError
naming the sender and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from tinyproto.comm.message import Message, MessageError, show

NAMES = ("fp32", "fp16", "int8", "int4", "topk")
SPEC = re.compile(r"^(fp32|fp16|int8|int4|topk:([1-9][0-9]{0,6}))$")
INT16_MAX_COLS = 32767  # topk indices fit int16 up to this many columns


@dataclass(frozen=True)
class Codec:
    """One payload codec: ``name`` (one of NAMES) and, for topk, ``k``."""

    name: str
    k: int | None = None

    @property
    def spec(self) -> str:
        return f"topk:{self.k}" if self.name == "topk" else self.name

    @property
    def identity(self) -> bool:
        return self.name == "fp32"

    # -- the closed form ------------------------------------------------------------------------
    def payload_bytes(self, rows: int, cols: int) -> int:
        """Bytes on the wire of a float32 [rows, cols] array once encoded (its arrays only)."""
        if self.name == "fp32":
            return 4 * rows * cols
        if self.name == "fp16":
            return 2 * rows * cols
        if self.name == "int8":
            return rows * cols + 4 * rows
        if self.name == "int4":
            return rows * math.ceil(cols / 2) + 4 * rows
        kept = min(self.k, cols)
        return rows * kept * (4 + _index_dtype(cols).itemsize)

    # -- encode ---------------------------------------------------------------------------------
    def encode(self, msg: Message) -> Message:
        """The message with each floating-point array encoded (the others as they are)."""
        if self.identity:
            return msg
        arrays, config = {}, dict(msg.config)
        for name, t in msg.arrays.items():
            if not t.is_floating_point() or t.dim() == 0:  # ids, counts, scalars: as they are
                arrays[name] = t
                continue
            if any(k.startswith(name + ".") for k in msg.arrays):
                raise MessageError(f"cannot encode field {show(name)}: a field {name}.* exists")
            x = t.detach().to("cpu", torch.float32)
            rows = x.reshape(-1, x.shape[-1])
            for key, value in self._encode_rows(rows, x.shape).items():
                arrays[name if key == "" else f"{name}.{key}"] = value
            if self.name in ("int4", "topk"):
                config[f"{name}.cols"] = int(rows.shape[1])
        return Message(arrays, config, dict(msg.metrics))

    def _encode_rows(self, x: torch.Tensor, shape) -> dict[str, torch.Tensor]:
        lead = tuple(shape[:-1]) if len(shape) else ()
        if self.name == "fp16":
            return {"": x.to(torch.float16).reshape(shape)}
        if self.name in ("int8", "int4"):
            top = 127 if self.name == "int8" else 7
            amax = x.abs().amax(dim=1)
            scale = amax / top
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.round(x / safe[:, None]).clamp_(-top, top).to(torch.int8)
            if self.name == "int8":
                return {"": q.reshape(shape), "scale": scale.reshape(lead)}
            packed = _pack4(q).reshape(*lead, math.ceil(x.shape[1] / 2))
            return {"": packed, "scale": scale.reshape(lead)}
        cols = x.shape[1]
        kept = min(self.k, cols)
        order = torch.sort(-x.abs(), dim=1, stable=True).indices[:, :kept]
        index = torch.sort(order, dim=1).values  # ascending: one canonical form
        values = torch.gather(x, 1, index)
        return {
            "": values.reshape(*lead, kept),
            "index": index.to(_index_dtype(cols)).reshape(*lead, kept),
        }

    # -- decode ---------------------------------------------------------------------------------
    def decode(self, msg: Message, sender: str) -> Message:
        """Back to float32 arrays; MessageError (one line) for anything this codec did not
        produce. Integer arrays pass as they are; the receiver then checks the message."""
        if self.identity:
            return msg
        where = f"message from {sender}"
        arrays, config = {}, dict(msg.config)
        dotted = {n for n in msg.arrays if "." in n}
        parts = set(dotted)  # those no field claims: refused below
        for name, t in msg.arrays.items():
            if name in dotted:
                continue
            if not self._encoded(name, t):
                arrays[name] = t
                continue
            arrays[name] = self._decode_field(name, msg, config, where)
            parts.discard(f"{name}.scale")
            parts.discard(f"{name}.index")
        if parts:
            stray = sorted(parts)[0]
            raise MessageError(f"{where}: field {show(stray)} belongs to no {self.spec} field")
        return Message(arrays, config, dict(msg.metrics))

    def _encoded(self, name: str, t: torch.Tensor) -> bool:
        """Whether ``t`` is the code array of a field (else an array sent as it is)."""
        if t.dim() == 0 and t.dtype == torch.float32:
            return False  # a float scalar is sent as it is
        if self.name in ("fp16", "topk"):
            return t.is_floating_point()
        if self.name == "int8":
            return t.dtype == torch.int8 or t.is_floating_point()
        return t.dtype == torch.uint8 or t.is_floating_point()  # int4

    def _decode_field(self, name: str, msg: Message, config: dict, where: str) -> torch.Tensor:
        t = msg.arrays[name]
        field = f"{where}: field {show(name)}"
        want = {"fp16": torch.float16, "int8": torch.int8, "int4": torch.uint8}.get(
            self.name, torch.float32
        )
        if t.dtype != want:
            raise MessageError(f"{field} is {_dt(t.dtype)}, expected {_dt(want)} ({self.spec})")
        if t.dim() == 0:
            raise MessageError(f"{field} is a scalar, expected rows of values ({self.spec})")
        if self.name == "fp16":
            return t.to(torch.float32)
        lead = tuple(t.shape[:-1])
        if self.name in ("int4", "topk"):
            cols = config.pop(f"{name}.cols", None)
            if type(cols) is not int or cols < 1 or cols > 2**31:
                raise MessageError(f"{field}: metadata {name}.cols missing or not a count")
        if self.name in ("int8", "int4"):
            scale = _part(msg, f"{name}.scale", torch.float32, lead, where)
            if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
                raise MessageError(f"{where}: field {show(name + '.scale')} holds negative, NaN or inf values")
            if self.name == "int8":
                q = t.to(torch.float32)
                if bool((q.abs() > 127).any()):
                    raise MessageError(f"{field} holds -128, outside the int8 code range")
            else:
                if t.shape[-1] != math.ceil(cols / 2):
                    raise MessageError(
                        f"{field}: {t.shape[-1]} bytes per row do not hold {cols} int4 values"
                    )
                q = _unpack4(t.reshape(-1, t.shape[-1]), cols, field).reshape(*lead, cols)
            return q * scale.unsqueeze(-1)
        kept = min(self.k, cols)
        if t.shape[-1] != kept:
            raise MessageError(f"{field}: {t.shape[-1]} values per row, expected {kept} (topk)")
        index = _part(msg, f"{name}.index", _index_dtype(cols), tuple(t.shape), where)
        idx = index.to(torch.int64).reshape(-1, kept)
        if kept and (bool((idx < 0).any()) or bool((idx >= cols).any())):
            raise MessageError(f"{where}: field {show(name + '.index')} points outside 0..{cols - 1}")
        if kept > 1 and not bool((idx[:, 1:] > idx[:, :-1]).all()):
            raise MessageError(
                f"{where}: field {show(name + '.index')} is not strictly increasing per row"
            )
        out = torch.zeros(idx.shape[0], cols, dtype=torch.float32)
        out.scatter_(1, idx, t.reshape(-1, kept))
        return out.reshape(*lead, cols)


def parse(spec) -> Codec:
    """The codec a ``payload`` option names: fp32, fp16, int8, int4 or topk:K (K >= 1)."""
    m = SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(f"{spec!r} is not one of fp32, fp16, int8, int4, topk:K (K >= 1)")
    if m.group(2):
        return Codec("topk", int(m.group(2)))
    return Codec(m.group(1))


def _index_dtype(cols: int) -> torch.dtype:
    return torch.int16 if cols <= INT16_MAX_COLS else torch.int32


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _part(msg: Message, key: str, dtype: torch.dtype, shape: tuple, where: str) -> torch.Tensor:
    t = msg.arrays.get(key)
    if t is None:
        raise MessageError(f"{where}: field {show(key)} missing")
    if t.dtype != dtype or tuple(t.shape) != tuple(shape):
        raise MessageError(
            f"{where}: field {show(key)} is {_dt(t.dtype)} {list(t.shape)}, expected "
            f"{_dt(dtype)} {list(shape)}"
        )
    return t.to(torch.float32) if dtype == torch.float32 else t


def _pack4(q: torch.Tensor) -> torch.Tensor:
    """int8 codes in [-7, 7], [rows, cols] -> uint8 [rows, ceil(cols / 2)], low nibble first."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    if u.shape[1] % 2:
        u = torch.cat([u, torch.zeros(u.shape[0], 1, dtype=torch.uint8)], dim=1)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def _unpack4(p: torch.Tensor, cols: int, field: str) -> torch.Tensor:
    lo, hi = (p & 0x0F).to(torch.int16), (p >> 4).to(torch.int16)
    u = torch.stack([lo, hi], dim=2).reshape(p.shape[0], 2 * p.shape[1])
    if cols % 2 and bool((u[:, cols:] != 0).any()):
        raise MessageError(f"{field}: the padding nibble of an odd row is not 0")
    u = u[:, :cols]
    if bool((u == 0).any()):
        raise MessageError(f"{field} holds the nibble 0, outside the int4 code range 1..15")
    return (u - 8).to(torch.float32)
