"""The scorecard's verdict rules, and the runs a claim is judged on. The reproduction scorecard:
each claim of the paper, the paper's figure, ours per profile, a computed verdict, and the run
ids behind it.

Nothing here runs anything: a claim is judged on the finished runs found in a profile's runs
folder (``store.runs_root``), looked up by the run ids of the configs the claim needs (the same
configs the notebooks build), over whichever of seeds 0, 1, 2 are there. Missing runs give the
verdict "not measured" with what is missing.

Verdict rules (stated once, applied to every row; docs/scorecard.md repeats them):
- Accuracy is the **last round's** test accuracy (the best round is chosen on the test set, so
  it is reported beside, never judged).
- Comparisons are **paired by seed**: only seeds both arms ran count, and a seed is the same
  data partition for both arms (on the hard profile each seed draws its own partition; quick
  and long keep the paper's fixed partition, so their seeds vary the initialisation only; there
  Table 1's claims are judged again with the partition drawn from each seed,
  ``claims._partition_rows``).
- At least ``MIN_SEEDS`` = 3 common seeds, else "not enough seeds".
- The paired differences d_s = A_s - B_s give a two-sided ``CONFIDENCE`` = 90 % Student-t
  interval [lo, hi] for their mean D.
- "A > B" holds if lo > 0 and D >= ``MIN_EFFECT`` (0.5 points); does not hold if
  hi < ``MIN_EFFECT`` (the gain, if any, is confidently below the minimum effect); otherwise
  "inconclusive".
- "A is not worse than B" (non-inferiority, margin ``NOT_WORSE_MARGIN`` = 1 point): holds if
  lo > -margin; does not hold if hi < -margin; otherwise "inconclusive".
- A run that **diverged** (its messages or the server's output held NaN/inf, or values past
  the server's overflow bound: failed.json, ``store.failures.diverged``) counts against its
  arm at chance accuracy 1/K for that seed, and the row says "diverged in k of n seeds". A run that failed for another reason (e.g. missing data) is not a result: an arm
  whose every run failed so is "not testable here", with the reason.
- A "holds" that rests on the other arm's divergence (with the seeds where B diverged left
  out, the comparison no longer holds) is "holds (comparator diverged)", ranked below
  "holds": it shows A stable where B is not, not that A is more accurate.
- "A best of all": A > each other algorithm, by the rule above; the weakest verdict wins
  (``ORDER``: "does not hold" sinks the claim; then "not measured"...).
- A finished run that fails verification is never judged and never dropped silently: the row
  names it with why (``Runs.take_skipped``: its text and the ``skipped`` column).
- Exact counts (the 10x cut) hold only if equal to the last float, in every seed.
- Rows built otherwise state their rule in ``claims`` and docs/scorecard.md: client overhead
  (FLOPs and benched time), "often" (``claims.most_of``), Fig. 4's communication, the masks'
  Hamming distance.
- Structured sparsity (Fig. 2 / App. A): per (client, class), the share of the local
  prototype's energy off the class mask at the last round; reported as a distribution (10th,
  50th, 90th percentile over all (client, class) pairs of all seeds); holds if the median is at
  most half the no-structure level 1 - s/d in every seed (>= 3 seeds).
- Dead units (Sec. 3, "about 50 % per class"): holds if FedProto's share of exactly-zero
  prototype dimensions (per class, the mean over the clients holding it; then the mean over
  classes: notebook 01's count) lies in [0.4, 0.6] in every seed (>= 3 seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto import paper
from tinyproto.config import Config, ConfigError
from tinyproto.store import RunFolderError, is_complete, runs_root, verify_run

SEEDS = (0, 1, 2)
SCORE_PROFILES = ("quick", "long", "hard", "paper")
ALL_FEDERATED = ("fedproto", "fedtgp", "feddistill", "fml", "lg-fedavg", "fedkd", "tinyproto-fp")
COLUMNS = (
    "claim",
    "source",
    "paper",
    "profile",
    "ours",
    "verdict",
    "seeds",
    "rounds",
    "runs",
    "skipped",
)


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: an algorithm and its overrides of the profile."""

    label: str
    algorithm: str
    overrides: tuple = ()

    def config(self, profile: str, seed: int) -> Config:
        """The arm's run config for ``seed``; an override whose value is
        ``config.profiles.FOLLOW_SEED`` ("seed", e.g. ``partition_seed``) takes the seed."""
        from tinyproto.config.profiles import FOLLOW_SEED

        over = {k: (seed if v == FOLLOW_SEED else v) for k, v in self.overrides}
        return Config(algorithm=self.algorithm, profile=profile, seed=seed, **over)


