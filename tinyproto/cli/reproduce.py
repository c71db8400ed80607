"""``make reproduce``: the communication table, then every notebook executed with papermill.

Quick profile: the committed notebooks carry the quick profile's outputs, so each notebook is
executed into notebooks/_runs/quick/ (git-ignored), cleaned (tinyproto.nbtools.clean_notebook)
and only then copied over the committed one: a failed execution leaves the committed notebook
untouched, and rerunning on unchanged runs leaves it byte-identical. Other profiles keep their
executed, cleaned copies in notebooks/_runs/<profile>/; their tables and figures go where
tinyproto.sweep.outputs(profile) says (results/<profile>/, figures/<profile>/).

The profile reaches the notebooks through ``$TINYPROTO_PROFILE`` (read by each notebook's
parameters cell), not through a papermill injected-parameters cell, and
``$TINYPROTO_REQUIRE_PROFILE`` makes a notebook that would run another profile fail.

Last, the scorecard: results/scorecard.csv and the generated table of docs/scorecard.md.
Besides the notebooks, ``reproduce`` writes only under results/, figures/ and docs/, and never
changes the working directory: each kernel is started in notebooks/ (nbclient's
``resources["metadata"]["path"]``; papermill's own ``cwd=`` would chdir this process), and the
notebooks find the project from there (``tinyproto.sweep.outputs``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from tinyproto.cli.flags import Once
from tinyproto.config import PROFILES, ConfigError
from tinyproto.store import RESULTS_ENV
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
    "08_fedtiny",
    "09_sparsity",
    "10_codecs",
)


@contextmanager
def _environ(**values: str):
    """Set environment variables (inherited by the kernels papermill starts) for a block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reproduce(
    profile: str = "quick", notebooks: list[str] | None = None
) -> list[tuple[str, float]]:
    """Write results/table1_comm.csv and execute the notebooks; returns (name, seconds) pairs."""
    import papermill

    from tinyproto.nbtools import (
        PROFILE_ENV,
        REQUIRE_ENV,
        clean_notebook,
        kernel_manager_config,
    )
    from tinyproto.scorecard import comm_table
    from tinyproto.sweep import outputs

    if profile not in PROFILES:
        raise ConfigError(f"invalid profile={profile!r}: one of {', '.join(PROFILES)}")
    names = list(notebooks or NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        import difflib

        hints = []
        for n in unknown:  # "08" -> 08_fedtiny: a prefix, else the closest name
            close = [m for m in NOTEBOOKS if m.startswith(n)] or difflib.get_close_matches(
                n, NOTEBOOKS, n=1
            )
            hints.append(f"{n!r} (did you mean {close[0]}?)" if len(close) == 1 else repr(n))
        raise ConfigError(
            f"invalid notebooks={','.join(unknown)}: unknown notebook {', '.join(hints)}; "
            f"choose from {', '.join(NOTEBOOKS)}"
        )
    root = project_root()
    nb_dir = root / "notebooks"
    out = outputs(profile)
    timings = []
    t0 = time.perf_counter()
    comm_table.write_comm_table(out.results / "table1_comm.csv")
    timings.append(("table1_comm (comm-table)", time.perf_counter() - t0))
    print(f"[reproduce] {out.rel(out.results / 'table1_comm.csv')}", flush=True)
    run_dir = nb_dir / "_runs" / profile
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {PROFILE_ENV: profile, REQUIRE_ENV: profile, "TQDM_DISABLE": "1"}
    if os.environ.get(RESULTS_ENV):  # the kernels start in notebooks/: same folder as here
        env[RESULTS_ENV] = str(Path(os.environ[RESULTS_ENV]).expanduser().resolve())
    for name in names:
        src = nb_dir / f"{name}.ipynb"
        executed = run_dir / f"{name}.ipynb"
        t = time.perf_counter()
        print(f"[reproduce] {name} ({profile}) ...", flush=True)
        with _environ(**env):
            papermill.execute_notebook(
                str(src),
                str(executed),
                kernel_name="python3",
                progress_bar=False,
                config=kernel_manager_config(),
                # the kernel's working directory, without papermill's chdir of this process
                resources={"metadata": {"path": str(nb_dir)}},
            )
        clean_notebook(executed, root=root)
        if profile == "quick" and executed.read_bytes() != src.read_bytes():
            shutil.copyfile(executed, src)
        timings.append((name, time.perf_counter() - t))
        where = src if profile == "quick" else executed
        print(
            f"[reproduce] {name} done in {timings[-1][1]:.0f} s -> {where.relative_to(root)}",
            flush=True,
        )
    from tinyproto.scorecard import render

    card, card_path = render.write()
    render.update_docs(card)
    print(f"[reproduce] {out.rel(card_path)} and {render.DOC.as_posix()}'s scorecard", flush=True)
    total = time.perf_counter() - t0
    print(f"[reproduce] all done in {total / 60:.1f} min ({profile} profile)")
    return timings


def add_parser(subparsers) -> argparse.ArgumentParser:
    rp = subparsers.add_parser(
        "reproduce", help="run the notebooks (papermill): their tables and figures, Fashion-MNIST analogues of part of the paper's on the CPU profiles"
    )
    rp.add_argument(
        "--profile",
        action=Once,
        default="quick",
        choices=PROFILES,
        help="profile to run (default quick)",
    )
    rp.add_argument(
        "--notebooks",
        action=Once,
        default=None,
        metavar="A,B",
        help="comma list (default: all, in order)",
    )
    return rp


def cmd(args) -> int:
    names = None
    if args.notebooks is not None:
        names = [n.strip() for n in args.notebooks.split(",")]
        if not all(names):  # e.g. --notebooks "$UNSET": never "all of them" by accident
            raise ConfigError(
                f"invalid notebooks={args.notebooks!r}: a comma list from {', '.join(NOTEBOOKS)} "
                "(leave the flag out for all of them)"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"invalid notebooks={args.notebooks!r}: {', '.join(twice)} named twice; name "
                "each notebook once"
            )
    reproduce(args.profile, names)
    return 0
