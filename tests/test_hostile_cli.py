"""Hostile cases of the third trust probe: what a user types never overwrites a file, an
explicit request that cannot be met is refused even when a finished run could be reused, and
every error line names what the user typed (a flag or a run-config key, not a Python field)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tinyproto import Config, ConfigError, run
from tinyproto.cli import main
from tinyproto.flower import settings


def err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    return err


@pytest.mark.parametrize(
    ("argv", "expected", "field"),
    [
        (["--algorithm", "fedproto", "--no-cps"], "invalid --no-cps: only tinyproto", "cps="),
        (["--algorithm", "fedproto", "--no-scaling"], "invalid --no-scaling: only", "aps="),
        (["--algorithm", "fedproto", "--aps-divide"], "invalid --aps-divide: only", "True"),
        (["--max-samples", "5"], ">= 2 * --num-clients = 8", "num_clients"),
        (["--cps-dim", "0"], "[1, --feature-dim]", "feature_dim"),
        (["--dp-noise", "1"], "needs --dp-clip (the noise is --dp-noise x --dp-clip)", "dp_"),
    ],
)
def test_error_lines_name_the_flags_typed(tmp_path, capsys, argv, expected, field):
    rc = main(["run", "--profile", "smoke", "--no-progress", "--results", str(tmp_path), *argv])
    line = err_line(capsys)
    assert rc == 2 and expected in line and field not in line, line


def test_run_config_errors_name_the_keys():
    for rc, expected in [
        ({"dp-noise": 1.0}, "needs dp-clip (the noise is dp-noise x dp-clip)"),
        ({"max-samples": 5}, ">= 2 * num-clients = 8"),
        ({"results-dir": "   "}, "invalid results-dir='   ': a path, not empty or blank"),
    ]:
        with pytest.raises(ConfigError) as e:
            settings.parse(rc)
        assert expected in str(e.value) and "_" not in str(e.value).split(":")[0], e.value


@pytest.mark.parametrize("results", ["", "   "])
def test_a_blank_results_folder_is_refused(tmp_path, capsys, results, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--profile", "smoke", "--no-progress", "--results", results])
    assert rc == 2 and "a path, not empty or blank" in err_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written in the working directory


def test_an_explicit_out_never_overwrites_a_file(tmp_path, capsys):
    target = tmp_path / "table.csv"
    target.write_text("committed\n")
    for argv in (
        ["bench", "--profile", "smoke", "--out", str(target)],
        ["comm-table", "--out", str(target)],
    ):
        assert main(argv) == 2
        assert "exists already; name a new file" in err_line(capsys)
        assert target.read_text() == "committed\n"


def test_a_finished_run_is_not_reused_against_an_explicit_impossible_request(tmp_path, capsys):
    cfg = Config(profile="smoke", rounds=1)
    run(cfg, root=tmp_path, progress=False)
    base = [
        "run",
        "--profile",
        "smoke",
        "--rounds",
        "1",
        "--no-progress",
        "--results",
        str(tmp_path),
    ]
    assert main(base) == 0  # reused
    capsys.readouterr()
    assert main([*base, "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "--data-dir=" in err_line(capsys)
    import torch

    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        assert "no CUDA device" in err_line(capsys)


def test_sigterm_is_one_line_like_ctrl_c(tmp_path):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinyproto",
            "run",
            "--profile",
            "quick",
            "--rounds",
            "3",
            "--no-progress",
            "--results",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TINYPROTO_REQUIRE_PROFILE": ""},
    )
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob("*/config.json")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the run has started (its folder exists)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143
    assert (
        err.strip() == "tinyproto: terminated (checkpoints, if any, are kept; rerun with --resume)"
    )


def test_the_deploy_launcher_checks_the_environment_before_starting(tmp_path, capsys):
    from tinyproto.flower import deploy

    file = tmp_path / "a-file"
    file.write_text("x")
    cases = [
        (["--run-config", f"data-dir='{tmp_path / 'nowhere'}'"], "data-dir="),
        (["--run-config", f"results-dir='{file}'"], "invalid results-dir="),
        (["--keep-logs", str(file)], "invalid keep-logs="),
    ]
    for argv, expected in cases:
        t0 = time.monotonic()
        assert deploy.main(argv) == 2
        assert expected in err_line(capsys)
        assert time.monotonic() - t0 < 30  # refused before any Flower process started
    with pytest.raises(SystemExit):
        deploy.main(["--run-config", "rounds=1", "--run-config", "rounds=2"])
    assert "--run-config given more than once" in capsys.readouterr().err


def test_a_mistyped_run_config_key_gets_the_closest_key():
    with pytest.raises(ConfigError, match=r"num-client: did you mean num-clients\?"):
        settings.parse({"num-client": 4})
    with pytest.raises(ConfigError) as e:
        settings.parse({"zzz": 1})
    assert "did you mean" not in str(e.value)


def test_reproduce_refuses_a_notebook_named_twice_and_bench_a_checkpoint_flag(capsys):
    assert main(["reproduce", "--notebooks", "00_quickstart,00_quickstart"]) == 2
    assert "00_quickstart named twice" in err_line(capsys)
    assert main(["bench", "--profile", "smoke", "--checkpoint-every", "2"]) == 2
    assert "invalid --checkpoint-every for bench" in err_line(capsys)


def test_an_unknown_notebook_gets_the_closest_name(capsys):
    assert main(["reproduce", "--notebooks", "08"]) == 2
    line = err_line(capsys)
    assert "invalid --notebooks=08: unknown notebook '08' (did you mean 08_fedtiny?)" in line
    assert "[" not in line.split(";")[0]  # no Python list
