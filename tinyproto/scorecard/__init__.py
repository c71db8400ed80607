"""The reproduction scorecard: the paper's claims judged on the finished runs.

    rules.py       verdict rules (compare, judge, weakest), Arm, Runs (the runs of a profile)
    claims/        one function per kind of claim row: base (arms, rows, comparisons),
                   accuracy, communication, prototypes; claims() puts them in order
    pareto.py      compression at equal bytes: Pareto table, TinyProto vs FedProto codecs
    tuning.py      mu's grid search on a validation split (the paper's "grid search")
    render.py      the table (scorecard), its CSV (write) and markdown (markdown, update_docs)
    comm_table.py  paper Table 1's Comm column from the real partitions (no training)

May import: config, data, models, paper, store, algorithms (closed-form costs), sweep (never
the CLI).
"""

from tinyproto.scorecard.render import (
    MARK_BEGIN,
    MARK_END,
    did_not_finish,
    markdown,
    scorecard,
    update_docs,
    update_readme,
    write,
)
from tinyproto.scorecard.rules import (
    ALL_FEDERATED,
    COLUMNS,
    CONFIDENCE,
    MIN_EFFECT,
    MIN_SEEDS,
    NOT_ENOUGH,
    NOT_TESTABLE,
    NOT_WORSE_MARGIN,
    ORDER,
    SCORE_PROFILES,
    SEEDS,
    Arm,
    Measured,
    Runs,
    arm,
    compare,
    difference,
    judge,
    paired_interval,
    text,
    weakest,
)

__all__ = [
    "ALL_FEDERATED",
    "Arm",
    "COLUMNS",
    "CONFIDENCE",
    "MIN_EFFECT",
    "MIN_SEEDS",
    "Measured",
    "NOT_ENOUGH",
    "NOT_WORSE_MARGIN",
    "MARK_BEGIN",
    "MARK_END",
    "NOT_TESTABLE",
    "ORDER",
    "Runs",
    "SCORE_PROFILES",
    "SEEDS",
    "arm",
    "compare",
    "difference",
    "did_not_finish",
    "judge",
    "markdown",
    "paired_interval",
    "scorecard",
    "text",
    "update_docs",
    "update_readme",
    "weakest",
    "write",
]