def arm(label: str, algorithm: str, **overrides) -> Arm:
    return Arm(label, algorithm, tuple(sorted(overrides.items())))


# the files only a finished run has (summary.json written last): one without the other is damaged
FINISHED_FILES = ("summary.json", "metrics.csv")


class Runs:
    """Finished runs of one profile, looked up by config (verified once each)."""

    def __init__(self, profile: str, root: Path | None = None):
        self.profile = profile
        self.root = Path(root) if root is not None else runs_root(profile)
        self._cache: dict[str, dict | None] = {}
        self.wanted: dict[str, Config] = {}  # every config a claim asked for, found or not
        self.failed: dict[str, list[str]] = {}  # arm label -> errors of its runs that failed
        self._metrics: dict[str, pd.DataFrame] = {}  # run id -> metrics.csv, read once
        # finished runs that fail verification (edited, truncated): never judged, always named
        self.damaged: dict[str, str] = {}  # run id -> why (one line)
        self._skipped: list[str] = []  # damaged runs a claim asked for since its last row

    def missing(self) -> list[Config]:
        """The configs asked for that have no finished run (what ``--compute`` runs)."""
        return [cfg for rid, cfg in self.wanted.items() if self._cache.get(rid) is None]

    def metrics(self, run_id: str) -> pd.DataFrame:
        """A finished run's per-round metrics (verified), read once per scorecard."""
        if run_id not in self._metrics:
            from tinyproto.store import load_run

            self._metrics[run_id] = load_run(self.root / run_id)["metrics"]
        return self._metrics[run_id]

    def get(self, cfg: Config) -> dict | None:
        rid = cfg.run_id()
        self.wanted.setdefault(rid, cfg)
        return self.by_id(rid)

    def by_id(self, rid: str) -> dict | None:
        """The summary of finished run ``rid`` (verified once; a damaged run is recorded and
        named by the next row, never judged), or None. Unlike ``get`` it does not ask for the
        run: a missing one is not listed by ``missing``."""
        if rid not in self._cache:
            folder = self.root / rid
            summary = None
            if is_complete(folder):
                try:
                    summary = verify_run(folder)["summary"]
                except RunFolderError as e:
                    self.damaged[rid] = " ".join(str(e).split())
            elif any((folder / f).exists() for f in FINISHED_FILES):  # a finished run's files,
                gone = [f for f in FINISHED_FILES if not (folder / f).exists()]  # not all
                self.damaged[rid] = (
                    f"{folder}: {', '.join(gone)} missing beside the finished run's other files "
                    "(deleted or cut short); --restart computes it again"
                )
            self._cache[rid] = summary
        if rid in self.damaged and rid not in self._skipped:
            self._skipped.append(rid)
        return self._cache[rid]

    def take_skipped(self) -> list[str]:
        """ "run id: why" of the damaged runs asked for since the last call (one claim row)."""
        out = [f"{rid}: {self.damaged[rid]}" for rid in self._skipped]
        self._skipped = []
        return out

    def arm(self, a: Arm) -> Measured:
        """What the profile's runs say about arm ``a`` over ``SEEDS``: the finished runs' last
        and best accuracies, and the runs that could not finish (diverged or failed)."""
        from tinyproto.store.failures import before_failure, diverged, failure

        m = Measured(a.label)
        for seed in SEEDS:
            try:
                cfg = a.config(self.profile, seed)
            except ConfigError:
                continue
            s = self.get(cfg)
            if s is not None:
                m.last[seed] = float(s["last_acc"])
                m.best[seed] = float(s["best_acc"])
                m.ids.append(cfg.run_id())
                m.summaries.append(s)
                m.chance = 1.0 / int(s["num_classes"]) if "num_classes" in s else m.chance
            elif (line := failure(cfg, self.root)) is not None:  # a run that could not finish
                done = before_failure(cfg, self.root)  # e.g. "best 99.82 % in rounds 1-69"
                line = f"seed {seed}: {line}" + (f"; {done}" if done else "")
                (m.diverged if diverged(line) else m.failed)[seed] = line
        if m.chance is None:
            m.chance = 1.0 / _classes(a, self.profile)
        self.failed[a.label] = list(m.diverged.values()) + list(m.failed.values())
        return m


