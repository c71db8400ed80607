"""Messages between clients and server, their measured sizes, and the closed-form costs.

Communication is always *measured* from what the messages carry (``Message.floats``); the
closed forms of paper Table 2 (``expected_cost``) exist to check the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


class MessageError(ValueError):
    """A malformed message; ``str(e)`` is one line naming the sender, the field and the problem."""


@dataclass
class Message:
    """A dict of tensors plus small metadata (not counted as payload).

    Floats are the floating-point elements of the tensors: the unit of the paper's Comm column.
    Bytes count every tensor element (class ids included) at its dtype's size.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def floats(self) -> int:
        return sum(t.numel() for t in self.tensors.values() if t.is_floating_point())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    def __contains__(self, key: str) -> bool:
        return key in self.tensors


def expect(msg: Message, sender: str, spec: dict[str, tuple]) -> None:
    """Check that ``msg`` carries the named tensors with the given (dtype kind, shape) each.

    ``spec`` maps a key to (kind, shape) where kind is "float" or "int" and shape a tuple whose
    entries are ints or None (any size). Raises MessageError with a one-line reason.
    """
    if not isinstance(msg, Message):
        raise MessageError(f"message from {sender}: expected a Message, got {type(msg).__name__}")
    for key, (kind, shape) in spec.items():
        if key not in msg.tensors:
            raise MessageError(f"message from {sender}: missing field {key!r}")
        t = msg.tensors[key]
        if not isinstance(t, torch.Tensor):
            raise MessageError(f"message from {sender}: field {key!r} is not a tensor")
        if kind == "float" and not t.is_floating_point():
            raise MessageError(
                f"message from {sender}: field {key!r} has dtype {t.dtype}, not float"
            )
        if kind == "int" and (t.is_floating_point() or t.dtype == torch.bool):
            raise MessageError(f"message from {sender}: field {key!r} has dtype {t.dtype}, not int")
        if len(shape) != t.dim() or any(s is not None and s != n for s, n in zip(shape, t.shape)):
            want = "x".join("*" if s is None else str(s) for s in shape) or "scalar"
            raise MessageError(
                f"message from {sender}: field {key!r} has shape {list(t.shape)}, expected {want}"
            )
        if kind == "float" and not torch.isfinite(t).all():
            raise MessageError(f"message from {sender}: field {key!r} holds NaN or inf values")


def expected_cost(
    algorithm: str,
    *,
    num_classes: int,
    dim: int,
    num_clients: int,
    classes_present: int,
    cps_dim: int | None = None,
    model_params: int | None = None,
    kept_floats: int | None = None,
) -> int:
    """Floats per round, all clients, both directions (paper Table 2).

    ``classes_present`` is U = sum over clients of the number of classes each uploads;
    ``model_params`` the size of the shared model of FML / FedKD (FedKD: after SVD).
    Prototype algorithms use ``cps_dim`` when CPS is on (TinyProto, or an ablation).

    FedKD's SVD keeps a data-dependent number of factors per matrix and message, so no closed
    form exists: ``kept_floats`` is the round's total over its 2N messages of what the SVD keeps
    (sum of k * (m + n + 1) per factored matrix plus the dense parameters, as FedKD's compressor
    counts it from the ranks) and is returned as is; without it, ``model_params`` = the dense
    mentee size gives the no-compression upper bound 2 * N * model_params.
    """
    K, d, N, U = num_classes, dim, num_clients, classes_present
    if algorithm == "local":
        return 0
    if algorithm in ("fedproto", "fedtgp", "tinyproto-fp", "tinyproto-ft"):
        width = cps_dim if cps_dim is not None else d
        return width * (U + N * K)
    if algorithm == "feddistill":
        return K * (U + N * K)
    if algorithm == "lg-fedavg":
        return 2 * N * (d * K + K)
    if algorithm == "fedkd" and kept_floats is not None:
        return int(kept_floats)
    if algorithm in ("fml", "fedkd"):
        if model_params is None:
            raise ValueError(f"expected_cost({algorithm!r}) needs model_params")
        return 2 * N * model_params
    raise ValueError(f"unknown algorithm {algorithm!r}")
