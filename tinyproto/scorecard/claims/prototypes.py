"""What the saved prototypes and masks show: structured sparsity per (client, class), dead
units, FedProto's dense global prototypes, the masks' Hamming distance, and the privacy row
(the count-recovery attack's table)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto.config import ConfigError
from tinyproto.scorecard.claims.base import (
    FEDPROTO,
    FP,
    TABLE5_DIMS,
    _num_classes,
    _row,
)
from tinyproto.scorecard.rules import (
    MIN_SEEDS,
    NOT_ENOUGH,
    Arm,
    Runs,
    arm,
)
from tinyproto.store import load_prototypes


def hamming_bound(K: int, d: int, s: int) -> float:
    """The largest mean pairwise Hamming distance K masks of s ones in d dimensions can have:
    2s minus twice the smallest mean pairwise overlap, which is reached when every dimension is
    used by floor(Ks/d) or ceil(Ks/d) classes (the overlaps sum to sum_i C(u_i, 2)); 2s when
    K s <= d (disjoint supports)."""
    q, r = divmod(K * s, d)
    pairs_overlap = r * math.comb(q + 1, 2) + (d - r) * math.comb(q, 2)
    return 2 * s - 2 * pairs_overlap / math.comb(K, 2)


def _masks_row(runs: Runs) -> dict:
    """Sec. 4.1.2: "we typically maximize pairwise Hamming distances between the masking
    vectors". Judged on the masks the runs used (saved with their prototypes): TinyProto-FP/FT
    at the default s and at Table 5's s, one finished seed each. Exact: holds if every mask set's
    mean pairwise Hamming distance equals the largest possible (``hamming_bound``)."""
    import torch

    from tinyproto.cps import hamming_stats

    claim = "CPS masks maximise the pairwise Hamming distance between classes"
    source, paper_text = "Sec. 4.1.2", "maximised pairwise Hamming distance"
    cases, ids, seen = [], [], set()
    for tiny in ("tinyproto-fp", "tinyproto-ft"):
        for s_ in (None, *TABLE5_DIMS):
            a = arm("x", tiny, **({} if s_ is None else {"cps_dim": s_}))
            try:
                cfg = a.config(runs.profile, 0)
            except ConfigError:  # an s this profile's d cannot hold (smoke: d = 40)
                continue
            if (_num_classes(cfg), cfg.feature_dim, cfg.cps_dim) in seen:
                continue  # this (K, d, s) is judged already: its masks are not read again
            m = runs.arm(a)
            if not m.ids:
                continue
            masks = load_prototypes(runs.root / m.ids[0]).get("masks")
            if masks is None:  # a run saved without its masks: nothing to judge there
                continue
            st = hamming_stats(torch.from_numpy(masks))
            K, d, s = st["num_classes"], st["dim"], st["cps_dim"]
            seen.add((_num_classes(cfg), cfg.feature_dim, cfg.cps_dim))
            cases.append((m.ids[0], K, d, s, st, hamming_bound(K, d, s)))
            ids.append(m.ids[0])
    if not cases:
        return _row(claim, source, paper_text, runs, "missing runs", "not measured", [], 0, FP)
    ok = [
        math.isclose(st["hamming_mean"], bound, abs_tol=1e-9) for _r, _K, _d, _s, st, bound in cases
    ]
    ours = "; ".join(
        f"K={K}, d={d}, s={s}: mean {st['hamming_mean']:.2f} of at most {bound:.2f}, min "
        f"{st['hamming_min']:.0f}, each dimension used by {st['usage_min']}-{st['usage_max']} "
        "classes"
        for _r, K, d, s, st, bound in cases
    )
    ours += f"; the largest possible in {sum(ok)} of {len(ok)} mask sets"
    return _row(
        claim, source, paper_text, runs, ours, "holds" if all(ok) else "does not hold", ids, 1, FP
    )


PRIVACY_CSV = Path("privacy") / "count_attack.csv"  # under the results root (dp_tradeoff.py)


def _privacy_row(runs: Runs) -> dict:
    """ "APS hides the class counts", judged by the count-recovery attack (tinyproto.privacy) on
    TinyProto-FP's uploads: the attack's table, results/privacy/count_attack.csv (computed by
    results/privacy/measure.py from this profile's runs and checked against docs/privacy.md),
    read at its last round. The claim does not hold when the attack recovers the counts in
    every seed (``privacy.counts_recovered``), holds when in none; each run it names must be a
    finished run of this profile."""
    from tinyproto.privacy import LEAK_RATIO, counts_recovered
    from tinyproto.store import results_root

    claim = "APS hides each client's class counts (privacy)"
    source = "Sec. 4.2; Sec. 5.2 (FedDistill's logits 'introduce higher privacy risks')"
    paper_text = "counts never sent on their own"
    path = results_root() / PRIVACY_CSV
    table = pd.read_csv(path) if path.is_file() else None
    got = None
    if table is not None and "profile" in table:
        got = counts_recovered(table[table["profile"] == runs.profile], FP.algorithm)
    if got is None:
        why = f"no {runs.profile} rows of TinyProto-FP in results/{PRIVACY_CSV.as_posix()}"
        return _row(claim, source, paper_text, runs, why, "not measured", [], 0, FP)
    absent = [r for r in got["run_ids"] if runs.by_id(r) is None]
    if absent:
        why = f"results/{PRIVACY_CSV.as_posix()} names runs not in {runs.profile}'s runs: "
        return _row(
            claim, source, paper_text, runs, why + " ".join(absent), "not measured", [], 0, FP
        )
    n = len(got["seeds"])
    ours = (
        f"count-recovery attack on TinyProto-FP's APS uploads (round {got['round']}, "
        f"results/{PRIVACY_CSV.as_posix()}): label-distribution TVD {got['tvd_attack']:.3f} vs "
        f"{got['tvd_presence']:.3f} for the class-list guess, Spearman {got['spearman']:.2f}, mean "
        f"over {n} seed{'s' if n != 1 else ''}; attack / guess TVD per seed: "
        f"{', '.join(f'{x:.2f}' for x in got['ratio'])} (the counts count as recovered in a seed "
        f"below {LEAK_RATIO:g}; docs/privacy.md: secure aggregation hides them)"
    )
    if n < MIN_SEEDS:
        verdict = NOT_ENOUGH
    elif got["leak"]:
        verdict = "does not hold"
    elif got["hidden"]:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return _row(claim, source, paper_text, runs, ours, verdict, got["run_ids"], n, FP)


def _spread(x) -> str:
    """ "p10 a, median b, p90 c" of the values ``x``."""
    q = np.percentile(np.asarray(x, dtype=float), [10, 50, 90])
    return f"10th percentile {q[0]:.3f}, median {q[1]:.3f}, 90th {q[2]:.3f}"


def off_mask_shares(P: dict) -> np.ndarray:
    """Per (client, class) that holds the class: the share of the local prototype's energy
    that lies off the class's CPS mask (0: all on the mask; 1 - s/d: no structure)."""
    local, masks, holds = P["local"], P["masks"], P["holds"]
    e = local.astype(np.float64) ** 2
    total = e.sum(-1)
    off = (e * ~masks[None]).sum(-1)
    keep = holds & (total > 0)
    return off[keep] / total[keep]


def dead_shares(P: dict) -> np.ndarray:
    """Per (client, class) that holds the class: the share of exactly-zero prototype dimensions
    (dead ReLU units for that class)."""
    local, holds = P["local"], P["holds"]
    return (local[holds] == 0).mean(-1)


def dead_by_class(P: dict) -> np.ndarray:
    """Per class with a holder: the mean over its holders of the share of exactly-zero
    dimensions: notebook 01's ``dead_fraction_mean``, whose mean over classes its summary
    reports (the same number the scorecard judges)."""
    local, holds = P["local"], P["holds"]
    return np.array(
        [
            (local[holds[:, j], j] == 0).mean(-1).mean()
            for j in range(holds.shape[1])
            if holds[:, j].any()
        ]
    )


def _per_seed_rule(
    runs: Runs, which: Arm, claim, source, paper_text, measure, ok, describe, unit="(client, class)"
):
    """A row judged per seed on the saved prototypes: ``measure(P)`` gives one value per
    (client, class); ``ok(values)`` says whether a seed satisfies the claim; holds if every
    seed does (>= MIN_SEEDS seeds), does not hold if none does... otherwise inconclusive."""
    ids = runs.arm(which).ids
    per_seed = [measure(load_prototypes(runs.root / rid)) for rid in ids]
    if not per_seed:
        return _row(claim, source, paper_text, runs, "missing runs", "not measured", ids, 0, which)
    each = [bool(ok(v)) for v in per_seed]
    if len(per_seed) < MIN_SEEDS:
        verdict = NOT_ENOUGH
    elif all(each):
        verdict = "holds"
    elif not any(each):
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    pooled = np.concatenate(per_seed)
    ours = (
        f"{describe(per_seed)}; per {unit}, {len(per_seed)} seed(s): {_spread(pooled)}; "
        f"holds in {sum(each)} of {len(each)} seeds"
    )
    return _row(claim, source, paper_text, runs, ours, verdict, ids, len(per_seed), which)


def _sparsity_row(runs: Runs, which: Arm = FP) -> dict:
    claim = (
        f"Local prototypes become structurally sparse under CPS ({which.label}, "
        "off-mask energy share per (client, class))"
    )
    try:
        cfg = which.config(runs.profile, 0)
    except ConfigError:  # the tuned arm before its grid search is complete
        return _row(
            claim, "Fig. 2 / App. A", "-", runs, "missing runs", "not measured", [], 0, which
        )
    level = 1 - cfg.cps_dim / cfg.feature_dim
    return _per_seed_rule(
        runs,
        which,
        claim,
        "Fig. 2 / App. A",
        "off-mask dimensions pushed to zero",
        off_mask_shares,
        lambda v: np.median(v) <= level / 2,
        lambda per: (
            f"median share {np.mean([np.median(v) for v in per]):.3f} at the last round "
            f"(bar: half of the no-structure level 1 - s/d = {level:.2f})"
        ),
    )


def _dead_units_row(runs: Runs) -> dict:
    return _per_seed_rule(
        runs,
        FEDPROTO,
        "About 50 % of decision-layer units are dead per class (FedProto)",
        "Sec. 3 / Fig. 2",
        "about 50 %",
        dead_by_class,
        lambda v: 0.4 <= float(np.mean(v)) <= 0.6,
        lambda per: (
            f"{100 * np.mean([np.mean(v) for v in per]):.1f} % dead, mean over classes of the "
            "mean over the clients holding each (notebook 01's count; bar: 40-60 % per seed)"
        ),
        unit="class",
    )


def global_zero_share(P: dict) -> float:
    """Share of exactly-zero dimensions of the global prototypes the server held at the end."""
    g, has = P["global"], P["has_global"]
    return float((g[has] == 0).mean()) if has.any() else float("nan")


def _global_dense_row(runs: Runs) -> dict:
    """Fig. 2(c): FedProto's global prototypes are dense (averaging sparse local prototypes
    whose zeros sit in different places), which is why plain FedProto cannot send them sparse."""
    return _per_seed_rule(
        runs,
        FEDPROTO,
        "FedProto's global prototypes are dense although local ones are sparse",
        "Fig. 2(c) / Sec. 3",
        "dense global prototypes",
        lambda P: np.array([global_zero_share(P)]),
        lambda v: float(v[0]) < 0.05,
        lambda per: (
            f"{100 * np.mean([v[0] for v in per]):.2f} % of global-prototype dimensions "
            "exactly zero at the last round (bar: under 5 % per seed)"
        ),
        unit="seed",
    )
