"""``python -m tinyproto.worker CONFIG_JSON ROOT THREADS``: compute one run in its own process.

``tinyproto.sweep`` starts these to compute missing runs side by side (a fresh interpreter per
run: nothing of the caller's ``__main__`` is imported, unlike multiprocessing's spawn). ROOT ""
means the profile's runs folder. Exit 0 when the run folder is complete; 2 with one line on
stderr for a user or data error; anything else is a crash (its traceback on stderr).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import torch

    from tinyproto.comm import MessageError
    from tinyproto.config import ConfigError, config_from_dict
    from tinyproto.data import DataError
    from tinyproto.engine import run
    from tinyproto.store import RunFolderError

    config, root, threads = argv
    torch.set_num_threads(int(threads))
    try:
        cfg = config_from_dict(json.loads(config))
        run(cfg, root=root or None, resume=True, reuse=True, progress=False)
    except (ConfigError, DataError, MessageError, RunFolderError, OSError) as e:
        text = str(e).strip().splitlines()
        print(text[0] if text else type(e).__name__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
