"""Command line: ``tinyproto run|data|comm-table|bench|scorecard|reproduce`` (also ``python -m tinyproto``).

The ``run`` flags are generated from the typed Config and its constraint table
(``tinyproto.config.PARAMS``): every field is a flag in kebab case with its type or choices, its
default and one line of help, grouped by topic; booleans are ``--x/--no-x``. The parser is
argparse, used strictly: no abbreviated flags, no flag given twice, no contradictory pair
(``--no-cps`` with ``--cps-dim``). Every mistake of the user's or of the environment (bad value,
unavailable device, unwritable results folder, missing data, corrupted run folder, full disk)
exits with status 2 and one line naming the parameter or path, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys

from tinyproto.config import (
    AUTO,
    GROUP_OF,
    GROUPS,
    PARAMS,
    PROFILE_DEFAULTS,
    PROFILES,
    TOP_LEVEL,
    Config,
    ConfigError,
    Param,
)

EXIT_USAGE = 2


class UserError(Exception):
    """Raised for a mistake of the user's; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, no usage dump
        message = " ".join(message.split())
        m = re.match(r"argument (--[\w-]+)(?:/--[\w-]+)?: (invalid \w+=.*)", message)
        raise UserError(m.group(2) if m else message)


# -- flags from the constraint table ---------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_value(name: str, p: Param):
    """argparse ``type=`` for field ``name``: text -> value, or a one-line error."""

    def parse(text: str):
        low = text.strip().lower()
        if p.none and low in ("none", "off", "null"):
            return None
        if p.auto and low == AUTO:
            return AUTO
        try:
            if p.kind == "int":
                value = int(text)
            elif p.kind == "float":
                value = float(text)
            else:
                value = text
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {name}={text!r}: {p.describe()}") from None
        try:
            from tinyproto.config import check_value

            check_value(name, value, p)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = p.kind
    return parse


def param_type(name: str):
    """argparse ``type=`` checking a value like Config field ``name`` (for other commands)."""
    return _parse_value(name, PARAMS[name])


def int_at_least(name: str, low: int):
    """argparse ``type=`` for a command's own integer option: an int >= ``low``, or one line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"invalid {name}={text!r}: an integer >= {low}")
        return value

    parse.__name__ = "int"
    return parse


class _Once(argparse.Action):
    """Store a value; a second occurrence of the same setting is an error, not 'last wins'."""

    def __call__(self, parser, namespace, values, option_string=None):
        _mark(parser, namespace, self.dest, option_string)
        setattr(namespace, self.dest, values)


class _OnceBool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        _mark(parser, namespace, self.dest, option_string)
        super().__call__(parser, namespace, values, option_string)


def _mark(parser, namespace, dest, option_string):
    seen = namespace.__dict__.setdefault("_seen", {})
    if dest in seen:
        parser.error(
            f"{option_string} given after {seen[dest]}: give each setting once "
            "(the last one would silently win)"
        )
    seen[dest] = option_string


def _default_text(name: str) -> str:
    by_profile = {p: PROFILE_DEFAULTS[p].get(name, "-") for p in PROFILES}
    if name in PROFILE_DEFAULTS["quick"]:
        return (
            "from --profile (" + ", ".join(f"{p} {_show(v)}" for p, v in by_profile.items()) + ")"
        )
    if name in ("cps_dim", "mu"):
        return "auto (TinyProto), none (others)"
    if name in GROUP_OF:
        group, attr = GROUP_OF[name]
        return _show(getattr(GROUPS[group][0](), attr))
    return _show(TOP_LEVEL[name])


def _show(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, param in PARAMS.items():
        if not param.cli:
            continue
        g = groups.get(param.group) or groups.setdefault(
            param.group, p.add_argument_group(param.group)
        )
        allowed = param.describe()
        users = f" [{', '.join(param.applies)} only]" if param.applies else ""
        allowed = "" if param.kind in ("choice", "bool") else f" Allowed: {allowed}."
        help_ = f"{param.help}{users}.{allowed} Default: {_default_text(name)}"
        help_ = help_.replace("%", "%%")
        if param.kind == "bool":
            g.add_argument(
                _flag(name), dest=name, action=_OnceBool, default=argparse.SUPPRESS, help=help_
            )
            continue
        if param.kind == "choice":
            metavar = "{" + ",".join(map(str, param.allowed_choices())) + "}"
            if param.none:
                metavar = metavar[:-1] + ",none}"
        else:
            metavar = {"data_dir": "DIR", "device": "DEVICE"}.get(name, param.kind.upper())
        g.add_argument(
            _flag(name),
            dest=name,
            action=_Once,
            type=_parse_value(name, param),
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=help_,
        )
    tiny = groups[PARAMS["cps_dim"].group]
    tiny.add_argument(
        "--no-cps",
        dest="no_cps",
        action="store_true",
        help="switch class-wise prototype sparsification off (same as --cps-dim none)",
    )
    tiny.add_argument(
        "--no-scaling",
        dest="no_scaling",
        action="store_true",
        help="switch adaptive prototype scaling off (same as --mu none)",
    )


CONTRADICTIONS = (
    ("no_cps", "cps_dim", "--no-cps", "--cps-dim"),
    ("no_scaling", "mu", "--no-scaling", "--mu"),
    ("no_scaling", "aps_divide", "--no-scaling", "--aps-divide"),
)


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config the flags describe; UserError on a contradictory pair of flags."""
    ns = vars(args)
    for switch, field, switch_flag, field_flag in CONTRADICTIONS:
        if ns.get(switch) and field in ns:
            raise UserError(
                f"{switch_flag} contradicts {field_flag} {_show(ns[field])}: give one of them"
            )
    given = {name: ns[name] for name in PARAMS if name in ns}
    if ns.get("no_cps"):
        given["cps"] = False
    if ns.get("no_scaling"):
        given["aps"] = False
    return Config(**given)


