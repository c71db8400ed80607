"""Config resolution and the CLI: defaults, profiles, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from tinyproto import Config, ConfigError
from tinyproto.cli import main
from tinyproto.config import MU_TARGET, PROFILE_DEFAULTS


def test_tinyproto_defaults_s_is_d_over_10_and_mu_auto():
    c = Config(algorithm="tinyproto-fp", profile="paper")
    assert c.feature_dim == 500 and c.cps_dim == 50 and c.mu == "auto"
    assert c.resolve_mu(4500) == 1.5e-4  # CIFAR-10, the paper's constant
    f = Config(algorithm="tinyproto-fp", profile="quick")
    assert f.cps_dim == f.feature_dim // 10
    # Fashion-MNIST: mu * (training samples per class) ~= 0.68 (FP) / 4.5 (FT)
    assert f.resolve_mu(5250) * 5250 == pytest.approx(MU_TARGET["tinyproto-fp"], rel=0.02)
    ft = Config(algorithm="tinyproto-ft", profile="quick")
    assert ft.resolve_mu(5250) * 5250 == pytest.approx(MU_TARGET["tinyproto-ft"], rel=0.02)
    assert (
        Config(algorithm="tinyproto-ft", profile="paper", dataset="cifar100").resolve_mu(450)
        == 1e-2
    )


def test_baselines_have_no_cps_and_no_scaling():
    for alg in ("fedproto", "fedtgp", "local"):
        c = Config(algorithm=alg)
        assert c.cps_dim is None and c.mu is None


def test_switches_turn_cps_and_aps_off_independently():
    c = Config(algorithm="tinyproto-fp", cps_dim=None)
    assert not c.uses_cps and c.uses_aps
    c = Config(algorithm="tinyproto-fp", mu=None)
    assert c.uses_cps and not c.uses_aps


def test_profile_fills_and_explicit_overrides():
    c = Config(profile="smoke")
    for k, v in PROFILE_DEFAULTS["smoke"].items():
        assert getattr(c, k) == v
    assert Config(profile="smoke", num_clients=7).num_clients == 7
    assert Config(profile="quick", max_samples=0).max_samples is None  # 0 = every sample


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(cps_dim=600), "cps_dim"),
        (dict(cps_dim=0), "cps_dim"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(num_clients=0), "num_clients"),
        (dict(rounds=0), "rounds"),
        (dict(dataset="mnist"), "dataset"),
        (dict(algorithm="scaffold"), "algorithm"),
        (dict(family="vgg"), "family"),
        (dict(mu=-1.0), "mu"),
    ],
)
def test_config_errors_name_the_parameter(kwargs, name):
    with pytest.raises(ConfigError) as e:
        Config(algorithm=kwargs.pop("algorithm", "tinyproto-fp"), profile="quick", **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"invalid {name}=")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--cps-dim", "600"], "invalid --cps-dim=600: an integer in [1, --feature-dim=500]"),
        (["--cps-dim", "0"], "invalid --cps-dim=0"),
        (["--alpha", "0"], "invalid --alpha=0.0: a finite number > 0"),
        (["--num-clients", "0"], "invalid --num-clients=0"),
        (["--rounds", "0"], "invalid --rounds=0"),
        (["--dataset", "mnist"], "invalid --dataset='mnist': one of fmnist"),
        (["--algorithm", "scaffold"], "invalid --algorithm='scaffold'"),
        (["--family", "vgg"], "invalid --family='vgg'"),
        (["--rounds", "three"], "invalid --rounds='three': an integer >= 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/x"], "CIFAR-10"),
    ],
)
def test_cli_errors_exit_2_with_one_line(args, needle, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TINYPROTO_DATA", str(tmp_path))
    import tinyproto.data.cifar as data

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(data, "_torchvision_download_cifar", offline)
    code = main(["run", "--profile", "quick", "--algorithm", "tinyproto-fp", *args])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyproto: error: ")
    assert needle in lines[0]
    assert "Traceback" not in err


def test_cli_no_cps_and_no_scaling_flags():
    from tinyproto.cli import build_parser, config_from_args

    argv = ["run", "--algorithm", "tinyproto-fp", "--no-cps", "--mu", "0.001"]
    c = config_from_args(build_parser().parse_args(argv))
    assert c.cps_dim is None and c.mu == 0.001
    argv = ["run", "--algorithm", "tinyproto-ft", "--no-scaling", "--cps-dim", "25"]
    c = config_from_args(build_parser().parse_args(argv))
    assert c.mu is None and c.cps_dim == 25
    argv = ["run", "--algorithm", "tinyproto-ft", "--cps-dim", "none", "--mu", "none"]
    c = config_from_args(build_parser().parse_args(argv))
    assert c.mu is None and c.cps_dim is None


def test_module_and_script_entry_point_run(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinyproto",
            "run",
            "--profile",
            "smoke",
            "--dataset",
            "synthetic",
            "--rounds",
            "1",
            "--results",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "accuracy best" in out.stdout and "floats/round" in out.stdout


def test_mu_follows_the_product_rule_on_subsets_and_other_data():
    """The paper's mu belongs to its full data sets; a subset or other data set gets the rule."""
    full = Config(algorithm="tinyproto-fp", profile="paper", dataset="cifar10")
    assert full.resolve_mu(4500) == 1.5e-4
    for algorithm, target in MU_TARGET.items():
        sub = Config(algorithm=algorithm, profile="quick", dataset="cifar10")  # 24 000 images
        n = 24000 * 0.75 / 10
        assert sub.resolve_mu(n) * n == pytest.approx(target, rel=0.02)
        cut = Config(algorithm=algorithm, profile="paper", dataset="cifar100", max_samples=30000)
        assert cut.resolve_mu(225) * 225 == pytest.approx(target, rel=0.02)
    assert (
        Config(algorithm="tinyproto-ft", profile="paper", dataset="cifar10", mu=0.5).resolve_mu(10)
        == 0.5
    )  # explicit wins


def test_extreme_but_valid_seeds_run(tmp_path):
    from tinyproto import run

    top = 2**32 - 1
    cfg = Config(
        profile="smoke",
        dataset="synthetic",
        max_samples=200,
        feature_dim=8,
        rounds=1,
        seed=top,
        partition_seed=top,
        mask_seed=top,
    )
    res = run(cfg, root=tmp_path, progress=False)
    assert len(res.metrics) == 1


@pytest.mark.parametrize("profile", ["smoke", "quick", "long", "paper"])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"max_samples": 0},  # every sample, also where the profile presets a subset
        {"max_samples": 5000},
        {"algorithm": "tinyproto-fp", "cps_dim": None},
        {"algorithm": "tinyproto-ft", "mu": None},
        {"algorithm": "fml", "precision": "bf16", "client_workers": 2},
    ],
)
def test_config_json_round_trip_keeps_the_config(profile, overrides):
    """config.json (to_dict) read back (config_from_dict) is the same config with the same run
    id: workers, resume and reuse all go through it. Before the fix, max_samples=0 (every
    sample) on the quick profile came back as the preset 24 000, another run."""
    from tinyproto.config import config_from_dict

    kw = {"algorithm": "fedproto", "dataset": "fmnist", **overrides}
    cfg = Config(profile=profile, **kw)
    back = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.to_dict() == cfg.to_dict()
    assert back.run_id() == cfg.run_id()
