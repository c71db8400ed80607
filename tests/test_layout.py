"""Layout rules the architecture relies on: no import-time side effects, the paper's numbers
typed once, option groups that keep run ids stable (the layers: tests/test_layers.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinyproto import Config, paper
from tinyproto.config import GROUP_OF, GROUPS, ConfigError, FMLOptions, TinyProtoOptions

ROOT = Path(__file__).resolve().parents[1]


def test_importing_plots_changes_no_global_matplotlib_state():
    code = "\n".join(
        [
            "import matplotlib",
            "matplotlib.use('Agg')",
            "from matplotlib import rcParams",
            "before = dict(rcParams)",
            "import tinyproto.plots as p",
            "assert dict(rcParams) == before, 'import changed rcParams'",
            "with p.style():",
            "    assert rcParams['axes.grid'] is True",
            "assert dict(rcParams) == before, 'style() leaked'",
        ]
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_paper_numbers_are_typed_once():
    """No notebook code cell types a Table 1 or Table 3 accuracy; they read tinyproto.paper."""
    means = {f"{m:.2f}" for per in paper.TABLE1.values() for m, _, _ in per}
    means |= {f"{m:.2f}" for per in paper.TABLE3.values() for m, _ in per}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        found = means & set(re.findall(r"\b\d{2}\.\d{2}\b", code))
        assert not found, f"{nb.name} types paper numbers {sorted(found)}"
    assert paper.comm_m("FedProto") == (0.15, 1.46, 2.93)
    assert len(paper.table5_long()) == 24 * 3


def test_option_groups_own_the_algorithm_knobs_and_keep_flat_names():
    c = Config(algorithm="fml", profile="smoke", fml_alpha=0.3)
    assert c.fml == FMLOptions(alpha=0.3, beta=0.5, weighting="uniform") and c.fml_alpha == 0.3
    assert c.run_id() == Config(algorithm="fml", profile="smoke", fml=FMLOptions(0.3)).run_id()
    assert c.to_dict()["fml_alpha"] == 0.3 and "fml" not in c.to_dict()
    t = Config(algorithm="tinyproto-ft", profile="smoke", cps=False)
    assert t.tinyproto.cps is False and t.cps_dim is None and t.uses_aps
    assert t.run_id() == Config(algorithm="tinyproto-ft", profile="smoke", cps_dim=None).run_id()
    assert Config(algorithm="tinyproto-fp", profile="smoke").tinyproto.cps_dim == 4  # d // 10
    # every flat name maps into a group, every group field has a flat name or is a switch
    for group, (cls, _) in GROUPS.items():
        for f in cls.__dataclass_fields__:
            assert (group, f) in GROUP_OF.values() or f in ("cps", "aps"), (group, f)
    with pytest.raises(ConfigError, match="invalid cps_dim=5: cps is off"):
        Config(algorithm="tinyproto-fp", cps=False, cps_dim=5)
    with pytest.raises(ConfigError, match="invalid tinyproto="):
        Config(algorithm="tinyproto-fp", tinyproto={"cps": False})
    with pytest.raises(ConfigError, match="unknown config field 'fml_gamma'"):
        Config(algorithm="fml", fml_gamma=1.0)
    with pytest.raises(ConfigError, match="invalid cps=False: only tinyproto"):
        Config(algorithm="fedproto", tinyproto=TinyProtoOptions(cps=False))
