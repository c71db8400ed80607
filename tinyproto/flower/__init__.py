"""tinyproto on Flower: the same algorithms as a Flower ServerApp and ClientApp.

    settings.py     the run config: every Config field as a key, plus the runtime's keys
    records.py      our Message as a Flower RecordDict; the bytes a message takes on the wire
    client_app.py   the ClientApp (one client per SuperNode, by partition-id)
    server_app.py   the ServerApp (the engine's rounds, failures, checkpoints, outputs)
    link.py         the server's messages and replies with a hard timeout per exchange
    simulation.py   ``simulate(config)``: Flower's simulation runtime from Python
    deploy.py       a local deployment (SuperLink + SuperNodes on 127.0.0.1), started and
                    stopped by PID: ``python -m tinyproto.flower.deploy``
    worker.py       a long-lived ClientApp process per SuperNode (--isolation process)
    supernode.py    Flower's flower-supernode with short polling waits (polling.py)
    polling.py      Flower 1.42's polling and retry waits, shortened

Needs the ``flower`` extra (``pip install -e '.[flower]'``); nothing else in tinyproto imports
this package. The Flower app's pyproject.toml is ``flower-app/`` at the project's root.

May import: config, store, comm, runtime (the same setup and round step as the engine:
``runtime.setup``, ``runtime.step``), never sweep, scorecard or cli.
"""
