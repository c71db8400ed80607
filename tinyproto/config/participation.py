"""Partial participation: which clients train in a round, and whose upload is lost.

HtFLlib's ``join_ratio`` and ``client_drop_rate``: each round the server samples
max(1, floor(join_ratio x N)) of the N clients without replacement; each sampled client trains
and sends its upload, which is lost with probability ``drop_rate`` (the client dropped out
after training: its model has moved on, the server never sees the upload and the client gets
no download). HtFLlib drops a fixed share of the sampled clients; here each sampled client
drops independently, so a round may lose every upload (the server then skips its step).

Both draws depend only on (seed, round), never on what happened before, so the in-process
engine, a resumed run and the Flower ServerApp pick the same clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinyproto.config.core import Config

STREAM = 40_503  # keeps this draw's random stream apart from every other use of the seed


@dataclass(frozen=True)
class Participation:
    """One round's clients: ``sampled`` train, the ``dropped`` among them lose their upload."""

    sampled: tuple[int, ...]
    dropped: tuple[int, ...]

    @property
    def uploading(self) -> tuple[int, ...]:
        """The sampled clients whose upload reaches the server."""
        return tuple(c for c in self.sampled if c not in self.dropped)


def is_partial(cfg: Config) -> bool:
    """Whether the run samples or drops clients (else every client takes part every round)."""
    return cfg.join_ratio < 1.0 or cfg.drop_rate > 0.0


def num_sampled(cfg: Config) -> int:
    """max(1, floor(join_ratio x N)); the 1e-9 keeps 0.29 x 100 from flooring to 28."""
    return max(1, math.floor(cfg.join_ratio * cfg.num_clients + 1e-9))


def participation(cfg: Config, rnd: int) -> Participation:
    """The clients of round ``rnd`` (0-based), deterministic from (cfg.seed, rnd)."""
    n = cfg.num_clients
    everyone = tuple(range(n))
    if not is_partial(cfg):
        return Participation(everyone, ())
    rng = np.random.default_rng([cfg.seed, rnd, STREAM])
    k = num_sampled(cfg)
    sampled = everyone if k >= n else tuple(sorted(int(c) for c in rng.choice(n, k, False)))
    drops = rng.random(len(sampled)) < cfg.drop_rate
    return Participation(sampled, tuple(c for c, d in zip(sampled, drops) if d))


def ids(clients) -> str:
    """Client ids as one space-separated string (a metrics.csv cell); '' for none."""
    return " ".join(str(c) for c in sorted(clients))
