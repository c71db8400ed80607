"""The scorecard: verdict rules, claims judged on real runs, and the committed CSV / docs table
recomputed from the committed runs (verdicts are computed, never typed)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from tinyproto import Config, run
from tinyproto.scorecard import Runs, compare, markdown, scorecard, weakest
from tinyproto.scorecard.claims import claims
from tinyproto.sweep import flatten_round

ROOT = Path(__file__).resolve().parents[1]


def test_compare_rules():
    assert compare([0.80, 0.82, 0.84], [0.70, 0.71, 0.72]) == "holds"
    assert compare([0.70, 0.71, 0.72], [0.80, 0.82, 0.84]) == "does not hold"
    assert compare([0.80, 0.90, 0.70], [0.79, 0.81, 0.80]) == "inconclusive"
    assert compare([0.8], [0.7]) == "not enough seeds"
    assert compare([0.8], [0.7, 0.71]) == "not enough seeds"
    assert compare([], [0.7]) == "not measured"
    assert compare([0.795, 0.805, 0.815], [0.80, 0.81, 0.82], "not_worse") == "holds"
    assert compare([0.60, 0.61, 0.62], [0.80, 0.81, 0.82], "not_worse") == "does not hold"
    with pytest.raises(ValueError, match="invalid kind='worse'"):
        compare([0.8] * 3, [0.7] * 3, "worse")
    assert weakest(["holds", "inconclusive", "not enough seeds"]) == "not enough seeds"
    assert weakest(["holds", "not measured"]) == "not measured"
    # a comparison that does not hold over seeds sinks a claim made of several, missing runs or not
    assert weakest(["holds", "not measured", "does not hold"]) == "does not hold"
    assert weakest(["holds", "not enough seeds", "not measured"]) == "not measured"
    why = "not testable here: B did not finish in any of its 3 runs"
    assert weakest(["holds", why]) == why and weakest(["does not hold", why]) == "does not hold"


def test_an_arm_whose_runs_all_failed_is_not_testable_not_missing():
    """judge: "not measured" only while a run is missing; an arm whose every run failed for a
    reason other than divergence (missing data) makes the comparison "not testable here",
    naming the arm and its failed runs."""
    from tinyproto.scorecard import judge
    from tinyproto.scorecard.rules import Measured

    def m(label, last=(), failed=()):
        out = Measured(label, chance=0.1)
        out.last = dict(enumerate(last))
        out.failed = {s: f"seed {s}: data not found" for s in failed}
        return out

    runs = None  # judge reads the arms only
    assert judge(runs, m("A", [0.99, 0.98]), m("B", failed=[0, 1, 2])) == (
        "not testable here: B did not finish in any of its 3 runs"
    )
    assert judge(runs, m("A", [0.99]), m("C")) == "not measured"  # C: missing, not failed
    assert judge(runs, m("C"), m("B", failed=[0, 1, 2])) == "not measured"
    assert judge(runs, m("A", [0.9, 0.91, 0.92]), m("C", [0.8, 0.81, 0.82])) == "holds"


def test_claims_are_judged_on_the_runs_found(tmp_path):
    """Two real smoke runs: the FP-vs-FedProto row is their comparison, the 10x row their
    measured ratio; rows whose runs are absent say so."""
    kw = dict(profile="smoke", seed=0, save_prototypes=True)
    a = run(Config(algorithm="tinyproto-fp", **kw), root=tmp_path, progress=False)
    b = run(Config(algorithm="fedproto", **kw), root=tmp_path, progress=False)
    rows = {r["claim"]: r for r in claims(Runs("smoke", tmp_path))}
    first = rows["TinyProto-FP > FedProto"]
    assert first["verdict"] == "not enough seeds"  # one seed each
    assert f"TinyProto-FP {100 * a.summary['last_acc']:.2f} (1 seed) (best {100 * a.best_acc:.2f})" in (
        first["ours"]
    )
    assert set(first["runs"].split()) == {a.config.run_id(), b.config.run_id()}
    d, s = a.config.feature_dim, a.config.cps_dim
    comm = next(r for c, r in rows.items() if c.startswith("TinyProto-FP cuts"))
    ratio = b.summary["comm_floats_per_round"] / a.summary["comm_floats_per_round"]
    assert comm["verdict"] == ("holds" if ratio == d / s else "does not hold")
    assert rows["TinyProto-FT > FedTGP"]["verdict"] == "not measured"
    sparse = next(r for c, r in rows.items() if "structurally sparse" in c)
    assert sparse["verdict"] == "not enough seeds" and sparse["runs"] == a.config.run_id()
    assert "holds in " in sparse["ours"] and "of 1 seeds" in sparse["ours"]
    horizon = next(r for c, r in rows.items() if c.startswith("Table 1's accuracy curves"))
    assert "TinyProto-FT: missing" in horizon["ours"]  # 2 of Table 1's 8 algorithms ran
    flats = [flatten_round(r.metrics["test_acc"].to_numpy()) for r in (a, b)]
    for name, flat in zip(("TinyProto-FP", "FedProto"), flats):
        assert (
            f"{name}: {'still rising' if flat is None else f'flat from {flat}'}" in horizon["ours"]
        )
    converged = all(f is not None and f <= 0.8 * a.config.rounds for f in flats)
    expected = "not measured (some runs missing)" if converged else "does not hold"
    assert horizon["verdict"] == expected and flats[1] is None  # 3 rounds < the 5-round window


def test_committed_scorecard_recomputes_from_the_committed_runs():
    committed = pd.read_csv(ROOT / "results" / "scorecard.csv")
    fresh = scorecard()
    pd.testing.assert_frame_equal(
        committed.fillna(""),
        fresh.fillna("").astype(committed.dtypes.to_dict(), errors="ignore"),
        check_dtype=False,
    )
    assert markdown(fresh) in (ROOT / "docs" / "scorecard.md").read_text(), (
        "docs/scorecard.md's table is stale: run `tinyproto scorecard --update-docs`"
    )


def test_order_since_is_the_round_the_final_ordering_began():
    import pandas as pd

    from tinyproto.scorecard.claims import order_since

    rounds = range(1, 9)
    a = pd.Series([0.5, 0.6, 0.5, 0.7, 0.8, 0.8, 0.9, 0.9], index=rounds)
    b = pd.Series([0.6, 0.5, 0.6, 0.6, 0.7, 0.9, 0.8, 0.8], index=rounds)
    assert order_since(a, b) == (7, True)  # A above B at 7 and 8; not above at 6
    assert order_since(b, a) == (7, False)  # the same crossing, seen from B
    assert order_since(a, a - 0.1) == (1, True)  # never crossed
    assert order_since(a, pd.Series([0.1], index=[99])) is None  # no common round
    ties = pd.Series([0.5] * 8, index=rounds)
    assert order_since(ties, ties) == (1, False)  # equal is "not above" throughout


def test_compute_runs_the_missing_runs_claim_major(tmp_path, monkeypatch):
    """`tinyproto scorecard --compute P` hands the missing runs to sweep in the claims' order,
    every seed of a claim's arm together (a verdict needs 3 seeds: an interrupted computation
    leaves the first claims judged, not every row at "not enough seeds" as seed-major did)."""
    import argparse

    import tinyproto.cli.scorecard as sc
    import tinyproto.sweep as sw
    from tinyproto.scorecard import COLUMNS

    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))  # no finished runs: all missing
    handed = []
    monkeypatch.setattr(sw, "sweep", lambda todo, **kw: handed.extend(todo) or pd.DataFrame())
    monkeypatch.setattr(sc, "write", lambda: (pd.DataFrame(columns=list(COLUMNS)), tmp_path))
    args = argparse.Namespace(
        compute="quick", markdown=False, check=False, update_docs=False, retry_failed=False
    )
    assert sc.cmd(args) == 0
    runs = Runs("quick")
    claims(runs)
    missing = runs.missing()
    tuning = [c for c in missing if c.validation > 0]  # the mu grid goes first
    rest = [c for c in missing if c.validation == 0]
    assert [c.run_id() for c in handed] == [c.run_id() for c in tuning + rest]
    assert len({c.run_id() for c in handed}) == len(handed)  # each run once
    handed = handed[len(tuning) :]
    seeds = [c.seed for c in handed]
    n = len(set(seeds))
    assert n >= 3 and seeds != sorted(seeds)  # not seed-major
    # the first claim's first arm: all its seeds first, then the next arm
    first = [dataclasses.replace(c, seed=0) for c in handed[:n]]
    assert seeds[:n] == list(range(n)) and len({c.run_id() for c in first}) == 1
    assert dataclasses.replace(handed[n], seed=0).run_id() != first[0].run_id()


def test_compute_skips_recorded_failures_unless_asked(tmp_path, monkeypatch, capsys):
    """A run recorded as failed (failed.json) is not computed again by --compute (a diverging
    run diverges again), and the skip is said; --retry-failed hands it to sweep."""
    import argparse

    import tinyproto.cli.scorecard as sc
    import tinyproto.sweep as sw
    from tinyproto.scorecard import COLUMNS
    from tinyproto.store import run_dir
    from tinyproto.store.failures import FAILED

    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    handed = []
    monkeypatch.setattr(sw, "sweep", lambda todo, **kw: handed.extend(todo) or pd.DataFrame())
    monkeypatch.setattr(sc, "write", lambda: (pd.DataFrame(columns=list(COLUMNS)), tmp_path))
    runs = Runs("quick")
    claims(runs)
    bad = runs.missing()[0]
    folder = run_dir(bad)
    folder.mkdir(parents=True)
    (folder / FAILED).write_text('{"error": "round 62 of 100: message from client 14: NaN"}')
    for retry in (False, True):
        handed.clear()
        args = argparse.Namespace(
            compute="quick", markdown=False, check=False, update_docs=False, retry_failed=retry
        )
        assert sc.cmd(args) == 0
        ids = {c.run_id() for c in handed}
        assert (bad.run_id() in ids) is retry
        assert len(ids) == len(runs.missing()) - (not retry)
    err = capsys.readouterr().err
    assert f"skipping run {bad.run_id()}, which failed before (round 62 of 100" in err


def test_a_run_that_did_not_finish_is_named_not_missing(tmp_path):
    from tinyproto.scorecard.rules import text as _text
    from tinyproto.store.failures import FAILED, failure

    cfg = Config(algorithm="tinyproto-fp", profile="smoke", seed=0)
    folder = tmp_path / cfg.run_id()
    folder.mkdir()
    (folder / FAILED).write_text('{"error": "message from client 3: NaN"}')
    runs = Runs("smoke", tmp_path)
    rows = {r["claim"]: r for r in claims(runs)}
    first = rows["TinyProto-FP > FedProto"]
    assert "TinyProto-FP: did not finish (seed 0: message from client 3: NaN)" in first["ours"]
    assert "FedProto: missing" in first["ours"] and first["verdict"] == "not measured"
    assert failure(cfg, tmp_path) == "message from client 3: NaN"
    (folder / FAILED).write_text("not json")
    assert failure(cfg, tmp_path) is None  # a damaged record is ignored, not raised
    from tinyproto.scorecard.rules import Measured

    m = Measured("A", last={0: 0.5, 1: 0.7}, best={0: 0.5, 1: 0.7}, failed={2: "seed 2: boom"})
    assert _text(m) == "A 60.00 ± 14.14 (best 60.00) (1 did not finish: seed 2: boom)"
    m = Measured("B", failed={0: "seed 0: boom", 1: "seed 1: bang"})
    assert _text(m) == "B: did not finish (seed 0: boom | seed 1: bang)"  # each failed seed named


def test_the_same_error_of_many_runs_is_said_once():
    """A missing dataset fails every run of a profile alike: one line per distinct error, with
    the number of runs and a few of their ids, not one line per run."""
    from tinyproto.scorecard import did_not_finish

    failed = {f"fedproto-cifar10-{i:010d}": "CIFAR-10 not found at /x" for i in range(69)}
    failed["fedtgp-fmnist-6b4cd446c0"] = "round 98 of 100: message from client 18: NaN"
    lines = did_not_finish(failed)
    assert len(lines) == 2
    assert lines[0] == (
        "scorecard: 69 runs (fedproto-cifar10-0000000000, fedproto-cifar10-0000000001, "
        "fedproto-cifar10-0000000002 and 66 more) did not finish: CIFAR-10 not found at /x"
    )
    assert lines[1] == (
        "scorecard: run fedtgp-fmnist-6b4cd446c0 did not finish: "
        "round 98 of 100: message from client 18: NaN"
    )
    assert did_not_finish({}) == []


def test_a_damaged_run_is_named_in_the_row_the_csv_and_the_output(tmp_path, capsys, monkeypatch):
    """Regression: a finished run whose metrics.csv was edited (or summary.json truncated) was
    dropped silently, "holds" quietly becoming "holds (1 seed)". It is never judged, and is
    named with why in the row's text, the CSV's skipped column and `tinyproto scorecard`."""
    import argparse

    import tinyproto.cli.scorecard as cli_sc
    from tinyproto.scorecard import render

    probe = Runs("smoke", tmp_path)
    claims(probe)
    cfg = next(c for c in probe.wanted.values() if c.algorithm == "fedproto" and c.seed == 0)
    good = run(cfg, root=tmp_path, progress=False)  # a run the first claim judges
    runs = Runs("smoke", tmp_path)
    rows = claims(runs)
    assert runs.damaged == {} and all(r["skipped"] == "" for r in rows)
    m = pd.read_csv(good.run_dir / "metrics.csv")
    m.loc[0, "test_acc"] = 0.999  # disagrees with summary.json now
    m.to_csv(good.run_dir / "metrics.csv", index=False)
    runs = Runs("smoke", tmp_path)
    rows = [r for r in claims(runs) if cfg.run_id() in r["skipped"]]
    assert rows and all("skipped 1 damaged run(s)" in r["ours"] for r in rows)
    assert "summary.json" in runs.damaged[cfg.run_id()]
    assert all(cfg.run_id() not in r["runs"].split() for r in rows)  # never judged
    (good.run_dir / "summary.json").write_text('{"run_id": ')  # truncated
    monkeypatch.setattr(render, "Runs", lambda p, root=None: Runs(p, tmp_path))
    df, path = render.write(tmp_path / "card.csv", profiles=("smoke",))
    assert cfg.run_id() in " ".join(pd.read_csv(path)["skipped"].fillna(""))
    monkeypatch.setattr(cli_sc, "write", lambda: (df, path))
    args = argparse.Namespace(
        compute=None, update_docs=False, check=False, markdown=False, retry_failed=False
    )
    assert cli_sc.cmd(args) == 0
    assert f"skipped damaged run smoke {cfg.run_id()}" in capsys.readouterr().err
    # a finished run's file deleted: named too, never read as "not computed yet"
    for gone in ("metrics.csv", "summary.json"):
        good = run(cfg, root=tmp_path, restart=True, progress=False)
        (good.run_dir / gone).unlink()
        runs = Runs("smoke", tmp_path)
        rows = [r for r in claims(runs) if cfg.run_id() in r["skipped"]]
        assert rows and f"{gone} missing" in runs.damaged[cfg.run_id()]


def test_the_side_by_side_table_is_the_rows_verdicts_and_counts_them():
    """docs/scorecard.md opens with one line per claim and one column per profile; each cell is
    that (claim, profile) row's verdict (its words before any colon) and the tally counts them."""
    from tinyproto.scorecard.render import glance

    df = pd.DataFrame(
        {
            "claim": ["A", "A", "B", "B", "C"],
            "profile": ["quick", "hard", "quick", "hard", "hard"],
            "verdict": [
                "holds",
                "not enough seeds",
                "does not hold",
                "not testable here: no GPU",
                "holds",
            ],
        }
    )
    lines = glance(df)
    assert lines[0] == "| claim | quick | hard |"
    assert lines[2] == "| A | holds | not enough seeds |"
    assert lines[3] == "| B | does not hold | not testable |"
    assert lines[4] == "| C | - | holds |"  # no quick row for C
    tally = lines[lines.index("| verdicts | quick | hard |") + 2 :]
    assert tally[0] == "| holds | 1 | 1 |" and tally[1] == "| does not hold | 1 | 0 |"
    assert "| not testable | 0 | 1 |" in tally and "| not enough seeds | 0 | 1 |" in tally
    assert "\n".join(lines) in markdown(df.assign(source="", paper="", ours="", seeds=0, rounds=0))


