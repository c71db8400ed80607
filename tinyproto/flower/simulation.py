"""Flower's simulation runtime from Python (a notebook, a script): ``simulate(config)``.

``flwr.simulation.run_simulation`` runs a ServerApp and one ClientApp per virtual SuperNode
(Ray actors) in this process, but passes them an empty run config; :func:`apps` binds a run
config to the two apps instead. The simulation gives each node ``partition-id`` and
``num-partitions`` itself, so ``num_supernodes`` is the Config's ``num_clients``.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.app import Message as FlowerMessage
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from tinyproto.config import Config
from tinyproto.flower import client_app, server_app, settings
from tinyproto.runtime.clients import RUN_THREADS

THREADS = RUN_THREADS  # CPUs per simulated ClientApp: the torch threads each computation uses


def apps(run_config: dict) -> tuple[ServerApp, ClientApp]:
    """A ServerApp and a ClientApp that run ``run_config`` (checked here, before any start)."""
    settings.parse(run_config)
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        server_app.serve(grid, settings.parse({**context.run_config, **run_config}))

    client = ClientApp()
    for register, handler in (
        (client.query, client_app.hello),
        (client.train, client_app.train),
        (client.evaluate, client_app.evaluate),
    ):
        register()(_bound(handler, run_config))
    return server, client


def _bound(handler, run_config: dict):
    def call(msg: FlowerMessage, context: Context) -> FlowerMessage:
        return handler(msg, context, {**context.run_config, **run_config})

    call.__name__ = handler.__name__
    return call


def simulate(config: Config, *, backend_config: dict | None = None, **runtime) -> Path:
    """Run ``config`` on Flower's simulation runtime; returns its run folder.

    ``runtime``: the run config's runtime keys by Python name (``results_dir``,
    ``round_timeout``, ``resume``, ...). ``backend_config``: Flower's; the default gives each
    ClientApp THREADS CPUs: every handler computes with the engine's one torch thread
    (runtime.clients.run_numerics, whatever Ray sets OMP_NUM_THREADS to), so the numbers are
    the engine's bit for bit and Ray runs as many ClientApps at once as there are cores.
    """
    from flwr.simulation import run_simulation  # Ray: imported only when simulating

    run_config = settings.to_run_config(config, **runtime)
    server, client = apps(run_config)
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=config.num_clients,
        backend_config=backend_config or {"client_resources": {"num_cpus": THREADS, "num_gpus": 0}},
    )
    return settings.parse(run_config).run_dir
