"""Running federated experiments: the round, where clients live, and the processes they use.

    environment.py    device, results folder and memory checks before anything is computed
    setup.py          Setup: data on the device, partition, masks, mu, algorithm, client states
    step.py           the client step and the server's side of a round (the only copy)
    clients.py        a run's clients in this process or side by side in worker processes
    procs.py          worker processes: spawn, frames, stderr, exit with the parent
    engine.py         run(): rounds, checkpoints, resume, the run folder
    bench.py          where a round's time goes, against a bare PyTorch loop (tinyproto.timing)
    costs.py          a run's compute and memory numbers without training it

May import: config, data, models, cps, comm, store, algorithms, timing (never sweep, flower,
scorecard or cli). Nothing is imported here: ``tinyproto.run`` is ``runtime.engine.run``.
"""
