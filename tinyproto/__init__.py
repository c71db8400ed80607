"""tinyproto: reference reproduction of TinyProto (Lee & Choi, AAAI 2026, arXiv 2507.04327).

Communication-efficient heterogeneous federated learning with class-wise prototype
sparsification (CPS) and adaptive prototype scaling (APS).
"""

from tinyproto.config import Config, ConfigError

__version__ = "0.1.0"

__all__ = ["Config", "ConfigError", "run", "RunResult", "__version__"]


def __getattr__(name):  # lazy: importing tinyproto must not pull in the engine
    if name in ("run", "RunResult"):
        from tinyproto import engine

        return getattr(engine, name)
    raise AttributeError(name)
