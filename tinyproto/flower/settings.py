"""The Flower run config: every Config field as a key, plus the keys of the Flower runtime.

flwr hands the ServerApp and every ClientApp the same run config: the flat table
``[tool.flwr.app.config]`` of the app's pyproject.toml (``flower-app/``), overridden with
``flwr run flower-app --run-config "rounds=5 algorithm='fedproto'"``. Keys are the Config's flat
names in kebab case, as the command line's flags (``cps-dim``, ``num-clients``), plus
:data:`RUNTIME_KEYS`. Values are TOML scalars: ``""`` leaves a field unset (the profile or the
Config decides), the strings ``"none"`` / ``"auto"`` are the Config's none / auto, an integer
is accepted where a float is meant. Every value is checked against the same constraint table as
the command line; a mistake is one ConfigError naming the key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tinyproto import store
from tinyproto.config import PARAMS, Config, ConfigError, check_value
from tinyproto.runtime.environment import check_path_text

UNSET = ""
# run-config key -> Config flat name: every field the command line sets (``extra`` is not one)
CONFIG_KEYS = {name.replace("_", "-"): name for name, p in PARAMS.items() if p.cli}
# the Flower runtime's own keys: default, allowed type, help
RUNTIME_KEYS: dict[str, tuple] = {
    "results-dir": ("", str, "folder of the run folders ('': <results>/<profile>/flower-runs)"),
    "round-timeout": (300.0, float, "seconds the server waits for the replies to one message"),
    "connect-timeout": (120.0, float, "seconds the server waits for every SuperNode to answer"),
    "resume": (False, bool, "continue the run folder's checkpoint"),
    "restart": (False, bool, "discard the run folder's checkpoint and files first"),
    "stop-after": (0, int, "stop, checkpointed, after this many rounds in total (0: all)"),
}
# what pyproject.toml's [tool.flwr.app.config] holds (tests keep the two equal): a smoke run
DEFAULTS: dict[str, object] = {
    **{key: UNSET for key in CONFIG_KEYS},
    "profile": "smoke",
    **{key: default for key, (default, _, _) in RUNTIME_KEYS.items()},
}


@dataclass(frozen=True)
class FlowerRun:
    """A run config, parsed: the Config and how the Flower runtime runs it."""

    config: Config
    results_dir: Path  # the folder holding this run's folder (<results_dir>/<run-id>/)
    round_timeout: float
    connect_timeout: float
    resume: bool
    restart: bool
    stop_after: int

    @property
    def run_dir(self) -> Path:
        return store.run_dir(self.config, self.results_dir)


def default_results_dir(profile: str) -> Path:
    """<results>/flower-runs (quick) or <results>/<profile>/flower-runs: beside the in-process
    runs of the profile, never mixed with them. <results> is $TINYPROTO_RESULTS or the results/
    of the checkout tinyproto runs from (not the working directory of a SuperLink)."""
    runs = store.runs_root(profile)
    checkout = store.project_root(Path(__file__).resolve().parent)
    if store.RESULTS_ENV not in os.environ and (checkout / "pyproject.toml").exists():
        runs = checkout / "results" / runs.relative_to(store.results_root())
    return runs.parent / "flower-runs"


def parse(run_config: Mapping) -> FlowerRun:
    """The run config (flwr's ``context.run_config``) as a FlowerRun; ConfigError on a mistake."""
    unknown = sorted(set(map(str, run_config)) - set(DEFAULTS))
    if unknown:
        import difflib

        close = [difflib.get_close_matches(k, list(DEFAULTS), n=1, cutoff=0.75) for k in unknown]
        hint = "; ".join(f"{k}: did you mean {c[0]}?" for k, c in zip(unknown, close) if c)
        raise ConfigError(
            f"unknown run-config key(s) {', '.join(unknown)}"
            + (f" ({hint})" if hint else "")
            + f"; keys are the Config's fields in kebab case and {', '.join(RUNTIME_KEYS)}"
        )
    values = {**DEFAULTS, **run_config}
    fields = {}
    for key, name in CONFIG_KEYS.items():
        value = values[key]
        if isinstance(value, str) and value == UNSET:
            continue
        fields[name] = config_value(key, name, value)
    try:
        config = Config(**fields)
    except ConfigError as e:  # a rule tying fields together: name them as keys, not fields
        raise ConfigError(_as_keys(str(e))) from None
    rt = {key: runtime_value(key, values[key]) for key in RUNTIME_KEYS}
    if rt["resume"] and rt["restart"]:
        raise ConfigError("invalid restart=true with resume=true: restart discards the folder")
    if rt["results-dir"]:
        check_path_text(rt["results-dir"], "results-dir")
    results = Path(rt["results-dir"]).expanduser() if rt["results-dir"] else None
    return FlowerRun(
        config=config,
        results_dir=results or default_results_dir(config.profile),
        round_timeout=rt["round-timeout"],
        connect_timeout=rt["connect-timeout"],
        resume=rt["resume"],
        restart=rt["restart"],
        stop_after=rt["stop-after"],
    )


def config_value(key: str, name: str, value):
    """One Config field from its run-config value: "none"/"auto" mapped, ints widened to floats
    where a float is meant, then checked as the command line checks it."""
    p = PARAMS[name]
    if isinstance(value, str) and value.lower() == "none" and p.none:
        value = None
    elif p.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        check_value(name, value)
    except ConfigError as e:
        raise ConfigError(_as_keys(str(e))) from None
    return value


def runtime_value(key: str, value):
    default, kind, help_ = RUNTIME_KEYS[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = type(value) is kind
    if ok and kind is float:
        ok = math.isfinite(value) and value > 0
    if ok and kind is int:
        ok = value >= 0
    if not ok:
        want = {
            str: "a string",
            float: "a number > 0",
            bool: "true or false",
            int: "an integer >= 0",
        }
        raise ConfigError(f"invalid {key}={value!r}: {want[kind]} ({help_})")
    return value


def _as_keys(message: str) -> str:
    """'invalid cps_dim=...' -> 'invalid cps-dim=...': errors name the run-config key."""
    import re

    names = {name: key for key, name in CONFIG_KEYS.items()}
    names["results"] = "results-dir"  # the engine's name for the runtime's results-dir

    def swap(m):
        return names.get(m.group(1), m.group(1))

    # a field as name=value, or named in prose (a name with an underscore: num_clients)
    message = re.sub(r"(?<![\w./-])([a-z][a-z0-9_]*)(?==)", swap, message)
    return re.sub(r"(?<![\w./-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", swap, message)


def config_key(config: Config) -> str:
    """``config`` as one string, equal for equal configs: what the apps key a Setup built for
    it by (client_app's cache, server_app's prepared Setup)."""
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def to_run_config(config: Config, **runtime) -> dict:
    """The run config that makes the Flower apps run ``config`` (the inverse of :func:`parse`);
    ``runtime``: RUNTIME_KEYS by their Python names (``results_dir=...``)."""
    if config.extra:
        raise ConfigError("invalid extra: extension options cannot be set through a run config")
    out = {}
    for key, name in CONFIG_KEYS.items():
        value = config.flat(name)
        out[key] = "none" if value is None else value
    for name, value in runtime.items():
        key = name.replace("_", "-")
        if key not in RUNTIME_KEYS:
            raise ConfigError(f"unknown run-config key {key!r}: one of {', '.join(RUNTIME_KEYS)}")
        out[key] = str(value) if isinstance(value, Path) else value
    return out


def to_arg(run_config: Mapping) -> str:
    """A run config as the text of ``flwr run --run-config`` (TOML values, space-separated)."""
    parts = []
    for key, value in run_config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif "'" not in value:  # flwr's parser takes a quoted value up to the next quote
            text = f"'{value}'"
        elif '"' not in value and "\\" not in value:
            text = f'"{value}"'
        else:
            raise ConfigError(f"invalid {key}={value!r}: holds both kinds of quote")
        parts.append(f"{key}={text}")
    return " ".join(parts)


def digest(fed, cid: int) -> str:
    """What client ``cid`` holds in the partition ``fed`` (runtime.setup's FederatedData): its
    train and test indices and their labels, hashed; the server checks each node's against its
    own, so a node with another data set, subset or partition seed is refused."""
    split, y = fed.clients[cid], fed.dataset.y
    h = hashlib.sha256()
    for idx in (split.train_idx, split.test_idx):
        h.update(idx.cpu().numpy().tobytes())
        h.update(y[idx].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


APP_DIR = "flower-app"  # the Flower app's folder at the project's root
APP_HEADER = """\
# The Flower app of tinyproto: `flwr run flower-app` (from the project's root) runs the
# ServerApp and ClientApp of tinyproto.flower. Written by `python -m tinyproto.flower.settings`
# from the Config's constraint table (tests/test_flower.py checks it is current): do not edit
# the [tool.flwr.app.config] table by hand. Its keys are the Config's fields in kebab case
# ("" = unset: the profile decides; "none" / "auto" as on the command line) and the runtime's.
# tinyproto itself comes from the environment (pip install -e '.[flower]'): the app declares
# no dependencies, so Flower's runtime dependency installation has nothing to fetch.

[project]
name = "tinyproto-flower"
version = "0.1.0"
description = "tinyproto's algorithms (TinyProto, FedProto, FedTGP, ...) as a Flower app"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "tinyproto"

[tool.flwr.app.components]
serverapp = "tinyproto.flower.server_app:app"
clientapp = "tinyproto.flower.client_app:app"

[tool.flwr.app.config]
"""


def app_pyproject() -> str:
    """flower-app/pyproject.toml: the header above and DEFAULTS as the config table."""
    lines = []
    for key, value in DEFAULTS.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        help_ = RUNTIME_KEYS[key][2] if key in RUNTIME_KEYS else PARAMS[CONFIG_KEYS[key]].help
        lines.append(f"{key} = {text}  # {help_}")
    return APP_HEADER + "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tinyproto.flower.settings: rewrite the app's pyproject
    target = store.project_root(Path(__file__).resolve().parent) / APP_DIR / "pyproject.toml"
    target.parent.mkdir(exist_ok=True)
    target.write_text(app_pyproject())
    print(f"wrote {target}")
