"""tinyproto: reference reproduction of TinyProto (Lee & Choi, AAAI 2026, arXiv 2507.04327).

Communication-efficient heterogeneous federated learning with class-wise prototype
sparsification (CPS) and adaptive prototype scaling (APS).

    import tinyproto
    result = tinyproto.run(tinyproto.Config(algorithm="tinyproto-fp", profile="smoke"))
    runs = tinyproto.load_runs(profile="quick")   # finished runs, one row each

The package's layers and what each may import: docs/architecture.md.
"""

from tinyproto.config import Config, ConfigError

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "load_runs", "run", "RunResult", "__version__"]

_LAZY = {  # importing tinyproto must not pull in torch's training stack
    "run": "tinyproto.runtime.engine",
    "RunResult": "tinyproto.runtime.engine",
    "load_runs": "tinyproto.store.runs",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tinyproto' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
