"""A run's compute and memory numbers without training it (``algorithms.compute`` counts them
from the models a run builds)."""

from __future__ import annotations

from tinyproto.config import algorithm_spec
from tinyproto.runtime.setup import setup


def config_costs(config) -> dict[str, float]:
    """A run's compute and memory numbers (``Algorithm.report``) for a config whose clients
    train dense models, without training: what a finished run written before the engine
    reported them would have had. FedTiny's depend on its chosen mask: read its summary."""
    if not algorithm_spec(config.algorithm).dense_models:
        raise ValueError(
            f"{config.algorithm}'s costs depend on its chosen mask: read its run's summary"
        )
    S = setup(config)
    return S.algo.report(S.states, S.data)
