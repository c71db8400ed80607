"""TinyProto-FP (Lee & Choi, AAAI 2026, Alg. 1): FedProto + CPS + APS.

The mechanics live in fedproto.py behind the ``cps_dim`` and ``mu`` switches; this algorithm
only changes the defaults: s = d / 10 and mu by the paper's value or its 0.68 rule.
"""

from tinyproto.algorithms.fedproto import FedProto


class TinyProtoFP(FedProto):
    name = "tinyproto-fp"
