"""Nothing a user types gives a traceback or is silently accepted: repeated or impossible
subcommand flags, an empty notebook list, a path the OS cannot take, a deploy timeout that
cannot work. Each is one line and exit status 2, before anything is computed or started."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tinyproto import Config, ConfigError, run
from tinyproto.cli import main

SMOKE = ["--profile", "smoke", "--dataset", "synthetic"]


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["bench", *SMOKE, "--bench-rounds", "1", "--bench-rounds", "2"], "give each setting once"),
        (["bench", *SMOKE, "--warmup", "0", "--warmup", "1"], "give each setting once"),
        (["bench", *SMOKE, "--join-ratio", "0.25"], "invalid --join-ratio=0.25 for bench"),
        (["bench", *SMOKE, "--drop-rate", "0.5"], "invalid --drop-rate=0.5 for bench"),
        (["comm-table", "--dim", "64", "--dim", "32"], "give each setting once"),
        (["reproduce", "--notebooks", ""], "invalid --notebooks=''"),
        (["reproduce", "--notebooks", "00_quickstart,"], "invalid --notebooks="),
        (["reproduce", "--profile", "smoke", "--profile", "quick"], "give each setting once"),
    ],
)
def test_a_subcommand_flag_mistake_is_one_line(argv, phrase, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and phrase in err[0], err
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_path_with_a_nul_byte_is_refused_before_anything(tmp_path):
    from tinyproto.flower import settings

    with pytest.raises(ConfigError, match=r"invalid results='x\\x00y': a path without a NUL"):
        run(Config(profile="smoke", dataset="synthetic"), root="x\x00y", progress=False)
    with pytest.raises(ConfigError, match="invalid results-dir=.*NUL byte"):
        settings.parse({"results-dir": "a\x00b"})


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_a_deploy_timeout_that_cannot_work_is_refused_before_starting(value):
    r = subprocess.run(
        [sys.executable, "-m", "tinyproto.flower.deploy", "--timeout", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid timeout=" in r.stderr
    assert "Traceback" not in r.stderr and "SuperLink" not in r.stdout


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["run", "--num-client", "5"], "; did you mean --num-clients?"),
        (["run", "--algorithm", "fedprot"], "; did you mean fedproto?"),
        (["run", "--dataset", "fmnst"], "; did you mean fmnist?"),
        (["bench", "--bench-round", "2"], "; did you mean --bench-rounds?"),
        (["run", "--bogus"], None),  # nothing close: no guess
        (["run", "--algorithm", "xyz"], None),
    ],
)
def test_a_typo_gets_the_closest_flag_or_choice(argv, hint, capsys):
    assert main(argv) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    if hint:
        assert err.endswith(hint), err
    else:
        assert "did you mean" not in err


def test_the_results_folder_does_not_follow_the_working_directory(tmp_path, monkeypatch):
    """Regression: a command started outside the checkout wrote a new ./results there. The
    results go to the checkout tinyproto runs from ($TINYPROTO_RESULTS still overrides)."""
    from pathlib import Path

    from tinyproto import store

    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.delenv(store.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert store.project_root() == checkout
    assert store.results_root() == checkout / "results"
    assert store.runs_root("smoke") == checkout / "results" / "smoke" / "runs"
    assert store.project_root(tmp_path) == tmp_path.resolve()  # an explicit start is kept
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "mine"))
    assert store.results_root() == tmp_path / "mine"


def test_a_fedtiny_option_no_round_reads_is_refused():
    """--adjust-until below --adjust-every leaves no adjustment round, so --adjust-rate and
    --prune-mode would only change the run id: refused like any option a run never reads."""
    base = dict(algorithm="fedtiny", profile="smoke", adjust_until=0)
    Config(**base)  # no adjustment at all: fine
    with pytest.raises(ConfigError, match="invalid adjust_rate=0.5: adjust_until=0 < adjust_every"):
        Config(**base, adjust_rate=0.5)
    with pytest.raises(ConfigError, match="invalid prune_mode='entire'"):
        Config(**base, prune_mode="entire")
    Config(algorithm="fedtiny", profile="smoke", adjust_until=10, adjust_rate=0.5)  # one round
