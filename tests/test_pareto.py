"""Compression at equal bytes (tinyproto.scorecard.pareto, notebook 10_codecs): the Pareto front,
the paired 95 % interval, the verdicts at equal or fewer bytes and the 0.05x budget, on
synthetic tables whose answers are known."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from tinyproto.scorecard import pareto


def rows(cells: dict) -> pd.DataFrame:
    """{(algorithm, payload): (bytes, [last acc per seed 0, 1, ...])} -> the tidy runs table."""
    out = []
    for (alg, pay), (nbytes, accs) in cells.items():
        for seed, acc in enumerate(accs):
            out.append(
                dict(
                    algorithm=alg,
                    payload=pay,
                    seed=seed,
                    last_acc=acc,
                    best_acc=acc + 0.01,
                    bytes_per_round=nbytes,
                )
            )
    return pd.DataFrame(out)


def test_t_quantiles_are_the_975th_percentiles_and_conservative_between_entries():
    assert pareto.t975(2) == 4.303 and pareto.t975(1) == 12.706
    assert pareto.t975(11) == pareto.t975(10)  # 11 is not tabulated: the wider df 10
    assert pareto.t975(500) == pareto.T975[30]
    with pytest.raises(ValueError, match="at least 1"):
        pareto.t975(0)


def test_paired_interval_is_the_student_t_interval_of_the_differences():
    mean, lo, hi, n = pareto.paired_ci(
        {0: 0.03, 1: 0.04, 2: 0.05, 7: 1.0}, {0: 0.02, 1: 0.02, 2: 0.02}
    )
    assert n == 3  # seed 7: only one side ran it
    assert mean == pytest.approx(0.02)
    half = 4.303 * 0.01 / math.sqrt(3)  # sd of (0.01, 0.02, 0.03) is 0.01
    assert (lo, hi) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert pareto.paired_ci({0: 1.0}, {1: 1.0})[3] == 0
    assert pareto.paired_ci({0: 0.5}, {0: 0.4})[1:3] == (-math.inf, math.inf)


def test_front_keeps_only_undominated_cells():
    front = pareto.on_front(
        [100, 50, 200, 50, float("nan"), 300], [0.9, 0.9, 0.95, 0.8, 0.99, 0.95]
    )
    # 100 bytes / 0.9 is dominated by 50 / 0.9 (fewer bytes, same accuracy); 50 / 0.8 by 50 / 0.9;
    # 300 / 0.95 by 200 / 0.95; an unknown cost is never on the front
    assert front == [False, True, True, False, False, False]


def test_table_counts_seeds_and_takes_bytes_from_the_runs_that_finished():
    df = rows(
        {("fedproto", "fp32"): (1000, [0.80, 0.82, 0.84]), ("tinyproto-fp", "fp32"): (100, [0.81])}
    )
    df.loc[2, ["diverged", "bytes_per_round"]] = [True, float("nan")]
    t = pareto.pareto_table(df).set_index(["algorithm", "payload"])
    fp = t.loc[("fedproto", "fp32")]
    assert fp.n_seeds == 3 and fp.n_diverged == 1 and fp.bytes_per_round == 1000
    assert fp.last_acc_mean == pytest.approx(82.0) and fp.last_acc_std == pytest.approx(2.0)
    assert fp.last_acc_text == "82.00 ± 2.00" and fp.seeds == "0,1,2"
    assert t.loc[("tinyproto-fp", "fp32")].last_acc_text == "81.00 (n=1)"
    assert bool(t.loc[("tinyproto-fp", "fp32")].pareto) and bool(fp.pareto)


def test_table_refuses_duplicates_and_missing_columns():
    df = rows({("fedproto", "fp32"): (1000, [0.8, 0.8])})
    with pytest.raises(ValueError, match="two rows for fedproto fp32 seed 0"):
        pareto.pareto_table(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="lacks column.*bytes_per_round"):
        pareto.pareto_table(df.drop(columns="bytes_per_round"))


def _pairs(cells):
    df = rows(cells)
    table = pareto.pareto_table(df)
    pairs = pareto.equal_bytes(df)
    return table, pairs, pareto.overall(pairs, table)


def test_only_baseline_codecs_of_equal_or_fewer_bytes_are_compared():
    table, pairs, summary = _pairs(
        {
            ("fedproto", "fp32"): (2000, [0.99, 0.99, 0.99]),  # more bytes: never compared
            ("fedproto", "topk:33"): (198, [0.80, 0.81, 0.82]),
            ("fedproto", "int8"): (200, [0.70, 0.70, 0.71]),  # equal bytes: compared
            ("tinyproto-fp", "fp32"): (200, [0.90, 0.91, 0.92]),
        }
    )
    assert list(pairs["baseline_payload"]) == ["topk:33", "int8"]
    top = pairs.iloc[0]
    assert top.diff_points == pytest.approx(10.0) and top.ci_low == pytest.approx(10.0)
    assert list(pairs["verdict"]) == ["better", "better"]
    assert summary.iloc[0].verdict == "beats" and summary.iloc[0].baseline_cells == 2


def test_an_interval_that_holds_zero_is_undecided_and_a_loss_sinks_the_claim():
    _, pairs, summary = _pairs(
        {
            ("fedproto", "int4"): (100, [0.80, 0.80, 0.80]),
            ("fedproto", "topk:8"): (50, [0.90, 0.80, 0.86]),  # fp16 - topk:8: -5 points each seed
            ("tinyproto-fp", "fp16"): (120, [0.85, 0.75, 0.81]),  # vs int4: +5, -5, +1 points
            ("tinyproto-fp", "int8"): (60, [0.95, 0.75, 0.81]),
        }
    )
    by = pairs.set_index(["challenger_payload", "baseline_payload"])["verdict"]
    assert by[("fp16", "int4")] == "undecided"
    assert by[("fp16", "topk:8")] == "worse"
    s = summary.set_index("challenger_payload")
    assert s.loc["fp16", "verdict"] == "does not beat" and "topk:8" in s.loc["fp16", "detail"]
    # int8: only topk:8 (50 bytes) is that small; +5, -5, -5 points: undecided
    assert by[("int8", "topk:8")] == "undecided" and s.loc["int8", "verdict"] == "undecided"


def test_too_few_seeds_and_no_small_baseline_are_said_so():
    _, pairs, summary = _pairs(
        {
            ("fedproto", "fp32"): (2000, [0.5, 0.5]),
            ("fedproto", "int8"): (500, [0.5, 0.5]),
            ("tinyproto-fp", "fp32"): (600, [0.9, 0.9]),
            ("tinyproto-fp", "int4"): (100, [0.9, 0.9]),
        }
    )
    assert list(pairs["verdict"]) == ["not enough seeds"]  # 2 seeds < MIN_SEEDS = 3
    s = summary.set_index("challenger_payload")["verdict"]
    assert s["fp32"] == "not enough seeds"
    assert s["int4"] == "no baseline cell at <= its bytes"


def test_best_under_budget_takes_the_most_accurate_cell_within_the_bytes():
    table = pareto.pareto_table(
        rows(
            {
                ("fedproto", "fp32"): (1000, [0.99]),
                ("fedproto", "topk:8"): (50, [0.80]),  # exactly at 0.05 x 1000: within
                ("tinyproto-fp", "int4"): (40, [0.85]),
                ("tinyproto-fp", "fp32"): (60, [0.95]),  # more accurate, but over the budget
            }
        )
    )
    best = pareto.best_under_budget(table)
    assert (best["algorithm"], best["payload"]) == ("tinyproto-fp", "int4")
    assert (
        best["budget"] == 50
        and best["candidates"] == 2
        and best["last_acc_mean"] == pytest.approx(85.0)
    )
    assert pareto.best_under_budget(table, fraction=0.01) is None
    tie = pareto.pareto_table(
        rows(
            {
                ("fedproto", "fp32"): (1000, [0.9]),
                ("a", "fp32"): (30, [0.8]),
                ("a", "int8"): (20, [0.8]),
            }
        )
    )
    assert pareto.best_under_budget(tie)["payload"] == "int8"  # equal accuracy: fewer bytes
    with pytest.raises(ValueError, match="no reference cell fedproto fp16"):
        pareto.best_under_budget(table, reference=("fedproto", "fp16"))


# -- the committed quick-profile tables and the prose that quotes them --------------------------

ROOT = Path(__file__).resolve().parents[1]
CSVS = ("codecs_pareto.csv", "codecs_equal_bytes.csv", "codecs_verdict.csv")


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n") + len(heading) + 1
    end = re.search(r"^#{1,2} ", text[start:], re.MULTILINE)
    return text[start : start + end.start()] if end else text[start:]


def test_committed_tables_agree_with_the_rules():
    """results/[<profile>/]codecs_*.csv (notebook 10_codecs, every profile it ran on) are what
    the module computes from the committed table: the front, the pairs' byte condition, the verdicts from the intervals."""
    folders = [ROOT / "results"] + sorted(p.parent for p in (ROOT / "results").glob("*/" + CSVS[0]))
    for folder in folders:  # quick's, then every other profile's that notebook 10 wrote
        profile = "quick" if folder == ROOT / "results" else folder.name
        table = pd.read_csv(folder / "codecs_pareto.csv")
        pairs = pd.read_csv(folder / "codecs_equal_bytes.csv")
        assert set(table["profile"]) == {profile} and (table["n_seeds"] >= 1).all()
        assert list(table["pareto"]) == pareto.on_front(
            table["bytes_per_round"], table["last_acc_mean"]
        )
        assert (pairs["baseline_bytes"] <= pairs["challenger_bytes"]).all()
        for p in pairs.itertuples():
            lo, hi = p.ci_low / 100, p.ci_high / 100
            assert p.verdict == pareto.judge(p.diff_points / 100, lo, hi, p.n_common_seeds)


