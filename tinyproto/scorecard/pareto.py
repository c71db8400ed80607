"""Compression at equal bytes (issue 24): accuracy vs bytes per round of every method and payload
codec, the Pareto front, and whether TinyProto beats FedProto with a codec of equal or fewer
bytes. Nothing here runs anything: every function reads a tidy table of finished runs, one row
per (algorithm, payload, seed) with columns

    algorithm, payload, seed, last_acc, best_acc, bytes_per_round[, diverged]

(accuracies as fractions; ``bytes_per_round``: both directions, all clients, as measured from the
messages, the summary's ``comm_bytes_per_round``; ``diverged``: the run ended with NaN/inf and
its ``last_acc`` is chance, 1/K, as the scorecard counts it).

Rules (stated once, applied to every cell; the notebook ``10_codecs`` prints them):
- Accuracy is the **last round's** (the best round is chosen on the test set: shown, not judged).
- A cell is one (algorithm, payload); its bytes per round are the mean over its finished seeds.
- Pareto front: a cell is on it when no other cell has fewer or equal bytes and a higher or
  equal mean accuracy, one of the two strictly.
- Equal-or-fewer bytes: each challenger cell (TinyProto-FP with a codec) is compared with every
  baseline cell (FedProto with a codec) whose bytes per round are at most the challenger's.
  Differences are **paired by seed** (the seeds both cells ran), with a two-sided
  ``CONFIDENCE`` = 95 % Student-t interval for the mean difference. The challenger is better if
  the interval lies above 0, worse if below 0, otherwise "undecided"; fewer than ``MIN_SEEDS``
  common seeds: "not enough seeds".
- A challenger cell "beats FedProto at equal or fewer bytes" when it is better than every such
  baseline cell; "does not" when it is worse than at least one; else undecided (or no baseline
  cell is that small).
- Budget: the best mean accuracy among the cells with bytes per round at most ``fraction`` (0.05)
  times the reference cell's (FedProto fp32), and which cell reaches it (of equal accuracies, the
  one with fewer bytes).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.scorecard.rules import MIN_SEEDS

CONFIDENCE = 0.95  # two-sided
# Student-t 97.5th percentiles (the upper end of a two-sided 95 % interval), by degrees of freedom
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}
BETTER, WORSE, UNDECIDED, NOT_ENOUGH = "better", "worse", "undecided", "not enough seeds"
BEATS, DOES_NOT, NONE_SMALLER = "beats", "does not beat", "no baseline cell at <= its bytes"
REQUIRED = ("algorithm", "payload", "seed", "last_acc", "best_acc", "bytes_per_round")


def t975(df: int) -> float:
    """The t quantile for ``df`` degrees of freedom (the next smaller tabulated df: wider)."""
    if df < 1:
        raise ValueError(f"invalid df={df}: at least 1")
    return T975[max(k for k in T975 if k <= df)]


def paired_ci(a: dict, b: dict) -> tuple[float, float, float, int]:
    """(mean D, lo, hi, n): the 95 % t interval of a[s] - b[s] over the seeds both have
    (rules.paired_interval with the 97.5 % quantile)."""
    from tinyproto.scorecard.rules import paired_interval

    return paired_interval(a, b, quantile=t975)


def _check(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"the runs table lacks column(s) {', '.join(missing)}")
    rows = rows.copy()
    if "diverged" not in rows.columns:
        rows["diverged"] = False
    rows["diverged"] = rows["diverged"].fillna(False).astype(bool)
    dup = rows.duplicated(["algorithm", "payload", "seed"])
    if dup.any():
        r = rows[dup].iloc[0]
        raise ValueError(f"two rows for {r.algorithm} {r.payload} seed {r.seed}")
    return rows


def pareto_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (algorithm, payload), in the order first seen: bytes per round, the number of
    seeds (and of diverged ones), last and best accuracy mean and std over seeds (in %), their
    "mean ± std" texts, and whether the cell is on the Pareto front."""
    rows = _check(rows)
    out = []
    for (alg, pay), g in rows.groupby(["algorithm", "payload"], sort=False):
        last, best = 100 * g["last_acc"].astype(float), 100 * g["best_acc"].astype(float)
        sent = g.loc[~g["diverged"], "bytes_per_round"].astype(float)
        n = len(g)
        out.append(
            dict(
                algorithm=alg,
                payload=pay,
                bytes_per_round=float(sent.mean()) if len(sent) else math.nan,
                n_seeds=n,
                seeds=",".join(str(int(s)) for s in sorted(g["seed"])),
                n_diverged=int(g["diverged"].sum()),
                last_acc_mean=float(last.mean()),
                last_acc_std=float(last.std(ddof=1)) if n > 1 else math.nan,
                best_acc_mean=float(best.mean()),
                best_acc_std=float(best.std(ddof=1)) if n > 1 else math.nan,
            )
        )
    table = pd.DataFrame(out)
    for v in ("last_acc", "best_acc"):
        table[f"{v}_text"] = [
            f"{m:.2f} ± {s:.2f}" if np.isfinite(s) else f"{m:.2f} (n=1)"
            for m, s in zip(table[f"{v}_mean"], table[f"{v}_std"])
        ]
    table["pareto"] = on_front(table["bytes_per_round"], table["last_acc_mean"])
    return table


