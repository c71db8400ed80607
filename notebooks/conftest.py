"""nbval on the notebooks (``make test``): the smoke profile, for real, from fresh runs.

* The profile defaults to smoke and is *required*: ``TINYPROTO_REQUIRE_PROFILE`` makes each
  notebook's ``require_profile(profile)`` raise when a parameter (e.g. a stale papermill
  injected-parameters cell) would run another profile.
* Every notebook must print ``profile: <required>`` by the end of its setup cell (the cell that
  calls ``require_profile``), and every ``profile: ...`` line it prints must name that profile.
* Smoke outputs (``tinyproto.sweep.outputs("smoke")``: git-ignored) are deleted before the first
  notebook runs, so nothing passes by reading runs or tables of an earlier session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("TINYPROTO_PROFILE", "smoke")
os.environ.setdefault("TINYPROTO_REQUIRE_PROFILE", os.environ["TINYPROTO_PROFILE"])
REQUIRED = os.environ["TINYPROTO_REQUIRE_PROFILE"]
ROOT = Path(__file__).resolve().parents[1]
PROFILE_LINE = re.compile(r"^profile: ([\w-]+)", re.MULTILINE)

_seen: dict[str, list[str]] = {}  # notebook node id -> profiles printed so far
_guarded: set[str] = set()  # notebooks whose require_profile cell ran
_last: dict[str, str] = {}  # notebook node id -> node id of its last cell
_fresh = False


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell")


def _tracked(path: Path) -> bool:
    """True when git tracks anything under ``path`` (or git cannot tell)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", str(path)], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return not path.name == "smoke"  # no git: delete only folders named after the profile
    return bool(out.strip())


def _deletable(path: Path) -> bool:
    if path == ROOT or path in ROOT.parents:
        return False
    if ROOT in path.parents:
        return not _tracked(path)  # inside the project: only git-ignored folders
    return "smoke" in path.parts  # elsewhere ($TINYPROTO_RESULTS): only a smoke folder


def _fresh_smoke_outputs() -> None:
    from tinyproto.sweep import outputs

    out = outputs("smoke")
    for path in (out.runs, out.results, out.figures):
        path = Path(path).resolve()
        if not _deletable(path):
            raise RuntimeError(f"refusing to delete {path}: not a git-ignored smoke folder")
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if _is_cell(item):
            _last[item.parent.nodeid] = item.nodeid


def pytest_runtest_setup(item):
    global _fresh
    if _is_cell(item) and not _fresh:
        _fresh = True
        if REQUIRED == "smoke":
            _fresh_smoke_outputs()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    if not _is_cell(item):
        return result
    nb = item.parent.nodeid
    text = "".join(
        o.get("text", "") for o in item.test_outputs or [] if o.get("output_type") == "stream"
    )
    printed = PROFILE_LINE.findall(text)
    seen = _seen.setdefault(nb, [])
    seen.extend(printed)
    wrong = sorted(set(printed) - {REQUIRED})
    assert not wrong, f"{nb} printed 'profile: {wrong[0]}' but the profile required is {REQUIRED}"
    if "require_profile(" in item.cell.source:
        _guarded.add(nb)
        assert seen, f"{nb}: its setup cell (require_profile) did not print 'profile: {REQUIRED}'"
    if _last.get(nb) == item.nodeid:
        assert nb in _guarded, f"{nb} never calls tinyproto.nbtools.require_profile(profile)"
    return result
