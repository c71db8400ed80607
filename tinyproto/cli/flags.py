"""Flags shared by the subcommands: the Config flags generated from the constraint table
(``tinyproto.config.PARAMS``), strict argparse, one-line user errors. Subcommand modules import
from here; nothing here imports a subcommand."""

from __future__ import annotations

import argparse
import re

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


def new_output(path: str, flag: str = "--out"):
    """An output path the user named: it must not exist yet (a command never writes over a
    file, committed or not; UserError with a hint). Returns it as a Path."""
    from pathlib import Path

    if not str(path).strip():
        raise UserError(f"invalid {flag}={path!r}: a file path, not empty or blank")
    out = Path(path)
    if out.exists():
        raise UserError(
            f"invalid {flag}={path!r}: exists already; name a new file (nothing is overwritten)"
        )
    return out


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


Once = _Once  # for the subcommands' own flags: each given at most once


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


def add_config_flags(p: argparse.ArgumentParser) -> None:
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


# the Config switch each --no-X flag sets to False (the engine's errors name the switch)
SWITCHES = {"cps": "--no-cps", "aps": "--no-scaling"}

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
