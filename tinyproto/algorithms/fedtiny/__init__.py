"""FedTiny (../shared/FEDTINY.md), the pruning route: a sparse model chosen by the server.

    algorithm.py  the FedTiny algorithm class: the client steps, the run-wide constants
    server.py     the server's side: candidate selection, BN statistics, the adjustment rounds
    pruning.py    masks, prune-and-grow, bit packing, the sparse plan and its closed-form cost
    fewshot.py    the server's few-shot set and the pre-training of the shared model

May import: comm, config, data, models, algorithms.base / common / compute. Nothing is imported
here (``tinyproto.algorithms`` registers ``algorithm.FedTiny``).
"""
