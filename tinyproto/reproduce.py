"""``make reproduce``: the communication table, then every notebook executed with papermill.

Quick profile: notebooks are executed in place (the committed notebooks carry the quick
profile's outputs). Other profiles write executed copies to notebooks/_runs/<profile>/ so the
committed notebooks stay as they are; their tables and figures go to results/<profile>/ and
figures/<profile>/ (see tinyproto.sweep.outputs).
"""

from __future__ import annotations

import os
import time

from tinyproto.config import PROFILES, ConfigError
from tinyproto.sweep import project_root

NOTEBOOKS = (
    "00_quickstart",
    "01_dead_units",
    "02_comm_cost",
    "03_main_results",
    "04_ablation",
    "05_cps_vs_dim",
    "06_robustness",
    "07_masks",
)


def reproduce(
    profile: str = "quick", notebooks: list[str] | None = None
) -> list[tuple[str, float]]:
    """Write results/table1_comm.csv and execute the notebooks; returns (name, seconds) pairs."""
    import papermill

    from tinyproto import comm_table
    from tinyproto.sweep import outputs

    if profile not in PROFILES:
        raise ConfigError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)}")
    names = list(notebooks or NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ConfigError(f"invalid notebooks={unknown}: choose from {', '.join(NOTEBOOKS)}")
    root = project_root()
    os.chdir(root)  # papermill records the paths it is given: keep them relative
    nb_dir = root / "notebooks"
    out = outputs(profile)
    timings = []
    t0 = time.perf_counter()
    comm_table.write_comm_table(out.results / "table1_comm.csv")
    timings.append(("table1_comm (comm-table)", time.perf_counter() - t0))
    print(f"[reproduce] {out.rel(out.results / 'table1_comm.csv')}", flush=True)
    dest_dir = nb_dir if profile == "quick" else nb_dir / "_runs" / profile
    dest_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = nb_dir / f"{name}.ipynb"
        dest = dest_dir / f"{name}.ipynb"
        t = time.perf_counter()
        print(f"[reproduce] {name} ({profile}) ...", flush=True)
        papermill.execute_notebook(
            str(src.relative_to(root)),
            str(dest.relative_to(root)),
            parameters={"profile": profile},
            cwd=str(nb_dir.relative_to(root)),
            kernel_name="python3",
            progress_bar=False,
        )
        timings.append((name, time.perf_counter() - t))
        print(f"[reproduce] {name} done in {timings[-1][1]:.0f} s", flush=True)
    total = time.perf_counter() - t0
    print(f"[reproduce] all done in {total / 60:.1f} min ({profile} profile)")
    return timings
