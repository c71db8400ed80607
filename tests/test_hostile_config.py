"""Hostile configurations, through the API and the command line.

Every case must be refused before anything is loaded or written: the API raises ConfigError
(or DataError) whose message is one line naming the parameter or path; the CLI exits with status 2
and prints exactly one line naming it; no run folder (not even the runs folder) is created.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from tinyproto import Config, ConfigError, run
from tinyproto.cli import main
from tinyproto.config import PARAMS, config_from_dict
from tinyproto.data import DataError

SMOKE = dict(profile="smoke", dataset="synthetic")

# (case id, Config kwargs, the name the one-line message must contain)
API_CASES = [
    ("num_clients-str", dict(num_clients="5"), "num_clients"),
    ("num_clients-bool", dict(num_clients=True), "num_clients"),
    ("num_clients-float", dict(num_clients=4.0), "num_clients"),
    ("seed-float", dict(seed=1.0), "seed"),
    ("seed-negative", dict(seed=-1), "seed"),
    ("seed-too-big", dict(seed=2**32), "seed"),
    ("partition_seed-too-big", dict(partition_seed=2**40), "partition_seed"),
    ("mask_seed-negative", dict(mask_seed=-1), "mask_seed"),
    ("lr-nan", dict(lr=math.nan), "lr"),
    ("lr-inf", dict(lr=math.inf), "lr"),
    ("lr-zero", dict(lr=0.0), "lr"),
    ("alpha-nan", dict(alpha=math.nan), "alpha"),
    ("alpha-str", dict(alpha="0.1"), "alpha"),
    ("mu-nan", dict(mu=math.nan), "mu"),
    ("mu-negative", dict(mu=-1e-3), "mu"),
    ("mu-bad-string", dict(mu="Auto"), "mu"),
    ("lam-inf", dict(lam=math.inf), "lam"),
    ("lam-negative", dict(lam=-1.0), "lam"),
    ("margin-nan", dict(algorithm="fedtgp", margin_threshold=math.nan), "margin_threshold"),
    ("server_lr-neg-inf", dict(algorithm="tinyproto-ft", server_lr=-math.inf), "server_lr"),
    ("gamma-nan", dict(algorithm="feddistill", gamma=math.nan), "gamma"),
    ("fml_alpha-above-1", dict(algorithm="fml", fml_alpha=1.5), "fml_alpha"),
    ("fedkd-start-after-end", dict(algorithm="fedkd", fedkd_t_start=0.99), "fedkd_t_start"),
    ("train_fraction-1", dict(train_fraction=1.0), "train_fraction"),
    ("train_fraction-0", dict(train_fraction=0.0), "train_fraction"),
    ("rounds-0", dict(rounds=0), "rounds"),
    ("batch_size-0", dict(batch_size=0), "batch_size"),
    ("local_epochs-float", dict(local_epochs=2.5), "local_epochs"),
    ("eval_every-0", dict(eval_every=0), "eval_every"),
    ("checkpoint_every-negative", dict(checkpoint_every=-1), "checkpoint_every"),
    ("feature_dim-huge", dict(feature_dim=10**7), "feature_dim"),
    ("max_samples-negative", dict(max_samples=-5), "max_samples"),
    ("cps_dim-above-d", dict(feature_dim=20, cps_dim=21), "cps_dim"),
    ("cps_dim-on-fedproto", dict(algorithm="fedproto", cps_dim=5), "cps_dim"),
    ("mu-on-fedproto", dict(algorithm="fedproto", mu=0.01), "mu"),
    ("mu-on-fml", dict(algorithm="fml", mu=0.01), "mu"),
    ("aps_divide-without-aps", dict(mu=None, aps_divide=True), "aps_divide"),
    ("aps_divide-string", dict(aps_divide="false"), "aps_divide"),
    ("aps_divide-on-fedtgp", dict(algorithm="fedtgp", aps_divide=True), "aps_divide"),
    ("gamma-on-tinyproto", dict(gamma=2.0), "gamma"),
    ("server_epochs-on-fedproto", dict(algorithm="fedproto", server_epochs=3), "server_epochs"),
    ("shared_model-on-fedproto", dict(algorithm="fedproto", shared_model="cnn_a"), "shared_model"),
    ("shared_model-unknown", dict(algorithm="fml", shared_model="vgg16"), "shared_model"),
    ("num_classes-real-data", dict(dataset="fmnist", num_classes=20), "num_classes"),
    ("more-clients-than-samples", dict(num_clients=400, max_samples=600), "max_samples"),
    ("clients-beyond-dataset", dict(num_clients=1000, max_samples=None), "num_clients"),
    ("least_samples-unmeetable", dict(max_samples=400, least_samples=500), "least_samples"),
    ("device-gpu", dict(device="gpu"), "device"),
    ("device-cuda-x", dict(device="cuda:x"), "device"),
    ("profile-unknown", dict(profile="fast"), "profile"),
    ("algorithm-case", dict(algorithm="FedProto"), "algorithm"),
    ("dataset-empty", dict(dataset=""), "dataset"),
    ("family-unknown", dict(family="ht1"), "family"),
    ("extra-nan", dict(extra=(("k", math.nan),)), "extra"),
    ("extra-not-pairs", dict(extra=("k",)), "extra"),
    ("data_dir-int", dict(data_dir=5), "data_dir"),
]


@pytest.mark.parametrize("kwargs,name", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses_bad_config(kwargs, name):
    kwargs = {**SMOKE, **kwargs}
    with pytest.raises(ConfigError) as e:
        Config(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    assert name in msg, msg


def test_config_from_dict_refuses_unknown_and_non_dict():
    with pytest.raises(ConfigError, match="unknown config field.*num_client"):
        config_from_dict({"num_client": 5})
    with pytest.raises(ConfigError, match="JSON object"):
        config_from_dict(["algorithm", "fedproto"])


def test_numpy_scalars_are_accepted_and_hash_like_python_numbers():
    import numpy as np

    a = Config(**SMOKE, seed=np.int64(3), lr=np.float32(0.5))
    b = Config(**SMOKE, seed=3, lr=0.5)
    assert a.run_id() == b.run_id() and type(a.seed) is int


# -- the environment: device, results folder, memory (API and CLI) ---------------------------


def _refused_run(tmp_path, **kwargs):
    root = tmp_path / "runs"
    with pytest.raises((ConfigError, DataError)) as e:
        run(Config(**{**SMOKE, **kwargs}), root=root, progress=False)
    assert not root.exists(), "a refused config must not create the runs folder"
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_cuda_on_a_cpu_machine_is_refused(tmp_path):
    assert "device='cuda'" in _refused_run(tmp_path, device="cuda")


def test_cuda_index_beyond_the_devices_is_refused(tmp_path):
    assert "device='cuda:7'" in _refused_run(tmp_path, device="cuda:7")


@pytest.mark.skipif(
    getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    reason="MPS is available here",
)
def test_mps_where_unavailable_is_refused(tmp_path):
    assert "device='mps'" in _refused_run(tmp_path, device="mps")


def test_results_folder_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "runs"
    f.write_text("not a folder")
    with pytest.raises(ConfigError, match="invalid results=.*file"):
        run(Config(**SMOKE), root=f, progress=False)
    assert f.read_text() == "not a folder"


def test_results_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="invalid results=.*f/runs"):
        run(Config(**SMOKE), root=tmp_path / "f" / "runs", progress=False)


def test_results_folder_not_writable_is_refused(tmp_path):
    # /proc refuses new files even to root, where permission bits would not.
    with pytest.raises(
        ConfigError,
        match="invalid results='/proc/tinyproto-runs': a writable folder "
        r"\(cannot create a file in /proc: ",
    ):
        run(Config(**SMOKE), root="/proc/tinyproto-runs", progress=False)


@pytest.fixture
def eight_gib(monkeypatch):
    """This machine has 8 GiB free, whatever it really has (the estimate is what is tested)."""
    from tinyproto.runtime import environment

    monkeypatch.setattr(environment, "available_memory", lambda device: 8 * 2**30)


def test_memory_estimate_counts_the_real_parameters():
    from tinyproto.models import client_model, count_params
    from tinyproto.runtime.environment import estimate_memory

    cfg = Config(**SMOKE, num_clients=6, feature_dim=33, family="cnn4")
    real = sum(
        count_params(client_model("cnn4", i, num_classes=10, feature_dim=33, in_channels=1))
        for i in range(6)
    )
    assert estimate_memory(cfg)["params"] == real


def test_model_too_large_for_memory_is_refused_with_an_estimate(tmp_path, eight_gib):
    msg = _refused_run(tmp_path, dataset="fmnist", profile="quick", feature_dim=1_000_000)
    assert "feature_dim=1000000" in msg and "GiB" in msg and "lower feature_dim" in msg


# -- the command line ----------------------------------------------------------------------

# (case id, argv after `run`, a string the one stderr line must contain)
CLI_CASES = [
    ("bool-takes-no-value", ["--aps-divide", "false"], "unrecognized arguments: false"),
    ("abbreviated-flag", ["--num-client", "5"], "--num-client"),
    ("abbreviated-bool", ["--aps-div"], "--aps-div"),
    ("no-cps-and-cps-dim", ["--no-cps", "--cps-dim", "50"], "--no-cps contradicts --cps-dim"),
    ("no-scaling-and-mu", ["--no-scaling", "--mu", "0.001"], "--no-scaling contradicts --mu"),
    ("no-scaling-and-divide", ["--no-scaling", "--aps-divide"], "--no-scaling contradicts"),
    ("flag-twice", ["--rounds", "3", "--rounds", "5"], "--rounds given after --rounds"),
    ("bool-both-ways", ["--aps-divide", "--no-aps-divide"], "--no-aps-divide given after"),
    ("seed-float", ["--seed", "1.5"], "invalid --seed='1.5'"),
    ("seed-huge", ["--seed", "99999999999"], "invalid --seed=99999999999"),
    ("lr-nan", ["--lr", "nan"], "invalid --lr=nan"),
    ("alpha-inf", ["--alpha", "inf"], "invalid --alpha=inf"),
    ("rounds-word", ["--rounds", "three"], "invalid --rounds='three'"),
    ("mu-negative", ["--mu", "-1"], "invalid --mu=-1.0"),
    ("cps-on-fedproto", ["--algorithm", "fedproto", "--cps-dim", "5"], "invalid --cps-dim=5"),
    ("gamma-on-tinyproto", ["--gamma", "2"], "invalid --gamma=2.0"),
    ("train-fraction-1", ["--train-fraction", "1"], "invalid --train-fraction=1.0"),
    ("profile-unknown", ["--profile", "fast"], "invalid --profile='fast'"),
    ("clients-vs-samples", ["--num-clients", "5000"], "invalid --max-samples=600"),
    ("resume-and-restart", ["--resume", "--restart"], "not allowed with argument"),
    ("device-cuda-9", ["--device", "cuda:9"], "invalid --device='cuda:9'"),
    ("huge-model", ["--num-clients", "20", "--feature-dim", "1000000"], "GiB"),
    ("positional-junk", ["fedproto"], "unrecognized arguments: fedproto"),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_exit_2_and_one_line(argv, needle, tmp_path, capsys, eight_gib):
    root = tmp_path / "runs"
    base = ["run", "--profile", "smoke", "--dataset", "synthetic", "--results", str(root)]
    if "--profile" in argv:
        base = ["run", "--dataset", "synthetic", "--results", str(root)]
    if "--dataset" in argv:
        base = [a for a in base if a not in ("--dataset", "synthetic")]
    code = main([*base, "--no-progress", *argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("tinyproto: error: "), err
    assert needle in lines[0], lines[0]
    assert not root.exists()


def test_cli_results_is_a_file(tmp_path, capsys):
    f = tmp_path / "runs"
    f.write_text("x")
    code = main(["run", "--profile", "smoke", "--dataset", "synthetic", "--results", str(f)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(f) in err and "file" in err


def test_cli_explicit_data_dir_missing_is_refused_before_any_folder(tmp_path, capsys):
    root = tmp_path / "runs"
    missing = tmp_path / "no-such-data"
    code = main(["run", "--profile", "smoke", "--data-dir", str(missing), "--results", str(root)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(missing) in err, err
    assert not root.exists()


def test_cli_results_not_writable(capsys):
    code = main(
        ["run", "--profile", "smoke", "--dataset", "synthetic", "--results", "/proc/tp/runs"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "/proc/tp/runs" in err


def test_help_lists_type_default_and_help_for_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:") :]  # the flag entries, not the usage line
    for name, p in PARAMS.items():
        if not p.cli:
            continue
        flag = "--" + name.replace("_", "-")
        i = min(j for j in (text.find(flag + " "), text.find(flag + ",")) if j >= 0)
        head = text.index("--no-" + flag[2:], i) if p.kind == "bool" else i
        entry = text[i : text.find(" --", head + len(flag) + 1)]
        assert "Default:" in entry, f"{flag}: no default in {entry!r}"
        if p.kind == "choice":
            assert "{" in entry, f"{flag}: choices not listed"
        elif p.kind != "bool":
            assert "Allowed:" in entry, f"{flag}: no allowed values"
        assert f"--no-{name.replace('_', '-')}" in text if p.kind == "bool" else True


def test_module_and_script_give_the_same_help():
    exe = os.path.join(os.path.dirname(sys.executable), "tinyproto")
    a = subprocess.run([sys.executable, "-m", "tinyproto", "run", "--help"], capture_output=True)
    b = subprocess.run([exe, "run", "--help"], capture_output=True)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout
    c = subprocess.run([exe, "run", "--lr", "nan"], capture_output=True, text=True)
    assert c.returncode == 2 and c.stderr.strip() == "tinyproto: error: invalid --lr=nan: " + (
        "a finite number > 0 (NaN and inf are refused)"
    )


def test_a_partition_no_draw_can_meet_is_a_config_error(tmp_path, monkeypatch):
    import numpy as np

    import tinyproto.data.load as engine  # where federate draws the partition
    from tinyproto.data import PartitionError, dirichlet_partition

    labels = np.repeat(np.arange(10), 40)
    with pytest.raises(PartitionError, match="no draw gave every client >= 90"):
        dirichlet_partition(labels, 4, 0.01, least_samples=90, max_tries=3)

    def never(*a, **k):
        return dirichlet_partition(labels, 4, 0.01, least_samples=90, max_tries=1)

    monkeypatch.setattr(engine, "make_federated", never)
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="invalid least_samples=1 with num_clients=4"):
        run(Config(**SMOKE), root=root, progress=False)
    assert not root.exists()
