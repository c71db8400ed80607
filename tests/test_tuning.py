"""mu's grid search (tinyproto.scorecard.tuning): on validation runs only, the best last-round
validation accuracy wins, ties go to the rule, an edge winner extends the grid, a diverged run
counts at chance, and a run evaluated on the test split is refused."""

from __future__ import annotations

import json

import pytest

from tinyproto import Config
from tinyproto.config import ConfigError
from tinyproto.runtime.setup import setup
from tinyproto.scorecard import tuning
from tinyproto.store.failures import FAILED


class FakeRuns:
    """Finished runs by mu (a validation accuracy each); anything else is missing."""

    def __init__(self, root, acc_by_multiple, rule, evaluated_on="validation"):
        self.root = root
        self.asked = []
        self.acc = {float(f"{k * rule:.3g}"): a for k, a in acc_by_multiple.items()}
        self.evaluated_on = evaluated_on

    def get(self, cfg):
        self.asked.append(cfg)
        assert cfg.validation == tuning.VALIDATION  # never a test-split run
        a = self.acc.get(cfg.mu)
        if a is None or a == "diverged":
            return None
        return {"last_acc": a, "evaluated_on": self.evaluated_on}


@pytest.fixture
def cfg():
    return Config("tinyproto-fp", profile="smoke", dataset="synthetic", num_classes=4)


def test_the_best_validation_accuracy_wins_and_ties_go_to_the_rule(cfg, tmp_path):
    rule = tuning.rule_mu(cfg)
    assert rule == setup(cfg, clients=[]).ctx.mu  # what a run of cfg uses
    assert tuning.rule_mu(cfg.replace(mu=0.5, validation=0.2)) == rule  # whatever the arm sets
    runs = FakeRuns(tmp_path, {0.1: 0.5, 0.3: 0.7, 1.0: 0.6, 3.0: 0.55, 10.0: 0.4}, rule)
    t = tuning.tune(runs, cfg)
    assert t.mu == float(f"{0.3 * rule:.3g}") and t.rule == rule
    runs = FakeRuns(tmp_path, {0.1: 0.5, 0.3: 0.7, 1.0: 0.7, 3.0: 0.7, 10.0: 0.4}, rule)
    assert tuning.tune(runs, cfg).mu == float(f"{rule:.3g}")  # a tie: the rule's value
    assert "chosen" in tuning.tune(runs, cfg).text()


def test_an_edge_winner_extends_the_grid(cfg, tmp_path):
    rule = tuning.rule_mu(cfg)
    acc = {0.1: 0.5, 0.3: 0.55, 1.0: 0.6, 3.0: 0.65, 10.0: 0.7}
    runs = FakeRuns(tmp_path, acc, rule)
    t = tuning.tune(runs, cfg)
    assert t.mu is None and t.missing == 1  # 31.6x is asked for, not there yet
    nxt = float(f"{10 * tuning.STEP:.3g}")
    assert runs.asked[-1].mu == float(f"{nxt * rule:.3g}")
    acc[nxt] = 0.68  # below 10x: bracketed
    t = tuning.tune(FakeRuns(tmp_path, acc, rule), cfg)
    assert t.mu == float(f"{10 * rule:.3g}") and len(t.table) == 6
    # it stops after MAX_EXTEND points even if the edge keeps winning
    grow = dict(acc)
    k = 10.0
    for i in range(tuning.MAX_EXTEND):
        k = float(f"{k * tuning.STEP:.3g}")
        grow[k] = 0.8 + i / 100
    t = tuning.tune(FakeRuns(tmp_path, grow, rule), cfg)
    assert len(t.table) == len(tuning.MU_GRID) + tuning.MAX_EXTEND and t.mu == float(
        f"{k * rule:.3g}"
    )