def _classes(a: Arm, profile: str) -> int:
    from tinyproto.config.profiles import DATASET_CLASSES

    try:
        cfg = a.config(profile, 0)
    except ConfigError:
        return 10
    return DATASET_CLASSES.get(cfg.dataset, cfg.num_classes)


@dataclass
class Measured:
    """One arm on one profile: by seed, the finished runs' accuracies and the failed runs."""

    label: str
    last: dict = field(default_factory=dict)  # seed -> last round's test accuracy
    best: dict = field(default_factory=dict)  # seed -> best round's (chosen on the test set)
    diverged: dict = field(default_factory=dict)  # seed -> its error line (NaN/inf)
    failed: dict = field(default_factory=dict)  # seed -> its error line (anything else)
    ids: list = field(default_factory=list)  # the finished runs' ids
    summaries: list = field(default_factory=list)
    chance: float | None = None  # 1/K: what a diverged seed counts as

    @property
    def scores(self) -> dict:
        """What the verdicts judge: last-round accuracy per seed, a diverged seed at chance."""
        return {**{s: self.chance for s in self.diverged}, **self.last}

    def text(self) -> str:
        """ "label last mean ± std (best mean)", with the runs that did not finish named."""
        bad = {**self.diverged, **self.failed}
        every = " | ".join(bad[s] for s in sorted(bad))
        if not self.last:
            if self.diverged:
                n = len(self.diverged)
                return (
                    f"{self.label}: diverged in {n} of {n} seeds, counted at chance "
                    f"{100 * self.chance:.0f} % ({every})"
                )
            return f"{self.label}: did not finish ({every})" if bad else f"{self.label}: missing"
        last = list(self.last.values())
        sd = f" ± {100 * np.std(last, ddof=1):.2f}" if len(last) > 1 else " (1 seed)"
        out = f"{self.label} {100 * np.mean(last):.2f}{sd} (best {100 * np.mean(list(self.best.values())):.2f})"
        if self.diverged:
            n = len(self.diverged) + len(self.last)
            out += f" (diverged in {len(self.diverged)} of {n} seeds, counted at chance {100 * self.chance:.0f} %: {every})"
        elif bad:
            out += f" ({len(bad)} did not finish: {every})"
        return out


MIN_SEEDS = 3
CONFIDENCE = 0.90  # two-sided
MIN_EFFECT = 0.005  # "A > B" needs a mean paired gain of at least 0.5 points
NOT_WORSE_MARGIN = 0.01  # "A is not worse than B": by less than 1 point
# Student-t 95th percentiles (the upper end of a two-sided 90 % interval), by degrees of freedom
T95 = {
    1: 6.314,
    2: 2.920,
    3: 2.353,
    4: 2.132,
    5: 2.015,
    6: 1.943,
    7: 1.895,
    8: 1.860,
    9: 1.833,
    10: 1.812,
    12: 1.782,
    15: 1.753,
    20: 1.725,
    30: 1.697,
}


def t95(df: int) -> float:
    """The t quantile for ``df`` degrees of freedom (the next smaller tabulated df: wider)."""
    if df < 1:
        raise ValueError(f"invalid df={df}: at least 1")
    return T95[max(k for k in T95 if k <= df)]