def test_the_privacy_row_is_the_count_attacks_verdict(tmp_path, monkeypatch):
    """"APS hides the class counts" is judged from results/privacy/count_attack.csv (the
    attack's rows for this profile, last round): recovered in every seed -> does not hold, in
    none -> holds, mixed -> inconclusive, < 3 seeds -> not enough seeds; rows naming runs this
    profile does not have finished -> not measured."""
    from tinyproto.scorecard.claims import _privacy_row

    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    runs_root = tmp_path / "runs"
    cfg = Config("tinyproto-fp", profile="smoke", dataset="synthetic", rounds=1)
    ids = []
    for seed in (0, 1, 2):
        c = cfg.replace(seed=seed)
        run(c, root=runs_root, progress=False)
        ids.append(c.run_id())
    (tmp_path / "privacy").mkdir()

    def verdict(attack_by_seed, seeds=(0, 1, 2), names=ids):
        rows = [
            dict(profile="smoke", round=r, seed=s, client=c, algorithm="tinyproto-fp",
                 tvd_attack=attack_by_seed[s] if r == 2 else 0.9, tvd_presence=0.5,
                 tvd_blind=0.8, spearman=0.9, run_id=names[s])
            for r in (1, 2) for s in seeds for c in (0, 1)
        ]  # fmt: skip
        pd.DataFrame(rows).to_csv(tmp_path / "privacy" / "count_attack.csv", index=False)
        return _privacy_row(Runs("smoke", runs_root))

    row = verdict({0: 0.05, 1: 0.1, 2: 0.2})  # judged at the last round (2), not round 1
    assert row["verdict"] == "does not hold" and row["seeds"] == 3
    assert row["runs"].split() == sorted(ids) and "0.10, 0.20, 0.40" in row["ours"]
    assert verdict({0: 0.3, 1: 0.4, 2: 0.45})["verdict"] == "holds"
    assert verdict({0: 0.05, 1: 0.4, 2: 0.45})["verdict"] == "inconclusive"
    assert verdict({0: 0.05, 1: 0.1}, seeds=(0, 1))["verdict"] == "not enough seeds"
    row = verdict({0: 0.05, 1: 0.1, 2: 0.2}, names=[*ids[:2], "tinyproto-fp-synthetic-0"])
    assert row["verdict"] == "not measured" and "tinyproto-fp-synthetic-0" in row["ours"]
    (runs_root / ids[2] / "metrics.csv").write_text("round,test_acc\n1,7\n")  # edited: damaged
    row = verdict({0: 0.05, 1: 0.1, 2: 0.2})
    assert row["verdict"] == "not measured" and ids[2] in row["ours"]
    assert "skipped 1 damaged run(s)" in row["ours"]  # named, never judged
    (tmp_path / "privacy" / "count_attack.csv").unlink()
    assert _privacy_row(Runs("smoke", runs_root))["verdict"] == "not measured"


