"""Messages between clients and server: the only thing the two sides share.

    message.py  Message (named tensors + typed metadata), its wire format (to_bytes /
                from_bytes), MessageError
    checks.py   the checks every message goes through (containers, sender ids, declared
                metadata, dtypes, shapes, finite values within a Bound), the float / int kinds

May import: nothing of tinyproto but itself. Closed-form communication costs are declared by
each algorithm class (``Algorithm.expected_cost``; ``tinyproto.algorithms.expected_cost``).
"""

from tinyproto.comm.checks import (
    F32_MAX,
    FLOAT,
    INT,
    KINDS,
    Bound,
    check_downloads,
    check_field,
    check_message,
    check_record,
    check_values,
    collect_uploads,
    expect,
    read_config,
    sender_name,
    square_bound,
    sum_bound,
    tighter,
)
from tinyproto.comm.message import (
    CONFIG_TYPES,
    MAGIC,
    METRIC_TYPES,
    WIRE_DTYPES,
    Message,
    MessageError,
    show,
    value_problem,
)

__all__ = [
    "Bound",
    "CONFIG_TYPES",
    "F32_MAX",
    "FLOAT",
    "INT",
    "KINDS",
    "MAGIC",
    "METRIC_TYPES",
    "Message",
    "MessageError",
    "WIRE_DTYPES",
    "check_downloads",
    "check_field",
    "check_message",
    "check_record",
    "check_values",
    "collect_uploads",
    "expect",
    "read_config",
    "sender_name",
    "show",
    "square_bound",
    "sum_bound",
    "tighter",
    "value_problem",
]
