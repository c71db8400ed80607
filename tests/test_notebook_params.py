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
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
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
