"""FedTiny (../shared/FEDTINY.md), the pruning route: a sparse model chosen by the server.

    algorithm.py  FedTiny, the registered Algorithm: composed of the constants, client and server
    constants.py  FedTinyConstants: what both sides derive from the Config (shared model, masked
                  layers and sizes, tensor specs, which exchanges run, the schedule, the plan)
    protocol.py   the typed protocol: Stage, Phase, Upload, Download, Field enums, field names,
                  ``classify`` (a message's kind), the exchange's rules
    client.py     TinyClient and FedTinyClient: the client's state and steps
    server.py     TinyServer and FedTinyServer: the server's state and steps (candidate pool,
                  BN statistics, selection, sparse FedAvg, prune/grow)
    pruning.py    masks, prune-and-grow, bit packing, the schedule, SparsePlan and its closed-form
                  cost (pure functions, no message field names)
    fewshot.py    the server's few-shot set and the pre-training of the shared model

Imports (no cycles): protocol, pruning and fewshot import no sibling; constants imports protocol
and pruning; client and server import constants, protocol and pruning (server also fewshot),
never each other; algorithm imports them all.

May import: comm, config, data, models, algorithms.base / common / compute. Nothing is imported
here (``tinyproto.algorithms`` registers ``algorithm.FedTiny``).
"""