def test_scorecard_doc_quotes_the_committed_codec_tables():
    """Every number of docs/scorecard.md's "Compression at equal bytes" section is in the
    committed codec tables (a mean ± std, a difference in points, an interval's end, bytes)."""
    text = " ".join(
        _section(
            (ROOT / "docs" / "scorecard.md").read_text(), "## Compression at equal bytes"
        ).split()
    )
    assert "quick" in text and "10_codecs" in text
    # every profile's tables (results/ for quick, results/<profile>/ for the others)
    paths = [ROOT / "results" / name for name in CSVS]
    paths += sorted(p for name in CSVS for p in (ROOT / "results").glob(f"*/{name}"))
    frames = [pd.read_csv(p) for p in paths]
    committed = "".join(p.read_text() for p in paths)
    values = [v for df in frames for c in df.select_dtypes("number") for v in df[c].dropna()]
    numbers = {f"{v:{fmt}}" for v in values for fmt in (".2f", "+.2f", ".0f", ".3f")}
    pairs = re.findall(r"\d+\.\d+ ± \d+\.\d+", text)
    assert pairs
    for pair in pairs:
        assert pair in committed, f"the section quotes {pair!r}, not in the codec tables"
    rest = re.sub(r"\d+\.\d+ ± \d+\.\d+", "", text)
    for number in re.findall(r"[+-]?\d+\.\d+|\b\d{4,}\b", rest.replace("0.05x", "")):
        assert number in numbers or number in committed, (
            f"the section quotes {number!r}, not in the tables"
        )