def test_a_diverged_grid_run_counts_at_chance_and_test_runs_are_refused(cfg, tmp_path):
    rule = tuning.rule_mu(cfg)
    acc = {0.1: 0.5, 0.3: 0.6, 1.0: 0.55, 3.0: 0.2, 10.0: "diverged"}
    runs = FakeRuns(tmp_path, acc, rule)
    for k, _mu, configs in tuning.grid(cfg):
        if acc[k] == "diverged":
            folder = tmp_path / configs[0].run_id()
            folder.mkdir()
            (folder / FAILED).write_text(
                json.dumps(
                    {
                        "error": "round 3 of 3: message from client 1: field 'protos' holds NaN or inf values"
                    }
                )
            )
    t = tuning.tune(runs, cfg)
    assert t.table[-1] == (float(f"{10 * rule:.3g}"), 0.25, 1)  # chance: 1/4 classes
    assert t.mu == float(f"{0.3 * rule:.3g}")
    bad = FakeRuns(tmp_path, {0.1: 0.5}, rule, evaluated_on="test")
    with pytest.raises(ConfigError, match="was not evaluated on validation"):
        tuning.tune(bad, cfg)


def test_a_grid_that_chooses_the_default_reuses_the_default_runs(monkeypatch, tmp_path):
    """When the grid search picks the default mu, the tuned arm is the default arm's config
    (its runs are reused, not computed again under an explicit mu)."""
    from tinyproto.scorecard import Runs
    from tinyproto.scorecard import claims as cl

    # (chosen on validation, carried to the whole split): FP lands on its default; FT on 3x
    picks = {"tinyproto-fp": (0.00187, 0.0015), "tinyproto-ft": (0.0375, 0.03)}
    rules = {"tinyproto-fp": 0.0015, "tinyproto-ft": 0.01}
    monkeypatch.setattr(
        tuning,
        "tune",
        lambda runs, cfg: tuning.Tuned(
            rules[cfg.algorithm], picks[cfg.algorithm][0], [], 0, [], picks[cfg.algorithm][1]
        ),
    )
    _, (label, fp, ft, said) = cl._tuned(Runs("hard", tmp_path))
    assert label == "mu tuned"
    assert fp.overrides == () and fp.config("hard", 0) == cl.FP.config("hard", 0)
    assert ft.overrides == (("mu", 0.03),)  # the carried-over value, not the validation one
    assert said == (
        "TinyProto-FP mu 0.0015 (chosen 0.00187 on validation; default 0.0015); "
        "TinyProto-FT mu 0.03 (chosen 0.0375 on validation; default 0.01)"
    )


def test_the_chosen_mu_keeps_mu_times_samples_per_class_on_the_whole_split(cfg, tmp_path):
    """The grid runs train on 80 % of each client's data; APS's global prototype is a sum of
    count-scaled prototypes, so the tuned arm (whole training split) keeps mu x n, not mu: the
    old rule (the validation split's mu unchanged) gives a target 1/0.8 times larger."""
    full = tuning._train_per_class(cfg)
    val = tuning._train_per_class(cfg.replace(validation=tuning.VALIDATION))
    assert 0.75 < val / full < 0.85  # a fifth of each client's training split held out
    rule = tuning.rule_mu(cfg)
    runs = FakeRuns(tmp_path, {0.1: 0.5, 0.3: 0.7, 1.0: 0.6, 3.0: 0.55, 10.0: 0.4}, rule)
    t = tuning.tune(runs, cfg)
    assert t.mu == float(f"{0.3 * rule:.3g}")
    assert t.trains_with == float(f"{t.mu * val / full:.3g}") != t.mu
    assert t.trains_with * full == pytest.approx(t.mu * val, rel=5e-3)
    assert f"{t.trains_with:g} on the whole training split" in t.text()
    assert tuning.Tuned(rule, None, [], 1, []).trains_with is None  # nothing chosen yet


def test_the_rule_reads_the_partition_a_run_would_use(tmp_path):
    """rule_mu agrees with runtime.setup on every profile that needs the rule, including one
    whose data is all of a data set (max_samples=0, which a bare None would turn back into the
    profile's preset), and returns the paper's constant without reading data."""
    for cfg in (
        Config("tinyproto-ft", profile="smoke", seed=1),
        Config("tinyproto-fp", profile="smoke", dataset="synthetic", max_samples=0),
    ):
        assert tuning.rule_mu(cfg) == setup(cfg, clients=[]).ctx.mu
    paper = Config("tinyproto-fp", profile="paper", data_dir=str(tmp_path / "nowhere"))
    assert tuning.rule_mu(paper) == 1.5e-4  # no CIFAR-10 here: nothing was read
