"""A timing hook: named parts of a round report their seconds to a clock, when one is installed.

The code paths a run takes call :func:`part` around what a benchmark wants split out (local
training, prototype means, a client's step, the server's aggregation, evaluation). Without a
clock installed ``part`` costs one global lookup and measures nothing, so a run is unaffected;
``tinyproto bench`` installs one (:func:`installed`) and times the very code a run executes,
instead of swapping functions in the algorithm modules. At the bottom of the package: it
imports nothing of tinyproto.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

_clock: Clock | None = None


class Clock:
    """Seconds per key; ``label`` (e.g. the architecture of the client being trained) adds a
    second key ``"<key>:<label>"``. On CUDA every reading synchronises the device first."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.sec: dict[str, float] = defaultdict(float)
        self.label = ""

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def part(self, key: str, labelled: bool = False):
        t0 = self.now()
        try:
            yield
        finally:
            dt = self.now() - t0
            self.sec[key] += dt
            if labelled and self.label:
                self.sec[f"{key}:{self.label}"] += dt


@contextlib.contextmanager
def installed(clock: Clock):
    """Install ``clock`` for the block (one at a time), then remove it."""
    global _clock
    if _clock is not None:
        raise RuntimeError("a timing clock is already installed")
    _clock = clock
    try:
        yield clock
    finally:
        _clock = None


def part(key: str, labelled: bool = False):
    """Time the block as ``key`` on the installed clock; nothing without one."""
    if _clock is None:
        return contextlib.nullcontext()
    return _clock.part(key, labelled)


def label(text: str) -> None:
    """Name what the next labelled parts belong to (the bench: the client's architecture)."""
    if _clock is not None:
        _clock.label = text


def timed(key: str):
    """Decorator: every call of the function is a labelled part ``key`` (see :func:`part`)."""
    import functools

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _clock is None:
                return fn(*args, **kwargs)
            with _clock.part(key, labelled=True):
                return fn(*args, **kwargs)

        return wrapper

    return deco
