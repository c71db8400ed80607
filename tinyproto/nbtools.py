"""Notebook helpers: the profile guard every notebook calls, and the cleaning that makes an
executed notebook byte-identical when it is executed again on unchanged runs.

    from tinyproto.nbtools import require_profile
    profile = require_profile(profile)   # first line of every notebook's setup cell

``make test`` sets ``TINYPROTO_REQUIRE_PROFILE=smoke``: a notebook that would run any other
profile (a stale papermill ``injected-parameters`` cell, an edited parameters cell) stops with
an error instead of quietly reading or rewriting another profile's results. ``reproduce`` sets
it to the profile it executes.

``clean_notebook(path)`` removes what changes from one execution to the next and carries no
result: papermill's injected-parameters cell and its timestamps and durations, nbclient's
execution timings, progress bars (their rates and elapsed times), memory addresses, this
machine's absolute paths; cell ids are kept (or made deterministic) and execution counts are
renumbered 1, 2, ... in cell order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REQUIRE_ENV = "TINYPROTO_REQUIRE_PROFILE"
PROFILE_ENV = "TINYPROTO_PROFILE"
INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
VOLATILE_NOTEBOOK_METADATA = ("papermill",)
VOLATILE_CELL_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]{6,16}\b")
# a tqdm frame: "desc:  40%|████      | 2/5 [00:01<00:02, 1.23it/s, ...]"
_PROGRESS_RE = re.compile(r"\d+%\|.*\|\s*\d+/\d*\s*\[")


class ProfileMismatch(RuntimeError):
    """A notebook was about to run a profile other than the one required."""


def require_profile(profile: str) -> str:
    """Check the notebook's ``profile`` and return it.

    Raises ``ProfileMismatch`` when ``$TINYPROTO_REQUIRE_PROFILE`` is set and differs from
    ``profile`` (``make test`` requires smoke, ``tinyproto reproduce`` the profile it runs), and
    ``ValueError`` for an unknown profile.
    """
    from tinyproto.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)}")
    want = os.environ.get(REQUIRE_ENV, "").strip()
    if want and profile != want:
        raise ProfileMismatch(
            f"this notebook runs profile={profile!r} but {REQUIRE_ENV}={want!r}: a parameter "
            f"(e.g. a papermill injected-parameters cell) overrides ${PROFILE_ENV}="
            f"{os.environ.get(PROFILE_ENV)!r}; remove it or run the profile that is required"
        )
    return profile


class NotebookParameterError(ValueError):
    """A notebook parameter the notebook cannot use; ``str(e)`` is one line naming it."""


def require_algorithms(name: str, value, kind: str = "any", *, single: bool = False):
    """Check a notebook's algorithm parameter (a name, or a list of names with ``single``
    False) and return it: every name a registered algorithm, and of ``kind`` ("tinyproto":
    TinyProto-FP/FT, the notebook shows CPS or APS; "prototype": an algorithm that sends
    prototypes, the notebook reads them; "any"). One-line NotebookParameterError otherwise."""
    from tinyproto.config import registry

    allowed = {
        "any": registry.view("ALGORITHMS"),
        "tinyproto": registry.view("TINYPROTO_ALGORITHMS"),
        "prototype": registry.view("PROTOTYPE_ALGORITHMS"),
    }[kind]
    names = [value] if single else value
    if single and not isinstance(value, str):
        raise NotebookParameterError(
            f"invalid {name}={value!r}: one algorithm name, one of {', '.join(allowed)}"
        )
    if not single and (isinstance(value, str) or not isinstance(value, (list, tuple)) or not value):
        raise NotebookParameterError(
            f"invalid {name}={value!r}: a non-empty list of algorithm names "
            f"(from {', '.join(allowed)})"
        )
    for a in names:
        if a not in allowed:
            what = {"tinyproto": "a TinyProto variant", "prototype": "a prototype method"}
            why = f"this notebook needs {what[kind]}: " if kind in what else ""
            raise NotebookParameterError(
                f"invalid {name}={value!r}: {why}one of {', '.join(allowed)}"
            )
    return value


def require_numbers(
    name: str,
    value,
    kind: str = "int",
    low: float | None = None,
    high: float | None = None,
    *,
    many: bool = False,
    none: bool = False,
    low_open: bool = False,
):
    """Check a notebook's numeric parameter and return it: an integer (``kind`` "int") or a
    finite number ("float") in [low, high] (``low_open``: above low), or with ``many`` a
    non-empty list of them without repeats; ``none``: None is allowed too (the notebook's
    default). One-line NotebookParameterError naming the parameter otherwise, before any run
    starts (a bad value used to surface as an IndexError or a run's error naming another field)."""
    import math
    import numbers

    if value is None and none:
        return value
    noun = "an integer" if kind == "int" else "a finite number"
    if low is not None and high is not None:
        noun += f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        noun += f" {'>' if low_open else '>='} {low:g}"
    allowed = f"a non-empty list of {noun.replace('an integer', 'integers')}" if many else noun
    allowed = allowed.replace("a finite number", "finite numbers") if many else allowed
    if none:
        allowed += " or None (the default)"

    def fail(why: str = ""):
        raise NotebookParameterError(f"invalid {name}={value!r}: {allowed}{why}")

    def ok(x) -> bool:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            return False
        if kind == "int" and not isinstance(x, numbers.Integral):
            return False
        if not math.isfinite(x):
            return False
        if low is not None and (x <= low if low_open else x < low):
            return False
        return high is None or x <= high

    if not many:
        if not ok(value):
            fail()
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        fail()
    for x in value:
        if not ok(x):
            fail(f" ({x!r} is not)")
    if len(set(value)) != len(value):
        fail(" (a value is repeated)")
    return value


def classes_of(cfg) -> int:
    """The number of classes a config's data set has (K)."""
    from tinyproto.config import DATASET_CLASSES

    return DATASET_CLASSES.get(cfg.dataset, cfg.num_classes)


def require_mapping(name: str, value, *, values: str = "dict"):
    """Check a notebook's {label: ...} parameter and return it: a non-empty dict whose keys are
    non-empty strings and whose values are dicts (``values`` "dict", e.g. Config overrides; each
    is then checked by Config itself) or non-empty lists of distinct non-empty strings
    (``values`` "strings", e.g. {algorithm: [payload codecs]}; each again checked by Config).
    One-line NotebookParameterError otherwise."""
    if values not in ("dict", "strings"):
        raise ValueError(f"invalid values={values!r}: 'dict' or 'strings'")
    inner = "{option: value}" if values == "dict" else "[name, ...]"
    allowed = f"a non-empty dict {{label: {inner}}}"
    if not isinstance(value, dict) or not value:
        raise NotebookParameterError(f"invalid {name}={value!r}: {allowed}")
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip():
            raise NotebookParameterError(f"invalid {name}: label {k!r} is not a non-empty string")
        if values == "dict" and not isinstance(v, dict):
            raise NotebookParameterError(f"invalid {name}[{k!r}]={v!r}: {inner}")
        if values == "strings" and (
            not isinstance(v, (list, tuple))
            or not v
            or not all(isinstance(x, str) and x.strip() for x in v)
            or len(set(v)) != len(v)
        ):
            raise NotebookParameterError(
                f"invalid {name}[{k!r}]={v!r}: a non-empty list of distinct names"
            )
    return value


def kernel_manager_config():
    """traitlets config for the kernels papermill starts: encrypted or local transport.

    ipykernel >= 7 warns "Kernel is running over TCP without encryption" for every kernel a
    bare KernelManager starts. With jupyter_client >= 8.8 and a pyzmq built with CurveZMQ the
    manager provisions Curve keys (the kernelspec that ``ipykernel install`` writes declares
    support); otherwise, on POSIX, the kernel talks over IPC sockets instead of TCP.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if "transport_encryption" in KernelManager.class_traits() and zmq.has("curve"):
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    if os.name == "posix":
        return Config({"KernelManager": {"transport": "ipc"}})
    return Config()


# -- cleaning ------------------------------------------------------------------------------


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _strip_progress(text: str, stream: str) -> str:
    """Terminal semantics for carriage returns, then drop progress-bar lines on stderr."""
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            line = line.rstrip("\r").rsplit("\r", 1)[-1]
            if stream == "stderr" and _PROGRESS_RE.search(line):
                continue
        elif stream == "stderr" and _PROGRESS_RE.search(line):
            continue
        lines.append(line)
    return "\n".join(lines)


def _scrub(text: str, roots: list[str]) -> str:
    text = _ADDRESS_RE.sub(" at 0x...", text)
    for root in roots:
        text = text.replace(root + os.sep, "").replace(root, ".")
    return text


def _merge_streams(outputs: list) -> list:
    """One stream output per run of same-name chunks, however the kernel happened to flush."""
    merged: list = []
    for out in outputs:
        if out.get("output_type") == "stream":
            out = {**out, "text": _text(out.get("text", ""))}
            last = merged[-1] if merged else {}
            if last.get("output_type") == "stream" and last.get("name") == out.get("name"):
                last["text"] += out["text"]
                continue
        merged.append(out)
    return merged


def _clean_outputs(outputs: list, roots: list[str]) -> list:
    cleaned = []
    for out in _merge_streams([dict(o) for o in outputs]):
        kind = out.get("output_type")
        if kind == "stream":
            text = _scrub(_strip_progress(out["text"], out["name"]), roots)
            if not text.strip():
                continue
            out["text"] = text
        elif kind in ("execute_result", "display_data"):
            data = dict(out.get("data", {}))
            if "text/plain" in data:
                data["text/plain"] = _scrub(_text(data["text/plain"]), roots)
            out["data"] = data
        elif kind == "error":
            out["traceback"] = [_scrub(t, roots) for t in out.get("traceback", [])]
        cleaned.append(out)
    return _merge_streams(cleaned)


def clean_nb(nb, root: str | Path | None = None):
    """Clean a notebook (nbformat NotebookNode, version 4) in place and return it; see module doc.

    ``root``: an absolute path (the project folder) to remove from outputs.
    """
    import nbformat

    roots = [str(Path(root).resolve())] if root else []
    for key in VOLATILE_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    cells = [c for c in nb.cells if INJECTED_TAG not in _tags(c)]
    seen: set[str] = set()
    count = 0
    for i, cell in enumerate(cells):
        meta = cell.setdefault("metadata", nbformat.NotebookNode())
        for key in VOLATILE_CELL_METADATA:
            meta.pop(key, None)
        if "tags" in meta and not meta["tags"]:
            del meta["tags"]
        cid = cell.get("id")
        if not (isinstance(cid, str) and _ID_RE.match(cid)) or cid in seen:
            cid = f"cell-{i:02d}"
            while cid in seen:
                cid += "x"
            cell["id"] = cid
        seen.add(cid)
        if cell.get("cell_type") == "code":
            if cell.get("execution_count") is not None:
                count += 1
                cell["execution_count"] = count
            outs = _clean_outputs(cell.get("outputs", []), roots)
            for out in outs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = cell.get("execution_count")
            cell["outputs"] = [nbformat.from_dict(o) for o in outs]
    nb.cells = cells
    nb.nbformat, nb.nbformat_minor = 4, max(int(nb.get("nbformat_minor", 5)), 5)
    return nb


def clean_notebook(path: str | Path, root: str | Path | None = None) -> bool:
    """Clean the notebook file at ``path`` in place; True when the file changed.

    ``root`` defaults to the project folder holding the notebook. Writes only when the cleaned
    text differs, so a clean notebook keeps its modification time.
    """
    import nbformat

    path = Path(path)
    if root is None:
        from tinyproto.sweep import project_root

        root = project_root(path.resolve().parent)
    before = path.read_text(encoding="utf-8")
    nb = clean_nb(nbformat.reads(before, as_version=4), root=root)
    nbformat.validate(nb)
    after = nbformat.writes(nb)
    if not after.endswith("\n"):
        after += "\n"
    if after == before:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(after, encoding="utf-8")
    os.replace(tmp, path)
    return True
