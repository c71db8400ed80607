"""What every claim row is built from: the arms (TinyProto's variants and the baselines), the
row dict, and the pairwise and best-of-all comparisons judged by ``scorecard.rules``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tinyproto.config import ConfigError
from tinyproto.scorecard.rules import (
    ALL_FEDERATED,
    Arm,
    Runs,
    arm,
    difference,
    judge,
    text,
    weakest,
)


def _table_acc(table: dict, key, col: int = 0) -> str:
    mean, std = table[key][col][:2]
    return f"{mean:.2f} ± {std:.2f}"


FP, FT = arm("TinyProto-FP", "tinyproto-fp"), arm("TinyProto-FT", "tinyproto-ft")


FEDPROTO, FEDTGP = arm("FedProto", "fedproto"), arm("FedTGP", "fedtgp")


# The authors' published code never adds the CPS regulariser (METHOD.md, "Quirks"): a client
# trains on cross-entropy alone; its prototypes still cross the network, CPS- and APS-coded.
# That variant is lam = 0; the paper's text (lam = 10, the default) is the arms above.
# how a variant marks its rows' claims (render.variant_disagreements reads them back)
VARIANT_MARKS = {"mu tuned": " (mu tuned)", "authors' code": " (authors' code: no regulariser)"}


FP_CODE = arm("TinyProto-FP" + VARIANT_MARKS["authors' code"], "tinyproto-fp", lam=0.0)


FT_CODE = arm("TinyProto-FT" + VARIANT_MARKS["authors' code"], "tinyproto-ft", lam=0.0)


VARIANTS = (("paper's text", FP, FT), ("authors' code", FP_CODE, FT_CODE))


TUNED_LABEL = {a.algorithm: a.label + VARIANT_MARKS["mu tuned"] for a in (FP, FT)}


LOCAL, FEDAVG = arm("Local", "local"), arm("FedAvg", "fedavg")


TABLE5_DIMS = (50, 150, 250, 350, 450)  # the CPS dimensions of the paper's Table 5 (d = 500)


FIG6_DIMS = (10, 50, 100, 250)  # the s of the paper's Fig. 6


FIG4_DIMS = (100, 500, 1000)  # the decision-layer sizes d of the paper's Fig. 4


GAP_MIN = 0.03  # the hard profile's requirement: best federated method >= 3 points above Local


LABEL = {
    "fedproto": "FedProto",
    "fedtgp": "FedTGP",
    "feddistill": "FedDistill",
    "fml": "FML",
    "lg-fedavg": "LG-FedAvg",
    "fedkd": "FedKD",
    "tinyproto-fp": "TinyProto-FP",
    "local": "Local",
}


def _mean_curve(runs: Runs, ids: list[str]):
    """The seed-mean test accuracy per round of the runs ``ids`` (a pandas Series by round)."""

    metrics = pd.concat([runs.metrics(r) for r in ids])
    return metrics.groupby("round")["test_acc"].mean().sort_index()


def order_since(curve_a, curve_b) -> tuple[int, bool] | None:
    """(r, above): A's seed-mean curve ends above B's (``above``) or not, and has been on that
    side at every round from r on. Rounds without an evaluation (NaN) are skipped; None without
    a common evaluated round."""
    common = curve_a.dropna().index.intersection(curve_b.dropna().index)  # evaluated rounds
    if common.empty:
        return None
    above = (curve_a[common] > curve_b[common]).to_numpy()
    flips = np.nonzero(above != above[-1])[0]
    return (int(common[flips[-1] + 1]) if flips.size else int(common[0])), bool(above[-1])


def _pair(runs: Runs, claim, source, paper_text, a: Arm, b: Arm, kind="better") -> dict:
    ma, mb = runs.arm(a), runs.arm(b)
    stable = ""
    if ma.ids and mb.ids:  # how long the ordering has held at this horizon
        ca, cb = _mean_curve(runs, ma.ids), _mean_curve(runs, mb.ids)
        since = order_since(ca, cb)
        if since is not None:
            side = "above" if since[1] else "not above"
            stable = f"; per round, {a.label} {side} {b.label} from round {since[0]} on"
    diff = (
        f"; last round, paired: {difference(ma.scores, mb.scores)}"
        if ma.scores and mb.scores
        else ""
    )
    return _row(
        claim,
        source,
        paper_text,
        runs,
        f"{text(ma)} vs {text(mb)}{diff}{stable}",
        judge(runs, ma, mb, kind),
        ma.ids + mb.ids,
        _common(ma, mb),
        a,
    )


def _common(*arms) -> int:
    """The number of seeds every arm has a result for (a diverged seed is a result)."""
    seeds = [set(m.scores) for m in arms]
    return len(set.intersection(*seeds)) if seeds else 0


def _row(claim, source, paper_text, runs: Runs, ours, verdict, ids, n, a: Arm) -> dict:
    try:
        rounds = a.config(runs.profile, 0).rounds
    except ConfigError:
        rounds = None
    skipped = runs.take_skipped()  # damaged runs are never judged, and never dropped silently
    if skipped:
        ours = f"{ours} [skipped {len(skipped)} damaged run(s): {'; '.join(skipped)}]"
    return dict(
        claim=claim,
        source=source,
        paper=paper_text,
        profile=runs.profile,
        ours=ours,
        verdict=verdict,
        seeds=n,
        rounds=rounds,
        runs=" ".join(ids),
        skipped="; ".join(skipped),
    )


def _untuned(base: Arm) -> Arm:
    """The tuned arm's stand-in before the grid search is complete: a config no run has (mu
    at 0, which Config refuses), so every row that needs it says "not measured"."""
    return Arm(TUNED_LABEL[base.algorithm], base.algorithm, (("mu", 0.0),))


def _best_of(runs: Runs, top: Arm, others, claim, source, paper_text) -> dict:
    """``top`` above each arm of ``others`` (itself skipped), by the rules; the weakest wins."""
    m_top = runs.arm(top)
    verdicts, parts, ids, n = [], [text(m_top)], list(m_top.ids), []
    for o in others:
        m = runs.arm(o)
        verdicts.append(judge(runs, m_top, m))
        parts.append(text(m))
        ids += m.ids
        n.append(_common(m_top, m))
    return _row(
        claim, source, paper_text, runs, "; ".join(parts), weakest(verdicts), ids, min(n), top
    )


def _best_of_all(runs: Runs, ft: Arm, T1, baseline=lambda a: a) -> dict:
    """TinyProto-FT (``ft``: one variant) above each of Table 1's other federated methods (each
    arm passed through ``baseline``)."""
    second = max(v[0][0] for k, v in T1.items() if k != "tinyproto-ft")
    return _best_of(
        runs,
        ft,
        [baseline(arm(LABEL[x], x)) for x in ALL_FEDERATED],
        f"{ft.label} best of all",
        "Table 1",
        f"{T1['tinyproto-ft'][0][0]:.2f} vs next best {second:.2f} (CIFAR-10)",
    )


FEDDISTILL = arm("FedDistill", "feddistill")


def _comm_ratio(a, b) -> float | None:
    """Seed-mean floats per round of arm ``a`` over arm ``b`` (``Measured``)."""
    if not a.summaries or not b.summaries:
        return None
    fa = np.mean([s["comm_floats_per_round"] for s in a.summaries])
    fb = np.mean([s["comm_floats_per_round"] for s in b.summaries])
    return float(fa / fb)


def _by_seed_pairs(a, b) -> list[tuple[dict, dict]]:
    """(summary of a, summary of b) for every seed both ``Measured`` arms finished."""
    sa = {s["seed"]: s for s in a.summaries}
    sb = {s["seed"]: s for s in b.summaries}
    return [(sa[k], sb[k]) for k in sorted(set(sa) & set(sb))]


def _fmt_ratio(r) -> str:
    return "missing" if r is None else f"{r:.3f}"


def _num_classes(cfg) -> int:
    from tinyproto.config.profiles import DATASET_CLASSES

    return DATASET_CLASSES.get(cfg.dataset, cfg.num_classes)
