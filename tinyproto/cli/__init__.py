"""Command line: ``tinyproto run|data|comm-table|bench|scorecard|reproduce`` (also ``python -m tinyproto``).

The ``run`` flags are generated from the typed Config and its constraint table
(``tinyproto.config.PARAMS``): every field is a flag in kebab case with its type or choices, its
default and one line of help, grouped by topic; booleans are ``--x/--no-x``. The parser is
argparse, used strictly: no abbreviated flags, no flag given twice, no contradictory pair
(``--no-cps`` with ``--cps-dim``). Every mistake of the user's or of the environment (bad value,
unavailable device, unwritable results folder, missing data, corrupted run folder, full disk)
exits with status 2 and one line naming the parameter or path, the value and what is allowed.

Modules: ``flags`` (the Config flags, strict parsing, UserError: what every subcommand shares)
and one per subcommand (``run`` with ``data``, ``comm_table``, ``bench``, ``scorecard``,
``reproduce``), each with ``add_parser`` and ``cmd``. Subcommands import ``flags``, never each
other; the top of the package's layers, it may import anything below.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading

from tinyproto.cli.flags import EXIT_USAGE, UserError, config_from_args  # noqa: F401
from tinyproto.config import ConfigError

SUBCOMMANDS = ("run", "data", "comm-table", "bench", "scorecard", "reproduce")


def build_parser():
    """The ``tinyproto`` parser: each subcommand module adds its own parser."""
    from tinyproto import __version__
    from tinyproto.cli import bench, comm_table, reproduce, run, scorecard
    from tinyproto.cli.flags import _Parser

    p = _Parser(prog="tinyproto", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tinyproto {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    run.add_parser(sub)
    comm_table.add_parser(sub)
    bench.add_parser(sub)
    scorecard.add_parser(sub)
    reproduce.add_parser(sub)
    return p


def _command(name: str):
    from tinyproto.cli import bench, comm_table, reproduce, run, scorecard

    return {
        "run": run.cmd,
        "data": run.cmd_data,
        "comm-table": comm_table.cmd,
        "bench": bench.cmd,
        "scorecard": scorecard.cmd,
        "reproduce": reproduce.cmd,
    }[name]


def _os_error_line(e: OSError) -> str:
    """One line for an OSError: the path, what went wrong, and what to do."""
    path = e.filename or ""
    what = e.strerror or str(e)
    hint = {
        errno.ENOSPC: "free some space or pass --results to another disk",
        errno.EDQUOT: "free some space or pass --results to another disk",
        errno.EACCES: "check the permissions or pass --results to a folder you own",
        errno.EPERM: "check the permissions or pass --results to a folder you own",
        errno.EROFS: "pass --results to a writable folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "the path is a folder, a file was expected",
    }.get(e.errno, "")
    line = f"{path}: {what}" if path else what
    return (line + (f"; {hint}" if hint else "")).replace("\n", " ")


def _subparser(argv: list[str]):
    """The parser of the subcommand ``argv`` names (its first non-flag word), or None."""
    sub = next((a for a in argv if not a.startswith("-")), None)
    try:
        return build_parser()._subparsers._group_actions[0].choices[sub]
    except (KeyError, AttributeError, IndexError, TypeError):
        return None


def _suggestion(line: str, argv: list[str]) -> str:
    """"; did you mean X?" for a mistyped flag (``--num-client``) or choice (``fedprot``), the
    closest of the subcommand's own flags or of the allowed values; "" when none is close."""
    import difflib
    import re

    m = re.match(r"unrecognized arguments: (\S+)", line)
    if m and m.group(1).startswith("--"):
        typed = m.group(1).split("=")[0]
        parser = _subparser(argv)
        if parser is None:
            return ""
        flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
        close = difflib.get_close_matches(typed, flags, n=1, cutoff=0.75)
        return f"; did you mean {close[0]}?" if close else ""
    m = re.match(r"invalid (\w+)='?([^':]*)'?: one of (.+)$", line)
    if m:
        choices = [c.strip().strip("'") for c in m.group(3).split(",")]
        close = difflib.get_close_matches(m.group(2), choices, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close and close[0] != m.group(2) else ""
    return ""


def _flag_names(line: str, argv: list[str]) -> str:
    """The error line in the words a command-line user typed: ``local_epochs=0`` becomes
    ``--local-epochs=0`` wherever the name is a flag of the subcommand (the library's
    ConfigError names Config fields; a shell user knows flags)."""
    import re

    parser = _subparser(argv)
    if parser is None:
        return line
    flags, negated, switches = {}, {}, {}
    for action in parser._actions:
        for flag in action.option_strings:
            if not flag.startswith("--"):
                continue
            if flag.startswith("--no-"):
                negated.setdefault(action.dest, flag)
                continue
            flags.setdefault(action.dest, flag)
            flags.setdefault(flag[2:].replace("-", "_"), flag)
            if action.nargs == 0:  # a switch: --aps-divide
                switches.setdefault(action.dest, flag)

    from tinyproto.cli.flags import SWITCHES

    negated.update((name, flag) for name, flag in SWITCHES.items() if name not in negated)

    def swap_switch(m):  # cps=False -> --no-cps; aps_divide=True -> --aps-divide
        name, value = m.group(1), m.group(2)
        flag = negated.get(name) if value == "False" else switches.get(name)
        return flag or m.group(0)

    def swap(m):
        flag = flags.get(m.group(1))
        return f"{flag}=" if flag else m.group(0)

    def swap_word(m):  # a field named in prose: num_clients -> --num-clients
        return flags.get(m.group(1)) or negated.get(m.group(1)) or m.group(0)

    line = re.sub(r"(?<![\w./-])([a-z][a-z0-9_]*)=(True|False)\b", swap_switch, line)
    line = re.sub(r"(?<![\w./-])([a-z][a-z0-9_]*)=", swap, line)
    return re.sub(r"(?<![\w./-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b(?!=)", swap_word, line)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `kill`'s stop), unwound as Ctrl-C is."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    from tinyproto.comm import MessageError
    from tinyproto.data import DataError
    from tinyproto.runtime.procs import WorkerDied
    from tinyproto.store import RunFolderError

    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # as Ctrl-C: one line, the same clean-up
    try:
        args = build_parser().parse_args(argv)
        return _command(args.command)(args)
    except (UserError, ConfigError, DataError, MessageError, RunFolderError) as e:
        text = str(e).strip()
        line = text.splitlines()[0] if text else type(e).__name__
        print(
            f"tinyproto: error: {_flag_names(line, argv)}{_suggestion(line, argv)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except WorkerDied as e:  # killed, out of memory: not the user's mistake, but one line too
        print(f"tinyproto: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:  # permissions, full disk, a file where a folder should be, ...
        print(f"tinyproto: error: {_os_error_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(
            f"tinyproto: {how} (checkpoints, if any, are kept; rerun with --resume)",
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