def build_parser() -> argparse.ArgumentParser:
    from tinyproto import __version__

    p = _Parser(prog="tinyproto", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tinyproto {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="run one federated experiment",
        description="Run one federated experiment and write results/.../runs/<run-id>/. "
        "Unset fields come from --profile.",
    )
    _add_config_flags(r)
    o = r.add_argument_group("run folder")
    o.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="runs folder. Default: results/runs (quick), results/<profile>/runs (smoke, paper)",
    )
    mode = o.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue from the run's checkpoint, if any"
    )
    mode.add_argument(
        "--restart",
        action="store_true",
        help="discard the run's checkpoint or damaged files and start from round 0",
    )
    mode.add_argument(
        "--reuse", action="store_true", help="return the finished run with the same id, if any"
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("data", help="locate (or fetch) the embedded Fashion-MNIST and say where")
    d.add_argument(
        "--data-dir", default=None, metavar="DIR", help="folder with the idx files (explicit)"
    )

    from tinyproto import comm_table

    comm_table.add_parser(sub)

    from tinyproto import bench

    bench.add_parser(sub)

    from tinyproto import scorecard

    scorecard.add_parser(sub)

    rp = sub.add_parser("reproduce", help="write every table and figure (papermill notebooks)")
    rp.add_argument(
        "--profile", default="quick", choices=PROFILES, help="profile to run (default quick)"
    )
    rp.add_argument(
        "--notebooks", default=None, metavar="A,B", help="comma list (default: all, in order)"
    )
    return p


def cmd_run(args) -> int:
    from tinyproto.engine import run

    cfg = config_from_args(args)
    res = run(
        cfg,
        root=args.results,
        resume=args.resume,
        reuse=args.reuse,
        restart=args.restart,
        progress=not args.no_progress,
    )
    s = res.summary
    print(f"run      {s['run_id']}  ({cfg.profile} profile, {cfg.dataset}, seed {cfg.seed})")
    print(f"data     {s['data_source']}")
    print(f"accuracy best {s['best_acc']:.4f} (round {s['best_round']}), last {s['last_acc']:.4f}")
    print(
        f"comm     {s['comm_floats_per_round']:.0f} floats/round "
        f"(up {s['upload_floats_per_round']:.0f}, down {s['download_floats_per_round']:.0f}), "
        f"{s['comm_bytes_per_round']:.0f} bytes/round"
    )
    if s.get("mu_resolved") is not None:
        print(f"mu       {s['mu_resolved']:g}")
    print(
        f"time     {s['wall_seconds']:.1f} s ({s['seconds_per_round']:.2f} s/round, {s['device']})"
    )
    print(f"saved    {res.run_dir}")
    return 0


def cmd_data(args) -> int:
    from tinyproto.data import locate_fmnist

    path, source = locate_fmnist(args.data_dir)
    print(f"Fashion-MNIST: {source}")
    print(f"files in {path}")
    return 0


def cmd_comm_table(args) -> int:
    from tinyproto import comm_table

    return comm_table.cmd(args)


def cmd_bench(args) -> int:
    from tinyproto import bench

    return bench.cmd(args)


def cmd_scorecard(args) -> int:
    from tinyproto import scorecard

    return scorecard.cmd(args)


def cmd_reproduce(args) -> int:
    from tinyproto.reproduce import reproduce

    names = args.notebooks.split(",") if args.notebooks else None
    reproduce(args.profile, names)
    return 0


COMMANDS = {
    "run": cmd_run,
    "data": cmd_data,
    "comm-table": cmd_comm_table,
    "bench": cmd_bench,
    "scorecard": cmd_scorecard,
    "reproduce": cmd_reproduce,
}


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


def main(argv: list[str] | None = None) -> int:
    from tinyproto.comm import MessageError
    from tinyproto.data import DataError
    from tinyproto.store import RunFolderError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UserError, ConfigError, DataError, MessageError, RunFolderError) as e:
        text = str(e).strip()
        line = text.splitlines()[0] if text else type(e).__name__
        print(f"tinyproto: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # permissions, full disk, a file where a folder should be, ...
        print(f"tinyproto: error: {_os_error_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "tinyproto: interrupted (checkpoints, if any, are kept; rerun with --resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
