"""Checking messages.

Communication is always *measured* from what the messages carry (``Message.floats``,
tinyproto.comm.message); the closed forms of paper Table 2, declared by each algorithm class
(``Algorithm.expected_cost``), exist to check the measurement.

Every message is validated before anything reads it (``collect_uploads`` for a round's
container and sender ids, ``check_message`` for its metadata, ``expect`` for its arrays): float
arrays are exactly float32, ids exactly int64, shapes exact, no array or metadata entry the
algorithm does not declare, metadata of the declared type, no NaN or inf, and on the server no
value above the algorithm's magnitude ``Bound``. A refusal is a ``MessageError`` whose text is
one line naming the sender and the field.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from tinyproto.comm.message import Message, MessageError, show

__all__ = ["Message", "MessageError", "show"]  # re-exported: most callers import them from here

FLOAT = torch.float32  # every floating-point payload
INT = torch.int64  # class ids
KINDS = {"float": FLOAT, "int": INT}
F32_MAX = float(torch.finfo(torch.float32).max)
# the words of a refusal of finite values past a Bound (store.failures.diverged reads them)
OUT_OF_BOUND = "above the bound"


@dataclass(frozen=True)
class Bound:
    """The largest |value| a server accepts in a float field, and why (quoted in refusals)."""

    value: float
    why: str


def sum_bound(num_clients: int) -> Bound:
    """|value| <= float32 max / (2 N): the server's sum over N clients stays finite (2x slack
    for rounding)."""
    n = max(int(num_clients), 1)
    return Bound(
        F32_MAX / (2 * n), f"float32 max / (2 x {n} clients), so the server's sum stays finite"
    )


def square_bound(dim: int, scale: float = 1.0) -> Bound:
    """|value| <= sqrt(float32 max / (8 d)) / scale: squared distances between d-dim vectors of
    such values (after the server multiplies them by ``scale``) stay finite."""
    d = max(int(dim), 1)
    value = math.sqrt(F32_MAX / (8 * d)) / scale
    why = f"sqrt(float32 max / (8 x d={d}))"
    if scale != 1.0:
        why += f" / {scale:g}"
    return Bound(value, why + ", so the server's squared distances stay finite")


def tighter(*bounds: Bound) -> Bound:
    return min(bounds, key=lambda b: b.value)


def sender_name(sid) -> str:
    return f"client {show(sid)}"


def collect_uploads(uploads, num_clients: int, rnd: int) -> dict[int, Message]:
    """A round's uploads as {client id: Message}, from a dict or a sequence of (id, message).

    Refuses an empty round, anything but a plain int id in [0, num_clients) (bools too), an id
    seen twice, and anything that is not a Message. The messages themselves are checked later.
    """
    where = f"server: round {rnd}"
    if isinstance(uploads, Mapping):
        items = list(uploads.items())
    elif isinstance(uploads, (list, tuple)):
        items = list(uploads)
    else:
        raise MessageError(
            f"{where}: uploads must be a dict or a sequence of (sender id, message) pairs, "
            f"got {type(uploads).__name__}"
        )
    if not items:
        raise MessageError(f"{where}: no uploads to aggregate")
    out: dict[int, Message] = {}
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise MessageError(f"{where}: upload #{i} is not a (sender id, message) pair")
        sid, msg = item
        if isinstance(sid, bool) or not isinstance(sid, numbers.Integral):
            raise MessageError(
                f"message from {sender_name(sid)}: sender id has type {type(sid).__name__}, "
                f"expected an int client id in [0, {num_clients})"
            )
        sid = int(sid)
        sender = sender_name(sid)
        if not 0 <= sid < num_clients:
            raise MessageError(
                f"message from {sender}: unknown sender id, expected a client id in "
                f"[0, {num_clients})"
            )
        if sid in out:
            raise MessageError(
                f"message from {sender}: sender id {sid} appears more than once in round {rnd}"
            )
        if not isinstance(msg, Message):
            raise MessageError(
                f"message from {sender}: got a {type(msg).__name__}, expected a Message"
            )
        out[sid] = msg
    return out


def check_message(msg, sender: str, allowed=None, *, config=None, metrics=None) -> None:
    """``msg`` is a Message of named tensors; with ``allowed``, no array outside it; with
    ``config`` / ``metrics`` ({key: type}), no metadata entry outside them and each of its
    declared type (metadata is never counted, so only what the algorithm declares may travel
    there). Declared entries may be absent: whoever reads one checks that it is there."""
    if not isinstance(msg, Message):
        raise MessageError(f"message from {sender}: got a {type(msg).__name__}, expected a Message")
    for record, spec, label in ((msg.config, config, "config"), (msg.metrics, metrics, "metrics")):
        if spec is not None:
            check_record(record, spec, sender, label)
    if not isinstance(msg.arrays, dict):
        raise MessageError(
            f"message from {sender}: arrays are a {type(msg.arrays).__name__}, expected a dict"
        )
    for key in msg.arrays:
        if not isinstance(key, str):
            raise MessageError(f"message from {sender}: field {show(key)} is not named by a string")
    if allowed is not None:
        extra = [k for k in msg.arrays if k not in allowed]
        if extra:
            names = sorted(allowed)
            listed = ", ".join(repr(k) for k in names) if len(names) <= 4 else ""
            want = f"expected only {listed}" if listed else f"expected only its {len(names)} fields"
            if not names:
                want = "expected no fields"
            raise MessageError(f"message from {sender}: unexpected field {show(extra[0])} ({want})")


def check_record(record, spec: Mapping[str, type], sender: str, label: str) -> None:
    """A config or metrics record: a dict whose entries are declared in ``spec`` and hold a value
    of exactly the declared type (a bool is not an int)."""
    if not isinstance(record, dict):
        raise MessageError(
            f"message from {sender}: {label} is a {type(record).__name__}, expected a dict"
        )
    for key, value in record.items():
        if key not in spec:
            declared = (
                ", ".join(map(repr, sorted(spec))) if len(spec) <= 4 else f"{len(spec)} entries"
            )
            raise MessageError(
                f"message from {sender}: unexpected {label} entry {show(key)} (metadata is not "
                f"counted as communication; this algorithm declares {declared or 'none'})"
            )
        if type(value) is not spec[key]:
            raise MessageError(
                f"message from {sender}: {label} entry {key!r} has type {type(value).__name__}, "
                f"expected {spec[key].__name__}"
            )


def read_config(msg: Message, sender: str, key: str, kind: type):
    """A config entry the receiver needs: present and of exactly type ``kind``."""
    if key not in msg.config:
        raise MessageError(f"message from {sender}: missing config entry {key!r}")
    value = msg.config[key]
    if type(value) is not kind:
        raise MessageError(
            f"message from {sender}: config entry {key!r} has type {type(value).__name__}, "
            f"expected {kind.__name__}"
        )
    return value


def _on(dev: torch.device, want: torch.device) -> bool:
    return dev.type == want.type and (want.index is None or dev.index == want.index)


def check_field(
    msg: Message, sender: str, key: str, kind, shape: tuple, device=None
) -> torch.Tensor:
    """One field's structure: a dense, detached tensor of the exact dtype and shape, on the CPU
    or ``device``; returned on ``device`` (when given). Values are checked by ``check_values``."""
    if key not in msg.arrays:
        raise MessageError(f"message from {sender}: missing field {key!r}")
    t = msg.arrays[key]
    where = f"message from {sender}: field {key!r}"
    if not isinstance(t, torch.Tensor):
        raise MessageError(f"{where} is not a tensor (got {type(t).__name__})")
    if t.layout != torch.strided:
        raise MessageError(f"{where} has layout {t.layout}, expected torch.strided")
    if device is not None:
        device = torch.device(device)
    if not (t.device.type == "cpu" or (device is not None and _on(t.device, device))):
        want = "cpu" if device is None or device.type == "cpu" else f"cpu or {device}"
        raise MessageError(f"{where} is on device {t.device}, expected {want}")
    if t.requires_grad:
        raise MessageError(f"{where} requires grad, expected a plain (detached) tensor")
    dtype = KINDS.get(kind, kind)
    if t.dtype != dtype:
        raise MessageError(f"{where} has dtype {t.dtype}, expected {dtype}")
    if len(shape) != t.dim() or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "x".join("*" if s is None else str(s) for s in shape) or "scalar"
        raise MessageError(f"{where} has shape {list(t.shape)}, expected {want}")
    return t if device is None else t.to(device)


def check_values(
    tensors: dict[str, torch.Tensor], sender: str, bound=None, label: str = ""
) -> None:
    """No NaN or inf in any float tensor and, with ``bound`` (a Bound, or a dict of them by
    name), no |value| above it. One batched reduction (a single device sync) for all fields."""
    names = [k for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if not names:
        return
    ref = tensors[names[0]].device
    peaks = torch.stack([tensors[k].detach().abs().amax().to(ref, torch.float32) for k in names])
    for key, peak in zip(names, peaks.tolist()):
        b = bound.get(key) if isinstance(bound, dict) else bound
        if not math.isfinite(peak):
            raise MessageError(
                f"message from {sender}: field {key!r}{label} holds NaN or inf values"
            )
        if b is not None and peak > b.value:
            raise MessageError(
                f"message from {sender}: field {key!r}{label} holds |value| up to {peak:.3g}, "
                f"{OUT_OF_BOUND} {b.value:.3g} ({b.why})"
            )


def expect(
    msg: Message,
    sender: str,
    spec: dict[str, tuple],
    *,
    partial: bool = False,
    bound=None,
    device=None,
) -> dict[str, torch.Tensor]:
    """Check that ``msg`` carries the named tensors with the given (kind, shape) each.

    ``spec`` maps a key to (kind, shape): kind "float" (exactly float32), "int" (exactly int64)
    or a torch dtype; shape a tuple of ints or None (any size). Unless ``partial``, a field
    outside ``spec`` is refused. Float fields must be finite and, with ``bound``, within it.
    Returns the spec'd tensors (moved to ``device`` when given). Raises MessageError, one line.
    """
    check_message(msg, sender, None if partial else spec)
    out = {
        key: check_field(msg, sender, key, kind, shape, device)
        for key, (kind, shape) in spec.items()
    }
    check_values(out, sender, bound)
    return out


def check_downloads(downloads: dict[int, Message], algorithm: str, rnd: int) -> None:
    """The server's own output: a NaN or inf it produced (say, server training that diverged)
    is an error, never a download. Names the algorithm, the field and, for per-class fields,
    the first class affected."""
    seen: set[int] = set()
    for msg in downloads.values():
        if id(msg) in seen:
            continue
        seen.add(id(msg))
        names = [k for k, t in msg.arrays.items() if t.is_floating_point() and t.numel()]
        if not names:
            continue
        ok = torch.stack([torch.isfinite(msg[k]).all().to(msg[names[0]].device) for k in names])
        for key, good in zip(names, ok.tolist()):
            if good:
                continue
            t, where = msg[key], ""
            classes = msg.arrays.get("classes")
            if classes is not None and t.dim() >= 1 and t.shape[0] == classes.numel():
                bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1)
                where = f" (class {int(classes[bad.nonzero()[0, 0]])})"
            raise MessageError(
                f"server: round {rnd}: {algorithm} produced NaN or inf in download field "
                f"{key!r}{where}; refused, server state rolled back"
            )
