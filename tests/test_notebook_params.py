"""Notebook parameters a notebook cannot use stop it in its setup cell with one line (before,
`-p algorithm fedproto` on notebook 00 ran two runs and then died in a TypeError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyproto.nbtools import NotebookParameterError, require_algorithms

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args,needle",
    [
        (("algorithm", "fedproto", "tinyproto"), "this notebook needs a TinyProto variant"),
        (("algorithm", ["tinyproto-fp"], "tinyproto"), "one algorithm name"),
        (("algorithms", ["fedproto", "fedavg"], "prototype"), "needs a prototype method"),
        (("algorithms", "fedproto", "any"), "a non-empty list of algorithm names"),
        (("algorithms", [], "any"), "a non-empty list"),
        (("algorithms", ["fedprot"], "any"), "invalid algorithms=['fedprot']: one of local"),
    ],
)
def test_bad_algorithm_parameters_are_one_line(args, needle):
    name, value, kind = args
    single = name == "algorithm"
    with pytest.raises(NotebookParameterError) as e:
        require_algorithms(name, value, kind, single=single)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"invalid {name}=")


def test_good_parameters_pass_through():
    assert (
        require_algorithms("algorithm", "tinyproto-ft", "tinyproto", single=True) == "tinyproto-ft"
    )
    assert require_algorithms("a", ["fedproto", "tinyproto-fp"], "prototype") == [
        "fedproto",
        "tinyproto-fp",
    ]


def test_every_notebook_with_an_algorithm_parameter_checks_it():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        params = "".join(
            "".join(c["source"])
            for c in nb["cells"]
            if "parameters" in c["metadata"].get("tags", [])
        )
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        for name in ("algorithm", "baseline", "algorithms", "curve_algorithms"):
            if f"\n{name} = " in "\n" + params:
                assert f'require_algorithms("{name}", {name}' in code, (path.name, name)


@pytest.mark.parametrize(
    "args,kwargs,needle",
    [
        (("seeds", "0,1", "int", 0), {"many": True}, "a non-empty list of integers >= 0"),
        (("seeds", [0, 0], "int", 0), {"many": True}, "(a value is repeated)"),
        (("seeds", [], "int", 0), {"many": True}, "a non-empty list"),
        (("seeds", [0, -1], "int", 0), {"many": True}, "(-1 is not)"),
        (("classes_grid", [10, 2.5], "int", 2), {"many": True}, "(2.5 is not)"),
        (("heatmap_class", 10, "int", 0, 9), {}, "an integer in [0, 9]"),
        (("heatmap_class", True, "int", 0, 9), {}, "an integer in [0, 9]"),
        (("cps_fraction", 0.0, "float", 0, 1), {"low_open": True}, "a finite number in (0, 1]"),
        (("lams", [float("nan")], "float", 0), {"many": True, "low_open": True}, "(nan is not)"),
        (("per_class", "10", "int", 1), {"none": True}, "or None (the default)"),
    ],
)
def test_bad_numeric_parameters_are_one_line(args, kwargs, needle):
    from tinyproto.nbtools import require_numbers

    with pytest.raises(NotebookParameterError) as e:
        require_numbers(*args, **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(e.value).startswith(f"invalid {args[0]}=")


def test_good_numeric_and_mapping_parameters_pass_through():
    from tinyproto.nbtools import require_mapping, require_numbers

    assert require_numbers("seeds", None, "int", 0, many=True, none=True) is None
    assert require_numbers("seeds", [0, 1, 2], "int", 0, many=True) == [0, 1, 2]
    assert require_numbers("densities", (0.1, 1.0), "float", 0, 1, many=True) == (0.1, 1.0)
    assert require_mapping("settings", {"a": {"alpha": 0.5}}) == {"a": {"alpha": 0.5}}
    for bad in ({}, [("a", {})], {"": {}}, {"a": 0.5}):
        with pytest.raises(NotebookParameterError, match="invalid settings"):
            require_mapping("settings", bad)
    codecs = {"fedproto": ["fp32", "int8"]}
    assert require_mapping("payloads", codecs, values="strings") == codecs
    for bad in (
        {"fedproto": "fp32"},
        {"fedproto": []},
        {"fedproto": ["int8", "int8"]},
        {"fedproto": ["fp32", ""]},
        {"fedproto": {"payload": "fp32"}},
    ):
        with pytest.raises(
            NotebookParameterError, match=r"invalid payloads\['fedproto'\]=.*distinct"
        ):
            require_mapping("payloads", bad, values="strings")
    with pytest.raises(NotebookParameterError, match=r"invalid settings\['a'\]=\['x'\]: \{option"):
        require_mapping("settings", {"a": ["x"]})


def _parameters(path: Path) -> dict:
    """The notebook's parameters cell: {name: literal default (or the source text)}."""
    import ast

    nb = json.loads(path.read_text())
    src = "".join(
        "".join(c["source"]) for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])
    )
    out = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


def test_every_numeric_list_or_mapping_parameter_is_checked_before_use():
    """A parameter a Config does not check itself (a list of values, a mapping, a number the
    notebook uses directly) is checked in the setup cell by require_numbers / require_mapping /
    require_algorithms, so a bad value stops the notebook with one line naming it."""
    from tinyproto.config import GROUP_OF, TOP_LEVEL

    config_fields = set(TOP_LEVEL) | set(GROUP_OF)
    missing = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        for name, value in _parameters(path).items():
            if name in ("profile", "progress") or isinstance(value, (str, bool)):
                continue  # names and switches; profile has require_profile
            if name in config_fields and not isinstance(value, (list, tuple, dict)):
                continue  # one Config value: Config checks it, naming the field
            if not any(f'{fn}("{name}", {name}' in code for fn in
                       ("require_numbers", "require_mapping", "require_algorithms")):
                missing.append(f"{path.name}: {name}")
    assert not missing, missing


def test_a_bad_parameter_stops_the_notebook_before_any_run(tmp_path):
    """Executed for real (smoke profile): heatmap_class beyond the data set's classes stops
    notebook 01 at its setup with the one-line error, and no run folder is written."""
    import papermill

    from tinyproto.cli.reproduce import _environ
    from tinyproto.nbtools import kernel_manager_config

    env = {"TINYPROTO_PROFILE": "smoke", "TINYPROTO_RESULTS": str(tmp_path / "results")}
    with _environ(**env), pytest.raises(papermill.PapermillExecutionError) as e:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "01_dead_units.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"heatmap_class": 10},
            kernel_name="python3",
            progress_bar=False,
            config=kernel_manager_config(),
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        )
    assert e.value.ename == "NotebookParameterError"
    assert e.value.evalue == "invalid heatmap_class=10: an integer in [0, 9]"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.csv"))
