"""FedKD's message codec: parameters as truncated SVD factors, by an energy threshold.

Each parameter with >= 2 dims is reshaped to a matrix [out, -1] and replaced by its truncated
SVD factors U_k [m, k], S_k [k], V_k [k, n] (arrays ``<name>#U``, ``#S``, ``#V``), with the
smallest k whose energy sum(S[:k]^2) / sum(S^2) >= T; where the factors, k * (m + n + 1) floats,
would not be smaller than the dense m * n matrix (or the matrix is all zeros), it is sent dense;
1-D parameters go dense. A message's metrics report, per parameter, the rank (0: sent dense)
and the kept energy, plus T and the floats kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from tinyproto.comm import (
    F32_MAX,
    Bound,
    Message,
    MessageError,
    check_field,
    check_message,
    check_values,
)

FACTORS = ("U", "S", "V")


def factor_key(name: str, factor: str) -> str:
    return f"{name}#{factor}"


def metric_spec(shapes: dict[str, tuple]) -> dict[str, type]:
    """The metrics a compressed message may carry, {key: type}."""
    spec: dict[str, type] = {"threshold": float, "kept_floats": int}
    for name in shapes:
        spec[f"rank/{name}"] = int
        spec[f"energy/{name}"] = float
    return spec


def ranks(msg: Message) -> dict[str, int | None]:
    """{parameter: rank k, or None when sent dense}, from a message's metrics."""
    return {
        key.removeprefix("rank/"): k or None
        for key, k in msg.metrics.items()
        if key.startswith("rank/")
    }


def frobenius_bound(numel: int) -> Bound:
    """|value| <= sqrt(float32 max / (4 numel)): the squared Frobenius norm of a matrix of such
    values, and so its singular values, stay finite."""
    n = max(int(numel), 1)
    return Bound(
        math.sqrt(F32_MAX / (4 * n)),
        f"sqrt(float32 max / (4 x {n} entries)), so the SVD of the average stays finite",
    )


def threshold(rnd: int, rounds: int, t_start: float, t_end: float) -> float:
    """T(r) = T_start + (r + 1) / R * (T_end - T_start), r = 0..R-1."""
    return t_start + min(rnd + 1, rounds) / rounds * (t_end - t_start)


def energy_rank(S: torch.Tensor, T: float) -> int:
    """Smallest k with sum(S[:k]^2) / sum(S^2) >= T (S descending, not all zero)."""
    cum = S.double().pow(2).cumsum(0)
    k = int(torch.searchsorted(cum, T * cum[-1]).item()) + 1
    return min(k, S.numel())


@dataclass
class Compressed:
    """A compressed parameter set: the arrays to send and what the SVD kept."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    ranks: dict[str, int | None] = field(default_factory=dict)  # None = sent dense
    energy: dict[str, float] = field(default_factory=dict)  # kept energy (1.0 when dense)
    kept_floats: int = 0

    def meta(self, T: float) -> dict:
        """The message's metrics: T, the floats kept, each parameter's rank and energy."""
        out: dict = {"threshold": T, "kept_floats": self.kept_floats}
        for name, k in self.ranks.items():
            out[f"rank/{name}"] = k or 0
            out[f"energy/{name}"] = self.energy[name]
        return out

    def message(self, T: float, config: dict | None = None) -> Message:
        return Message(dict(self.tensors), dict(config or {}), self.meta(T))


@torch.no_grad()
def compress(params: dict[str, torch.Tensor], T: float) -> Compressed:
    """Truncated SVD of every >= 2-D parameter (as [out, -1]) keeping energy >= T."""
    out = Compressed()
    for name, p in params.items():
        p = p.detach()
        if p.dim() < 2:
            out.tensors[name] = p.clone()
            out.ranks[name], out.energy[name] = None, 1.0
            out.kept_floats += p.numel()
            continue
        M = p.reshape(p.shape[0], -1)
        m, n = M.shape
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        total = float(S.double().pow(2).sum())
        k = energy_rank(S, T) if total > 0 else None
        if k is None or k * (m + n + 1) >= m * n:  # factors not smaller: dense
            out.tensors[name] = p.clone()
            out.ranks[name], out.energy[name] = None, 1.0
            out.kept_floats += m * n
            continue
        out.tensors[factor_key(name, "U")] = U[:, :k].contiguous()
        out.tensors[factor_key(name, "S")] = S[:k].contiguous()
        out.tensors[factor_key(name, "V")] = Vh[:k].contiguous()
        out.ranks[name] = k
        out.energy[name] = float(S[:k].double().pow(2).sum()) / total
        out.kept_floats += k * (m + n + 1)
    return out


def decompress(
    msg: Message,
    shapes: dict[str, tuple],
    sender: str,
    *,
    bounds: dict[str, Bound] | None = None,
    device=None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Rebuild every parameter from ``msg``; returns (params, floats the factors/dense hold).

    Every field exactly float32 and finite; with ``bounds`` (by parameter name) each dense or
    rebuilt parameter within its bound. Fields outside ``shapes`` are not looked at (callers
    refuse them with ``check_message``). Raises MessageError (one line, naming the sender and
    the field) on a malformed message.
    """
    check_message(msg, sender)
    fields, factored, kept = {}, {}, 0
    for name, shape in shapes.items():
        keys = [factor_key(name, f) for f in FACTORS]
        has_factors = [k in msg for k in keys]
        if name in msg:
            if any(has_factors):
                raise MessageError(f"message from {sender}: field {name!r} sent dense and factored")
            fields[name] = check_field(msg, sender, name, "float", shape, device)
            kept += fields[name].numel()
            continue
        if len(shape) < 2 or not any(has_factors):
            raise MessageError(f"message from {sender}: missing field {name!r}")
        m = shape[0]
        n = math.prod(shape[1:])
        kU, kS, kV = keys
        U = fields[kU] = check_field(msg, sender, kU, "float", (m, None), device)
        S = fields[kS] = check_field(msg, sender, kS, "float", (None,), device)
        V = fields[kV] = check_field(msg, sender, kV, "float", (None, n), device)
        k = U.shape[1]
        if S.shape[0] != k or V.shape[0] != k or not 1 <= k <= min(m, n):
            raise MessageError(
                f"message from {sender}: field {name!r} has inconsistent SVD factors "
                f"U{list(U.shape)} S{list(S.shape)} V{list(V.shape)}"
            )
        factored[name] = (U, S, V)
        kept += k * (m + n + 1)
    check_values(fields, sender, bounds)  # factors: finite; dense parameters: bounded too
    rebuilt = {name: ((U * S) @ V).reshape(shapes[name]) for name, (U, S, V) in factored.items()}
    check_values(rebuilt, sender, bounds, label=" rebuilt from its SVD factors")
    params = {name: fields[name] if name in fields else rebuilt[name] for name in shapes}
    return params, kept