def test_a_run_refused_for_values_past_the_bound_counts_as_diverged(tmp_path):
    """A client whose prototypes blew up past the server's overflow bound (finite, but about to
    turn inf) diverged as surely as one that sent NaN: its seed counts at chance, it is not a
    "did not finish" that silently drops the seed (hard, alpha 0.01, TinyProto-FT seed 1)."""
    import torch

    from tinyproto.comm import MessageError
    from tinyproto.comm.checks import Bound, check_values
    from tinyproto.store.failures import FAILED, diverged

    refusals = []
    for value in (float("nan"), 9.14e23):
        with pytest.raises(MessageError) as e:
            check_values({"protos": torch.tensor([value])}, "client 16", Bound(2.92e19, "why"))
        refusals.append(str(e.value))
    assert all(diverged(r) for r in refusals), refusals  # the words check_values really writes
    assert not diverged("data not found: /nowhere/train-images-idx3-ubyte.gz")

    runs_dir = tmp_path
    for seed, line in enumerate(refusals + refusals[:1]):
        cfg = Config(algorithm="tinyproto-fp", profile="smoke", seed=seed)
        (runs_dir / cfg.run_id()).mkdir()
        (runs_dir / cfg.run_id() / FAILED).write_text(json.dumps({"error": line}))
    rows = {r["claim"]: r for r in claims(Runs("smoke", runs_dir))}
    ours = rows["TinyProto-FP > FedProto"]["ours"]
    assert ours.startswith("TinyProto-FP: diverged in 3 of 3 seeds, counted at chance 10 %"), ours
    horizon = next(r for c, r in rows.items() if c.startswith("Table 1's accuracy curves"))
    assert "TinyProto-FP: diverged in 3 of 3 seeds, no curve" in horizon["ours"]  # not "missing"
    assert "FedProto: missing" in horizon["ours"]