def paired_interval(a: dict, b: dict, quantile=None) -> tuple[float, float, float, int]:
    """(mean D, lo, hi, n) of the differences a[s] - b[s] over the seeds s both have; the t
    quantile is ``quantile(df)`` (default :func:`t95`: the 90 % two-sided interval)."""
    common = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in common], dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n == 1:
        return mean, -math.inf, math.inf, 1
    half = (quantile or t95)(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _by_seed(x) -> dict:
    return dict(x) if isinstance(x, dict) else dict(enumerate(x))


def compare(a, b, kind: str = "better") -> str:
    """The verdict of arm ``a`` vs arm ``b`` by the module's rules: accuracies by seed
    ({seed: acc}; a list means seeds 0, 1, ...), paired over the common seeds."""
    a, b = _by_seed(a), _by_seed(b)
    if not a or not b:
        return "not measured"
    mean, lo, hi, n = paired_interval(a, b)
    if n < MIN_SEEDS:
        return NOT_ENOUGH
    if kind == "not_worse":
        return (
            "holds"
            if lo > -NOT_WORSE_MARGIN
            else ("does not hold" if hi < -NOT_WORSE_MARGIN else "inconclusive")
        )
    if kind != "better":
        raise ValueError(f"invalid kind={kind!r}: 'better' or 'not_worse'")
    if lo > 0 and mean >= MIN_EFFECT:
        return "holds"
    return "does not hold" if hi < MIN_EFFECT else "inconclusive"


def difference(a, b) -> str:
    """The paired difference in words: "+1.23 points, 90 % CI [0.45, 2.01], 3 seeds"."""
    mean, lo, hi, n = paired_interval(_by_seed(a), _by_seed(b))
    if n == 0:
        return "no common seed"
    if n == 1:
        return f"{100 * mean:+.2f} points, 1 seed"
    return (
        f"{100 * mean:+.2f} points, {100 * CONFIDENCE:.0f} % CI [{100 * lo:+.2f}, "
        f"{100 * hi:+.2f}], {n} seeds"
    )


NOT_TESTABLE = "not testable here"  # followed by ": <why>"
NOT_ENOUGH = "not enough seeds"  # fewer than MIN_SEEDS seeds both arms ran
# "holds" only because the other arm diverged (its diverged seeds count at chance): the method
# is stabler there, which says nothing about its accuracy; followed by ": <why>"
COMPARATOR_DIVERGED = "holds (comparator diverged)"

# weakest first: a comparison that does not hold (over seeds) sinks a claim made of several
# comparisons ("best of all", "> both"), whatever the others say; then missing runs; then runs
# that exist but cannot be compared (an arm that did not finish in any seed)
ORDER = (
    "does not hold",
    "not measured",
    NOT_TESTABLE,
    NOT_ENOUGH,
    "does not hold (1 seed)",
    "inconclusive",
    "holds (1 seed)",
    COMPARATOR_DIVERGED,
    "holds",
)


def _rank(verdict: str) -> int:
    return ORDER.index(verdict.split(":")[0])  # "inconclusive: why" ranks as "inconclusive"


def weakest(verdicts: list[str]) -> str:
    return min(verdicts, key=_rank)


def judge(runs: Runs, a: Measured, b: Measured, kind="better") -> str:
    """``compare`` of two arms (``Runs.arm``'s), paired by seed, a diverged seed at chance.
    Where an arm has no result and every run it has failed for a reason other than divergence
    (e.g. missing data), the verdict is "not testable here" and says so, instead of "not
    measured" (nothing is missing). Where both arms diverged in every common seed (both at
    chance), the verdict is "inconclusive", never "holds". A "holds" that does not survive
    dropping the seeds where B diverged is "holds (comparator diverged)": it rests on B's
    instability (its seeds at chance), not on A's accuracy."""
    verdict = compare(a.scores, b.scores, kind)
    common = set(a.scores) & set(b.scores)
    both = common & set(a.diverged) & set(b.diverged)
    if verdict not in ("not measured", NOT_ENOUGH) and common and both == common:
        # chance against chance: D = 0 exactly, which would make "not worse" hold
        return (
            f"inconclusive: {a.label} and {b.label} both diverged in every seed "
            f"({len(common)} of {len(common)}), so the comparison carries no information"
        )
    if verdict == "holds" and (down := sorted(common & set(b.diverged))):
        # does it hold without B's diverged seeds? If not, it rests on B's instability
        finished = sorted(common - set(b.diverged))
        without = compare(
            {s: a.scores[s] for s in finished}, {s: b.scores[s] for s in finished}, kind
        )
        if without != "holds":
            on = (
                f"on the {len(finished)} seed(s) where {b.label} finished: {without}"
                if finished
                else f"{b.label} finished in none"
            )
            return (
                f"{COMPARATOR_DIVERGED}: {b.label} diverged in {len(down)} of {len(common)} "
                f"seeds, counted at chance; {on}. It shows {a.label} stable where {b.label} "
                "is not, not that it is more accurate"
            )
    if verdict != "not measured":
        return verdict
    if any(not m.scores and not m.failed for m in (a, b)):
        return verdict  # a run is missing: it may still be computed
    why = [
        f"{m.label} did not finish in any of its {len(m.failed)} runs"
        for m in (a, b)
        if not m.scores
    ]
    return f"{NOT_TESTABLE}: {'; '.join(why)}"


def text(m: Measured) -> str:
    return m.text()


def _paper_acc(algorithm: str, table=None) -> str:
    mean, std, _ = (table or paper.TABLE1)[algorithm][0]  # CIFAR-10
    return f"{mean:.2f} ± {std:.2f}"
