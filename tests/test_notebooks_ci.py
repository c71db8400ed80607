"""The committed notebooks are fit for CI: smoke runs for real, nothing volatile is committed.

Fast (reads JSON only): nbval executing the notebooks is the other half of ``make test``.
"""

import copy
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from tinyproto import nbtools
from tinyproto.cli.reproduce import NOTEBOOKS
from tinyproto.nbtools import ProfileMismatch, clean_nb, clean_notebook, require_profile

ROOT = Path(__file__).resolve().parents[1]
PATHS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.stem for p in PATHS]


def _nb(path):
    return nbformat.read(path, as_version=4)


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_every_notebook_is_reproduced():
    assert NAMES == list(NOTEBOOKS)


@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_no_injected_parameters_and_no_volatile_metadata(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert "papermill" not in raw["metadata"]
    ids = [c.get("id") for c in raw["cells"]]
    assert all(ids) and len(set(ids)) == len(ids)
    for cell in raw["cells"]:
        assert "injected-parameters" not in _tags(cell), f"{path.name}: papermill injected a cell"
        for key in nbtools.VOLATILE_CELL_METADATA:
            assert key not in cell["metadata"], f"{path.name}: cell {cell['id']} has {key!r}"
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", []))
            assert not re.search(r"\d+%\|", text), f"{path.name}: a progress bar was committed"
            assert not re.search(r" at 0x[0-9a-f]{6,}", text)
    assert str(ROOT) not in path.read_text(encoding="utf-8"), "a machine path was committed"


@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_notebook_is_already_clean(path):
    """What is committed is what clean_notebook writes (so reproduce leaves it unchanged)."""
    before = path.read_text(encoding="utf-8")
    after = nbformat.writes(clean_nb(_nb(path), root=ROOT)) + "\n"
    assert after == before, f"{path.name} is not clean: run tinyproto.nbtools.clean_notebook on it"


@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_profile_comes_from_the_environment_and_is_guarded(path):
    nb = _nb(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [i for i, c in enumerate(code) if "parameters" in _tags(c)]
    assert len(params) == 1, f"{path.name}: exactly one parameters cell"
    p = params[0]
    assert re.search(
        r'^profile = os\.environ\.get\("TINYPROTO_PROFILE", "quick"\)', code[p].source, re.M
    ), f"{path.name}: the parameters cell must read profile from TINYPROTO_PROFILE"
    # the guard runs right after the parameters (and anything papermill would inject there) ...
    setup = code[p + 1]
    assert re.search(r"^profile = require_profile\(profile\)", setup.source, re.M)
    assert re.search(r"^from tinyproto\.nbtools import .*\brequire_profile\b", setup.source, re.M)
    # ... and the same cell prints "profile: <name>" before any other cell can run a profile
    assert re.search(r'print\(\s*f"profile: \{profile\}', setup.source), path.name
    assert not any("require_profile" in c.source for c in code[: p + 1])
    # the committed outputs say which profile made them: quick, the committed profile
    printed = "".join(o.get("text", "") for o in setup.outputs if o.output_type == "stream")
    assert re.search(r"^profile: quick\b", printed, re.M), f"{path.name}: committed setup output"


@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_checked_outputs_were_executed(path):
    """nbval compares NBVAL_CHECK_OUTPUT cells only when they carry an execution count."""
    for cell in _nb(path).cells:
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
            assert cell.execution_count is not None and cell.outputs


def test_require_profile(monkeypatch):
    monkeypatch.delenv(nbtools.REQUIRE_ENV, raising=False)
    assert require_profile("quick") == "quick"
    monkeypatch.setenv(nbtools.REQUIRE_ENV, "smoke")
    assert require_profile("smoke") == "smoke"
    with pytest.raises(ProfileMismatch, match="TINYPROTO_REQUIRE_PROFILE='smoke'"):
        require_profile("quick")
    with pytest.raises(ValueError, match="invalid profile"):
        require_profile("tiny")


def _synthetic():
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"start_time": "2026-01-01T00:00:00", "duration": 1.5, "parameters": {}},
    }
    stamp = {
        "papermill": {"duration": 0.1, "status": "completed"},
        "execution": {"iopub.status.busy": "2026-01-01T00:00:00Z"},
    }
    params = nbformat.v4.new_code_cell('profile = "quick"', execution_count=1)
    params.metadata = {"tags": ["parameters"], **copy.deepcopy(stamp)}
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "paper"\n', execution_count=2)
    injected.metadata = {"tags": ["injected-parameters"], **copy.deepcopy(stamp)}
    body = nbformat.v4.new_code_cell("run()", execution_count=3)
    body.metadata = {"tags": [], **copy.deepcopy(stamp)}
    body.id = "not a valid id!"
    root = os.path.join(os.sep, "home", "someone", "proj")
    body.outputs = [
        nbformat.v4.new_output(
            "stream", name="stderr", text="\rgrid:   0%|          | 0/2 [00:00<?, ?it/s]"
        ),
        nbformat.v4.new_output("stream", name="stdout", text="profile: quick\n"),
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text="\rgrid: 100%|##########| 2/2 [00:01<00:00, 1.93it/s, fedproto seed 0]\n",
        ),
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote {root}/results/t.csv\n"),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
        nbformat.v4.new_output(
            "stream", name="stderr", text=f"{root}/tinyproto/x.py:3: UserWarning: w\n"
        ),
        nbformat.v4.new_output(
            "execute_result", data={"text/plain": "<Figure at 0x7f3a2b1c9d10>"}, execution_count=3
        ),
    ]
    md = nbformat.v4.new_markdown_cell("# title")
    md.metadata = copy.deepcopy(stamp)
    nb.cells = [md, params, injected, body]
    return nb, root


def test_clean_nb_strips_what_varies():
    nb, root = _synthetic()
    clean = clean_nb(nb, root=root)
    assert "papermill" not in clean.metadata and clean.metadata["kernelspec"]["name"] == "python3"
    assert [c.cell_type for c in clean.cells] == ["markdown", "code", "code"]  # injected: gone
    assert all(k not in c.metadata for c in clean.cells for k in ("papermill", "execution"))
    assert clean.cells[1].metadata == {"tags": ["parameters"]}
    assert clean.cells[2].metadata == {}  # empty tags dropped too
    assert [c.execution_count for c in clean.cells[1:]] == [1, 2]
    body = clean.cells[2]
    assert body.id == "cell-02"
    assert [(o.output_type, o.get("name")) for o in body.outputs] == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("execute_result", None),
    ]
    assert body.outputs[0].text == "profile: quick\nwrote results/t.csv\ndone\n"
    assert body.outputs[1].text == "tinyproto/x.py:3: UserWarning: w\n"
    assert body.outputs[2].data["text/plain"] == "<Figure at 0x...>"
    assert body.outputs[2].execution_count == 2
    nbformat.validate(clean)


def test_clean_nb_is_idempotent_and_keeps_good_ids():
    nb, root = _synthetic()
    once = nbformat.writes(clean_nb(nb, root=root))
    twice = nbformat.writes(clean_nb(nbformat.reads(once, as_version=4), root=root))
    assert once == twice
    ids = [c.id for c in nbformat.reads(once, as_version=4).cells]
    assert ids[2] == "cell-02" and len(set(ids)) == 3


def test_clean_notebook_writes_only_when_needed(tmp_path):
    nb, root = _synthetic()
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert clean_notebook(path, root=root) is True
    text = path.read_text(encoding="utf-8")
    assert clean_notebook(path, root=root) is False
    assert path.read_text(encoding="utf-8") == text and text.endswith("\n")
    assert not list(tmp_path.glob("*.tmp"))
