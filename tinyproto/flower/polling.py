"""Flower 1.42's waits, shortened for a federation on one machine; nothing else changes.

A message between the ServerApp and a ClientApp crosses four processes (ServerApp -> SuperLink
-> SuperNode -> ClientApp and back), and Flower waits at every hop:

- a SuperNode with no message sleeps 3 s before it asks the SuperLink again, and looks for its
  ClientApp's reply every 0.5 s (constants in ``flwr.supernode.start_client_internal``);
- whoever pulls a message whose objects (records, arrays) are not all uploaded yet retries
  after 1 s, then 2, 4, 8, 10 s (``pull_objects``' defaults). Flower announces a message before
  its objects are uploaded, so a receiver that looks at once (a long-lived ClientApp, a server
  polling for replies) often waits a whole second for an upload of a few milliseconds.

Measured on a smoke round (4 SuperNodes, 2 cores): 7.5 s with Flower's waits, ~1 s without;
the ClientApps computed 0.1 s of it. :func:`patch_supernode` (applied by ``python -m
tinyproto.flower.supernode``) and :func:`quick_pulls` (applied by the ClientApp worker to
Flower's pull of a task's message, and by the ServerApp's Link to its Grid's module) replace
these waits by a :class:`Backoff` and a first retry after PULL_FIRST s. Each patch checks that
the names it replaces exist and does nothing otherwise (another flwr then keeps its own waits).
"""

from __future__ import annotations

import functools
import os
import types

PULL_FIRST = 0.02  # seconds before the first retry of an object not uploaded yet (Flower: 1)
PULL_CAP = 1.0  # doubling up to this (Flower: 10); Flower's 500 tries and 2 h bound remain
NODE_MIN = 0.05  # a SuperNode polls this soon after a message ...
NODE_MAX = 1.0  # ... ever more slowly (x NODE_GROWTH per empty poll) up to this (Flower: 3 s)
NODE_GROWTH = 1.5
WAKE_ENV = "TINYPROTO_CLIENTAPP_WAKE"  # the named pipe a SuperNode wakes its worker through


class Backoff:
    """Sleep lengths for polling: ``low`` after activity, growing by ``growth`` to ``high``."""

    def __init__(self, low: float, high: float, growth: float = 1.5):
        self.low, self.high, self.growth = low, high, growth
        self.current = low

    def reset(self) -> None:
        self.current = self.low

    def next(self) -> float:
        wait = self.current
        self.current = min(self.high, self.current * self.growth)
        return wait


def quick_pulls(module: types.ModuleType | None) -> bool:
    """Retry the object pulls of ``module`` (one that imported Flower's ``pull_objects`` or
    ``pull_and_inflate_object_from_tree`` by name) after PULL_FIRST s, doubling to PULL_CAP.
    Whether anything was replaced (now or before)."""
    found = False
    for name in ("pull_objects", "pull_and_inflate_object_from_tree"):
        fn = getattr(module, name, None)
        if isinstance(fn, functools.partial) and fn.keywords.get("initial_backoff") == PULL_FIRST:
            found = True  # done already
        elif callable(fn):
            quick = functools.partial(fn, initial_backoff=PULL_FIRST, backoff_cap=PULL_CAP)
            setattr(module, name, quick)
            found = True
    return found


class _Clock:
    """The ``time`` module, but ``sleep(s)`` sleeps at most the backoff's next wait."""

    def __init__(self, real: types.ModuleType, backoff: Backoff):
        self._real, self._backoff = real, backoff

    def sleep(self, seconds: float) -> None:
        self._real.sleep(min(seconds, self._backoff.next()))

    def __getattr__(self, name: str):
        return getattr(self._real, name)


class Waker:
    """Wakes a ClientApp worker (worker.py ``--wake``): a byte into the named pipe ``path``,
    which the worker watches. Never blocks or fails: without a reader (not started yet, gone)
    or with a full pipe (wake-ups pending) the byte is dropped; the worker polls as well."""

    def __init__(self, path: str):
        self.path, self.fd = path, None

    def wake(self) -> None:
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            os.write(self.fd, b"!")
        except BlockingIOError:
            pass
        except OSError:  # no reader (ENXIO), reader gone (EPIPE): open again next time
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None


def patch_supernode(module: types.ModuleType, wake: str | None = None) -> bool:
    """Shorten the waits of ``module`` (``flwr.supernode.start_client_internal``): its sleeps
    follow a Backoff reset whenever a message is pulled or a reply pushed, and its object pulls
    retry quickly; with ``wake`` (a named pipe) a :class:`Waker` tells the ClientApp worker
    each time a message (with all its objects) is in. False, with nothing changed, if the
    module lacks what is replaced."""
    real = getattr(module, "time", None)
    pull = getattr(module, "_pull_and_store_message", None)
    push = getattr(module, "_push_messages", None)
    if not isinstance(real, types.ModuleType) or not callable(pull) or not callable(push):
        return False
    if not hasattr(module, "pull_objects"):
        return False
    backoff = Backoff(NODE_MIN, NODE_MAX, NODE_GROWTH)
    waker = Waker(wake) if wake else None

    def pulled(*args, **kwargs):
        run_id = pull(*args, **kwargs)
        if run_id is not None:  # a message came: its reply and the next message come soon
            backoff.reset()
            if waker is not None:  # its task is claimable now, its objects all here
                waker.wake()
        return run_id

    def pushed(*args, **kwargs):
        try:
            return push(*args, **kwargs)
        finally:
            backoff.reset()

    module._pull_and_store_message, module._push_messages = pulled, pushed
    module.time = _Clock(real, backoff)
    quick_pulls(module)
    return True
