"""Local differential privacy for class-wise uploads: per-row clipping and Gaussian noise.

With ``Config.dp_clip`` = C a client clips every row of every floating-point array it uploads
(one prototype or logit vector per class) to L2 norm at most C; with ``dp_noise`` = sigma it
then adds independent N(0, (sigma C)^2) noise to every value. The noise is drawn from a
generator seeded by (seed, round, client), apart from training's, so a run is deterministic and
the same in every runtime. It acts before the payload codec (the codec codes the noised rows).

Privacy accounting (:func:`epsilon`): an upload of k rows, each clipped to C, changes by at
most 2 C sqrt(k) in L2 when the client's data are replaced by any other (every row may change
from one clipped vector to another), so one upload is the Gaussian mechanism with sensitivity
2 C sqrt(k) and noise sigma C. Over T uploads its Renyi DP is T alpha (2 sqrt(k) / sigma)^2 / 2
at every order alpha > 1 (Mironov 2017, Prop. 7 and composition), converted to (epsilon,
delta) by epsilon = min over alpha of RDP(alpha) + log(1 / delta) / (alpha - 1) (Mironov 2017,
Prop. 3; the conversion Opacus's and TensorFlow Privacy's RDP accountants use), minimised over a
fine grid of orders. This is local DP of a client's whole upload stream against the server
(and anyone on the wire), the strongest reading; no subsampling amplification is claimed.
"""

from __future__ import annotations

import math

import torch

from tinyproto.comm import Message

DELTA = 1e-5  # the delta every run's summary reports epsilon at
ORDERS = tuple([1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024])


def privatize(msg: Message, clip: float | None, noise: float, generator) -> Message:
    """The upload with each row of its floating-point arrays clipped to ``clip`` and noised
    with std ``noise * clip`` (integer arrays, such as class ids, as they are)."""
    if clip is None:
        return msg
    arrays = {}
    for name, t in msg.arrays.items():
        if not t.is_floating_point() or t.dim() == 0:
            arrays[name] = t
            continue
        x = t.detach().to("cpu", torch.float32)
        rows = x.reshape(-1, x.shape[-1])
        norms = rows.norm(dim=1, keepdim=True)
        factor = torch.clamp(clip / norms.clamp(min=1e-30), max=1.0)
        rows = rows * factor
        if noise > 0:
            rows = rows + noise * clip * torch.randn(rows.shape, generator=generator)
        arrays[name] = rows.reshape(x.shape).to(t.device)
    return Message(arrays, dict(msg.config), dict(msg.metrics))


def noise_generator(seed: int) -> torch.Generator:
    """The noise's own generator (so the noise leaves training's random stream alone)."""
    return torch.Generator().manual_seed((seed * 7919 + 104_729) % (2**62))


def epsilon(noise: float, uploads: int, rows: int, delta: float) -> float:
    """(epsilon, delta)-DP of ``uploads`` uploads of at most ``rows`` rows each, clipped and
    noised with multiplier ``noise`` (module docstring); inf without noise."""
    if noise <= 0:
        return math.inf
    if uploads < 1 or rows < 1:
        return 0.0
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r}: in (0, 1)")
    rho = uploads * 2.0 * rows / noise**2  # RDP(alpha) = rho * alpha
    return min(rho * a + math.log(1 / delta) / (a - 1) for a in ORDERS)