def test_the_docs_codec_tables_are_generated_from_the_committed_csvs(tmp_path, monkeypatch):
    """docs/scorecard.md's codec tables are pareto.markdown of the committed CSVs (what
    `tinyproto scorecard --update-docs` writes, `--check` compares); a profile without the
    notebook's tables is named as not computed, and one with them gets its own table."""
    from tinyproto.scorecard.render import codecs_block

    doc = (ROOT / "docs" / "scorecard.md").read_text()
    assert codecs_block() in doc, "run `tinyproto scorecard --update-docs`"
    # a results root with quick's tables copied as another profile's
    monkeypatch.setenv("TINYPROTO_RESULTS", str(tmp_path))
    (tmp_path / "hard").mkdir()
    for name in CSVS:
        df = pd.read_csv(ROOT / "results" / name).assign(profile="hard")
        df.to_csv(tmp_path / "hard" / name, index=False)
    text = pareto.markdown(["quick", "hard"])
    assert "**hard profile**" in text and "`results/hard/codecs_pareto.csv`" in text
    assert "**quick profile**" not in text and "Not computed yet: quick" in text
    table = pd.read_csv(ROOT / "results" / "codecs_pareto.csv")
    for r in table.itertuples():  # every cell, with its numbers
        assert f" | {r.payload} | {r.bytes_per_round:.0f} | " in text and r.last_acc_text in text
    verdicts = pd.read_csv(ROOT / "results" / "codecs_verdict.csv")
    assert text.count("codecs of equal or fewer bytes") == (verdicts.challenger != "(any cell)").sum()
