"""Command line: ``tinyproto run|data|...`` (also ``python -m tinyproto``).

Every Config field is a flag in kebab case (``--num-clients``, ``--feature-dim``, ...).
Bad input exits with status 2 and one line naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from tinyproto.config import AUTO, Config, ConfigError

EXIT_USAGE = 2


class UserError(Exception):
    """Raised for a mistake of the user's; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UserError(message)


def _none_or(parse):
    def f(text: str):
        if text.lower() in ("none", "off", "null"):
            return None
        if text.lower() == AUTO:
            return AUTO
        return parse(text)

    f.__name__ = parse.__name__
    return f


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(Config)
    g = p.add_argument_group("configuration (Config fields; unset ones come from --profile)")
    for f in dataclasses.fields(Config):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = str(hints[f.name])
        if hint == "bool":
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
            continue
        if "int" in hint and "float" not in hint:
            parse = int
        elif "float" in hint:
            parse = float
        else:
            parse = str
        if "None" in hint or f.name in ("cps_dim", "mu"):
            parse = _none_or(parse)
        g.add_argument(flag, dest=f.name, type=parse, default=None, metavar=f.name.upper())
    g.add_argument(
        "--no-cps",
        dest="cps_dim",
        action="store_const",
        const=None,
        help="switch class-wise prototype sparsification off (same as --cps-dim none)",
    )
    g.add_argument(
        "--no-scaling",
        dest="mu",
        action="store_const",
        const=None,
        help="switch adaptive prototype scaling off (same as --mu none)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    given = {}
    for f in dataclasses.fields(Config):
        if f.name == "extra" or not hasattr(args, f.name):
            continue
        v = getattr(args, f.name)
        explicit_none = f.name in ("cps_dim", "mu") and _was_given(f.name)
        if v is not None or explicit_none:
            given[f.name] = v
    return Config(**given)


_ARGV: list[str] = []


def _was_given(name: str) -> bool:
    flag = "--" + name.replace("_", "-")
    alias = {"cps_dim": "--no-cps", "mu": "--no-scaling"}[name]
    return any(a == alias or a == flag or a.startswith(flag + "=") for a in _ARGV)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tinyproto", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run one federated experiment")
    _add_config_flags(r)
    r.add_argument("--results", default=None, help="runs folder (default results/runs)")
    r.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    r.add_argument("--reuse", action="store_true", help="return a finished run with the same id")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("data", help="locate (or fetch) the embedded Fashion-MNIST and say where")
    d.add_argument("--data-dir", default=None)

    from tinyproto import comm_table

    comm_table.add_parser(sub)

    rp = sub.add_parser("reproduce", help="write every table and figure (papermill notebooks)")
    rp.add_argument("--profile", default="quick", help="smoke | quick | paper (default quick)")
    rp.add_argument("--notebooks", default=None, help="comma list (default: all, in order)")
    return p


def cmd_run(args) -> int:
    from tinyproto.engine import run

    cfg = config_from_args(args)
    res = run(
        cfg, root=args.results, resume=args.resume, reuse=args.reuse, progress=not args.no_progress
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


def cmd_reproduce(args) -> int:
    from tinyproto.reproduce import reproduce

    names = args.notebooks.split(",") if args.notebooks else None
    reproduce(args.profile, names)
    return 0


COMMANDS = {
    "run": cmd_run,
    "data": cmd_data,
    "comm-table": cmd_comm_table,
    "reproduce": cmd_reproduce,
}


def main(argv: list[str] | None = None) -> int:
    from tinyproto.comm import MessageError
    from tinyproto.data import DataError

    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UserError, ConfigError, DataError, MessageError) as e:
        print(f"tinyproto: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "tinyproto: interrupted (checkpoints, if any, are kept; rerun with --resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
