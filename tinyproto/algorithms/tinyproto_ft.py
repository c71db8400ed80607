"""TinyProto-FT (Lee & Choi, AAAI 2026, App. C): FedTGP + CPS + APS.

Clients upload C(n_ij p_ij; m_j); the server reconstructs, multiplies by mu (server-side
normalisation), trains the global prototypes on these structurally sparse vectors and sends
C(G_j; m_j), which clients reconstruct and use without further scaling. Mechanics in fedtgp.py.
"""

from tinyproto.algorithms.fedtgp import FedTGP


class TinyProtoFT(FedTGP):
    name = "tinyproto-ft"
