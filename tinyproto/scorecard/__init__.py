"""The reproduction scorecard: the paper's claims judged on the finished runs.

    rules.py       verdict rules (compare, judge, weakest), Arm, Runs (the runs of a profile)
    claims.py      one function per kind of claim row
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
    NOT_TESTABLE,
    ORDER,
    SCORE_PROFILES,
    SEEDS,
    Arm,
    Runs,
    arm,
    compare,
    judge,
    text,
    weakest,
)

__all__ = [
    "ALL_FEDERATED",
    "Arm",
    "COLUMNS",
    "MARK_BEGIN",
    "MARK_END",
    "NOT_TESTABLE",
    "ORDER",
    "Runs",
    "SCORE_PROFILES",
    "SEEDS",
    "arm",
    "compare",
    "did_not_finish",
    "judge",
    "markdown",
    "scorecard",
    "text",
    "update_docs",
    "update_readme",
    "weakest",
    "write",
]
