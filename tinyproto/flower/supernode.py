"""``python -m tinyproto.flower.supernode ARGS``: Flower's own ``flower-supernode ARGS`` with its
polling and retry waits shortened (polling.patch_supernode: a few tens of milliseconds during
a run instead of up to 3 s per message; once a second when idle). The same SuperNode code and
messages otherwise; with a flwr whose SuperNode differs from 1.42's, Flower's waits stay (a
warning says so). With ``TINYPROTO_CLIENTAPP_WAKE`` set to a named pipe it wakes the
ClientApp worker reading that pipe (worker.py ``--wake``) whenever it holds a new message.
deploy.py starts its SuperNodes with it.
"""

from __future__ import annotations

import logging
import os
import sys

from tinyproto.flower.polling import WAKE_ENV, patch_supernode


def main() -> int:
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    if not patch_supernode(start_client_internal, os.environ.get(WAKE_ENV)):
        logging.getLogger(__name__).warning(
            "this flwr's SuperNode differs from flwr 1.42's: its polling waits stay as they are"
        )
    sys.argv[0] = "flower-supernode"
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