def on_front(cost, value) -> list[bool]:
    """Whether each point is undominated: no other point has cost <= and value >=, one strictly
    (points with an unknown cost are never on the front)."""
    c, v = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    front = []
    for i in range(len(c)):
        if not (np.isfinite(c[i]) and np.isfinite(v[i])):
            front.append(False)
            continue
        dominated = (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front.append(not bool(dominated.any()))
    return front


def _by_seed(rows: pd.DataFrame, alg: str, pay: str) -> dict:
    g = rows[(rows["algorithm"] == alg) & (rows["payload"] == pay)]
    return {int(s): float(a) for s, a in zip(g["seed"], g["last_acc"])}


def judge(mean: float, lo: float, hi: float, n: int, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict of one paired comparison (challenger - baseline), by the module's rules."""
    if n < min_seeds:
        return NOT_ENOUGH
    if lo > 0:
        return BETTER
    if hi < 0:
        return WORSE
    return UNDECIDED


def equal_bytes(
    rows: pd.DataFrame,
    challengers=("tinyproto-fp",),
    baseline: str = "fedproto",
    min_seeds: int = MIN_SEEDS,
) -> pd.DataFrame:
    """Every (challenger cell, baseline cell with bytes <= the challenger's) pair: the paired
    difference in last-round accuracy (points), its 95 % interval, the common seeds and the
    verdict ("better": the challenger; "worse"; "undecided"; "not enough seeds")."""
    rows = _check(rows)
    table = pareto_table(rows)
    base = table[table["algorithm"] == baseline]
    out = []
    for ch in table[table["algorithm"].isin(challengers)].itertuples():
        a = _by_seed(rows, ch.algorithm, ch.payload)
        for b in base.itertuples():
            if not (b.bytes_per_round <= ch.bytes_per_round):  # NaN bytes: not comparable
                continue
            mean, lo, hi, n = paired_ci(a, _by_seed(rows, b.algorithm, b.payload))
            out.append(
                dict(
                    challenger=ch.algorithm,
                    challenger_payload=ch.payload,
                    challenger_bytes=ch.bytes_per_round,
                    baseline=b.algorithm,
                    baseline_payload=b.payload,
                    baseline_bytes=b.bytes_per_round,
                    diff_points=100 * mean,
                    ci_low=100 * lo,
                    ci_high=100 * hi,
                    n_common_seeds=n,
                    verdict=judge(mean, lo, hi, n, min_seeds),
                )
            )
    cols = [
        "challenger",
        "challenger_payload",
        "challenger_bytes",
        "baseline",
        "baseline_payload",
        "baseline_bytes",
        "diff_points",
        "ci_low",
        "ci_high",
        "n_common_seeds",
        "verdict",
    ]
    return pd.DataFrame(out, columns=cols)


def overall(
    pairs: pd.DataFrame, table: pd.DataFrame, challengers=("tinyproto-fp",)
) -> pd.DataFrame:
    """Per challenger cell: "beats" (better than every baseline cell at <= its bytes), "does not
    beat" (worse than at least one: named), "undecided" / "not enough seeds" (the weakest of the
    rest), or "no baseline cell at <= its bytes"."""
    out = []
    for ch in table[table["algorithm"].isin(challengers)].itertuples():
        p = pairs[
            (pairs["challenger"] == ch.algorithm) & (pairs["challenger_payload"] == ch.payload)
        ]
        verdicts = list(p["verdict"])
        if not verdicts:
            v, why = NONE_SMALLER, ""
        elif WORSE in verdicts:
            v = DOES_NOT
            why = "worse than " + ", ".join(p.loc[p["verdict"] == WORSE, "baseline_payload"])
        elif NOT_ENOUGH in verdicts:
            v, why = NOT_ENOUGH, ""
        elif UNDECIDED in verdicts:
            v = UNDECIDED
            why = "undecided against " + ", ".join(
                p.loc[p["verdict"] == UNDECIDED, "baseline_payload"]
            )
        else:
            v, why = BEATS, "better than " + ", ".join(p["baseline_payload"])
        out.append(
            dict(
                challenger=ch.algorithm,
                challenger_payload=ch.payload,
                challenger_bytes=ch.bytes_per_round,
                baseline_cells=len(verdicts),
                verdict=v,
                detail=why,
            )
        )
    return pd.DataFrame(out)


def best_under_budget(
    table: pd.DataFrame, fraction: float = 0.05, reference=("fedproto", "fp32")
) -> dict | None:
    """The cell with the best mean last-round accuracy among those whose bytes per round are at
    most ``fraction`` x the reference cell's: {algorithm, payload, bytes_per_round, budget,
    last_acc_mean, last_acc_text, n_seeds, candidates}; None when no cell is that small.
    ValueError when the reference cell is missing."""
    ref = table[(table["algorithm"] == reference[0]) & (table["payload"] == reference[1])]
    if ref.empty or not np.isfinite(ref["bytes_per_round"].iloc[0]):
        raise ValueError(f"no reference cell {reference[0]} {reference[1]} with bytes per round")
    budget = fraction * float(ref["bytes_per_round"].iloc[0])
    within = table[table["bytes_per_round"] <= budget]
    if within.empty:
        return None
    # ties in accuracy (e.g. a codec that changes no prediction): the cell with fewer bytes
    best = within.sort_values(["last_acc_mean", "bytes_per_round"], ascending=[False, True]).iloc[0]
    return dict(
        algorithm=best["algorithm"],
        payload=best["payload"],
        bytes_per_round=float(best["bytes_per_round"]),
        budget=budget,
        last_acc_mean=float(best["last_acc_mean"]),
        last_acc_text=best["last_acc_text"],
        n_seeds=int(best["n_seeds"]),
        candidates=len(within),
    )


# -- the documents' section, generated from the committed tables ---------------------------------

CODEC_CSVS = ("codecs_pareto.csv", "codecs_equal_bytes.csv", "codecs_verdict.csv")
DOC_BEGIN = "<!-- codecs: generated by `tinyproto scorecard --update-docs`; do not edit by hand -->"
DOC_END = "<!-- /codecs -->"


def codec_tables(profile: str):
    """The three tables notebook ``10_codecs`` wrote for ``profile`` (results/ for quick,
    results/<profile>/ otherwise), or None when it has not run there."""
    from tinyproto.store import results_dir

    paths = [results_dir(profile) / name for name in CODEC_CSVS]
    if not all(p.is_file() for p in paths):
        return None
    return tuple(pd.read_csv(p) for p in paths)


def profile_markdown(profile: str) -> str | None:
    """One profile's part of docs/scorecard.md's "Compression at equal bytes": the Pareto table,
    each TinyProto cell's verdict with its paired differences, and the best cell within the
    budget, every number from :func:`codec_tables`; None when there are none."""
    from tinyproto.plots import LABELS  # the names notebook 10's figure uses

    tables = codec_tables(profile)
    if tables is None:
        return None
    table, pairs, verdicts = tables
    n = sorted(set(table["n_seeds"]))
    seeds = ", ".join(
        sorted({s for x in table["seeds"].astype(str) for s in x.split(",")}, key=int)
    )
    cells = "every cell has" if len(n) == 1 else "cells have"
    lines = [
        f"**{profile} profile** ({table['dataset'].iloc[0]}, {table['rounds'].iloc[0]} rounds, "
        f"seeds {seeds}; {cells} {' or '.join(map(str, n))} seeds; "
        f"`{_rel(profile, CODEC_CSVS[0])}`):",
        "",
        "| method | codec | bytes/round | x FedProto fp32 | last acc (%) | seeds | diverged | Pareto |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        # a cell whose every seed diverged has no measured bytes (its runs did not finish)
        measured = math.isfinite(r.bytes_per_round)
        size = f"{r.bytes_per_round:.0f}" if measured else "- (no seed finished)"
        share = f"{r.bytes_vs_fedproto_fp32:.3f}" if measured else "-"
        lines.append(
            f"| {LABELS[r.algorithm]} | {r.payload} | {size} | {share} | {r.last_acc_text} | "
            f"{r.n_seeds} | {r.n_diverged} | {'yes' if r.pareto else ''} |"
        )
    lines.append("")
    for v in verdicts[verdicts["challenger"] != "(any cell)"].itertuples():
        p = pairs[
            (pairs.challenger == v.challenger)
            & (pairs.challenger_payload == v.challenger_payload)
            & (pairs.baseline == v.baseline)
        ]
        diffs = "".join(
            f"; {q.baseline_payload} {q.diff_points:+.2f} points [{q.ci_low:+.2f}, {q.ci_high:+.2f}]"
            for q in p.itertuples()
        )
        lines.append(
            f"- {LABELS[v.challenger]} {v.challenger_payload} vs {LABELS[v.baseline]} codecs of equal or "
            f"fewer bytes ({v.baseline_cells}): **{v.verdict}**{diffs}."
        )
    for b in verdicts[verdicts["challenger"] == "(any cell)"].itertuples():
        best = str(b.verdict).removeprefix("best: ")
        lines += [
            "",
            f"Within the budget the most accurate cell is {best}: {b.detail}."
            if str(b.verdict).startswith("best: ")
            else f"Within the budget: {b.verdict}.",
        ]
    return "\n".join(lines)


def _rel(profile: str, name: str) -> str:
    """``name`` in ``profile``'s tables folder, as the project shows it (results/...)."""
    from tinyproto.store import results_dir, results_root

    return (Path("results") / results_dir(profile).relative_to(results_root()) / name).as_posix()


def markdown(profiles) -> str:
    """The generated block: every profile of ``profiles`` whose codec tables exist, then one
    line naming those that have none."""
    parts = [DOC_BEGIN, ""]
    missing = []
    for p in profiles:
        text = profile_markdown(p)
        if text is None:
            missing.append(p)
        else:
            parts += [text, ""]
    if missing:
        parts += [
            f"Not computed yet: {', '.join(missing)} (`TINYPROTO_PROFILE=<profile>` notebook "
            "`10_codecs`, e.g. `tinyproto reproduce --profile hard --notebooks 10_codecs`).",
            "",
        ]
    return "\n".join([*parts, DOC_END])