def test_the_variants_disagreements_are_listed():
    """A claim that holds for one of TinyProto's variants and not another says so: the table
    lists each (claim, profile) whose judged variants differ, and only those."""
    from tinyproto.scorecard.render import variant_disagreements

    code = " (authors' code: no regulariser)"
    rows = [
        ("TinyProto-FT > FedTGP", "hard", "holds"),
        ("TinyProto-FT (mu tuned) > FedTGP", "hard", "holds"),
        (f"TinyProto-FT{code} > FedTGP", "hard", "does not hold"),
        ("TinyProto-FT > FedTGP", "long", "holds"),  # the others not measured: no disagreement
        ("TinyProto-FT (mu tuned) > FedTGP", "long", "not measured"),
        (f"TinyProto-FT{code} > FedTGP", "long", "not measured"),
        ("TinyProto-FP > FedProto", "hard", "does not hold"),  # agreement: not listed
        (f"TinyProto-FP{code} > FedProto", "hard", "does not hold"),
        ("Federation matters", "hard", "holds"),  # no variants
    ]
    df = pd.DataFrame(rows, columns=["claim", "profile", "verdict"])
    lines = variant_disagreements(df)
    body = [line for line in lines if line.startswith("| TinyProto") or line.startswith("| Fed")]
    assert body == ["| TinyProto-FT > FedTGP | hard | holds | holds | does not hold |"]
    same = df[df.claim.str.startswith("TinyProto-FP")]
    assert variant_disagreements(same)[-1].startswith("none:")
