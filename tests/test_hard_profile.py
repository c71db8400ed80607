"""The hard profile (issue 23): its presets, its partition that follows the seed, and that
adding it left every other profile's run ids (and so every committed run) unchanged."""

from __future__ import annotations

from pathlib import Path

from tinyproto import Config
from tinyproto.config import PROFILE_DEFAULTS, config_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_hard_profile_presets_and_partition_per_seed():
    cfg = Config("fedproto", profile="hard", seed=2)
    assert (cfg.alpha, cfg.num_clients, cfg.max_samples, cfg.local_epochs, cfg.rounds, cfg.lr) == (
        10.0,
        20,
        6000,
        5,
        100,
        0.05,
    )
    assert cfg.partition_seed == 2  # each seed draws its own partition
    assert Config("fedproto", profile="hard", seed=0).partition_seed == 0
    assert Config("fedproto", profile="hard", seed=2, partition_seed=1).partition_seed == 1
    # the config.json round trip keeps the resolved partition seed
    assert config_from_dict(cfg.to_dict()) == cfg
    for p in ("smoke", "quick", "long", "paper"):
        c = Config("fedproto", profile=p, seed=2)
        assert (c.partition_seed, c.local_epochs, c.lr) == (1, 1, 0.01)
        assert PROFILE_DEFAULTS[p]["partition_seed"] == 1


def test_other_profiles_run_ids_are_unchanged():
    """Every committed quick and long run folder is still found under its config's run id."""
    import json

    for root in (ROOT / "results" / "runs", ROOT / "results" / "long" / "runs"):
        folders = sorted(p for p in root.iterdir() if (p / "config.json").is_file())
        assert folders
        for folder in folders[:40]:
            cfg = config_from_dict(json.loads((folder / "config.json").read_text()))
            assert cfg.run_id() == folder.name


def test_the_scorecards_long_runs_are_found_from_default_configs():
    """Built from defaults (no explicit partition_seed / local_epochs), the long profile's
    Table 1 configs still name the committed run folders."""
    from tinyproto.scorecard import ALL_FEDERATED

    root = ROOT / "results" / "long" / "runs"
    for algorithm in (*ALL_FEDERATED, "tinyproto-ft", "local"):
        for seed in (0, 1, 2):
            rid = Config(algorithm, profile="long", seed=seed).run_id()
            assert (root / rid / "summary.json").is_file(), rid


def test_replace_keeps_every_sample():
    """Regression: Config.replace turned max_samples=0 (every sample) back into the profile's
    preset (smoke: 600), so a tuning grid built by replace trained on other data."""
    cfg = Config("tinyproto-fp", profile="smoke", dataset="synthetic", max_samples=0)
    assert cfg.max_samples is None
    assert cfg.replace(mu=0.5).max_samples is None
    assert (
        cfg.replace(mu=0.5).run_id()
        == Config(
            "tinyproto-fp", profile="smoke", dataset="synthetic", max_samples=0, mu=0.5
        ).run_id()
    )
    assert Config("fedproto", profile="smoke").replace(seed=1).max_samples == 600
