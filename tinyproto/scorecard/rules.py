"""The scorecard's verdict rules, and the runs a claim is judged on. The reproduction scorecard: each claim of the paper, the paper's figure, ours per profile, a
computed verdict, and the run ids behind it.

Nothing here runs anything: a claim is judged on the finished runs found in a profile's runs
folder (``store.runs_root``), looked up by the run ids of the configs the claim needs (the same
configs the notebooks build), over whichever of seeds 0, 1, 2 are there. Missing runs give the
verdict "not measured" with what is missing.

Verdict rules (stated once, applied to every row):
- "A > B" (accuracy, best over rounds, mean over seeds): holds if mean(A) - mean(B) exceeds one
  standard error of that difference (sqrt(sd_A^2/n_A + sd_B^2/n_B)); does not hold if it is below
  minus one standard error; otherwise "inconclusive". With one seed there is no standard error:
  the verdict is "holds (1 seed)" / "does not hold (1 seed)", never stronger.
- "A is not worse than B": does not hold only if A is lower by more than one standard error.
- "A best of all": A > each other algorithm, by the rule above; the weakest verdict wins
  (``ORDER``: "does not hold" over seeds sinks the claim; then "not measured").
- An arm whose runs all failed (``failed.json``: e.g. a divergence) is "not testable here", with
  the reason, not "not measured".
- A finished run that fails verification is never judged and never dropped silently: the row
  names it with why (``Runs.take_skipped``: its text and the ``skipped`` column).
- Exact counts (the 10x cut) hold only if equal to the last float.
- Structured sparsity (Fig. 2 / App. A): the share of local-prototype energy off the class masks
  at the last round holds if at most half the no-structure level 1 - s/d.
- Dead units (Sec. 3, "about 50 % per class"): holds if FedProto's mean share of exactly-zero
  prototype dimensions per (client, class) lies in [0.4, 0.6].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    "claim", "source", "paper", "profile", "ours", "verdict", "seeds", "rounds", "runs", "skipped"
)


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: an algorithm and its overrides of the profile."""

    label: str
    algorithm: str
    overrides: tuple = ()

    def config(self, profile: str, seed: int) -> Config:
        return Config(algorithm=self.algorithm, profile=profile, seed=seed, **dict(self.overrides))


def arm(label: str, algorithm: str, **overrides) -> Arm:
    return Arm(label, algorithm, tuple(sorted(overrides.items())))


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
        if rid not in self._cache:
            folder = self.root / rid
            summary = None
            if is_complete(folder):
                try:
                    summary = verify_run(folder)["summary"]
                except RunFolderError as e:
                    self.damaged[rid] = " ".join(str(e).split())
            self._cache[rid] = summary
        if rid in self.damaged and rid not in self._skipped:
            self._skipped.append(rid)
        return self._cache[rid]

    def take_skipped(self) -> list[str]:
        """"run id: why" of the damaged runs asked for since the last call (one claim row)."""
        out = [f"{rid}: {self.damaged[rid]}" for rid in self._skipped]
        self._skipped = []
        return out

    def last(self, a: Arm) -> tuple[list[float], list[str], list[dict]]:
        """As :meth:`arm`, with the last round's accuracies."""
        _, ids, sums = self.arm(a)
        return [float(s["last_acc"]) for s in sums], ids, sums

    def arm(self, a: Arm) -> tuple[list[float], list[str], list[dict]]:
        """(best accuracies, run ids, summaries) over the seeds that have a finished run."""
        from tinyproto.store.failures import before_failure, failure

        accs, ids, sums, failed = [], [], [], []
        for seed in SEEDS:
            try:
                cfg = a.config(self.profile, seed)
            except ConfigError:
                continue
            s = self.get(cfg)
            if s is not None:
                accs.append(float(s["best_acc"]))
                ids.append(cfg.run_id())
                sums.append(s)
            elif (line := failure(cfg, self.root)) is not None:  # a run that could not finish
                done = before_failure(cfg, self.root)  # e.g. "best 99.82 % in rounds 1-69"
                failed.append(f"seed {seed}: {line}" + (f"; {done}" if done else ""))
        self.failed[a.label] = failed
        return accs, ids, sums


def _mean_se(x: list[float]) -> tuple[float, float]:
    m = float(np.mean(x))
    se2 = float(np.var(x, ddof=1)) / len(x) if len(x) > 1 else math.nan
    return m, se2


def compare(a: list[float], b: list[float], kind: str = "better") -> str:
    """The verdict of mean(a) vs mean(b) by the module's rule ("better" or "not_worse")."""
    if not a or not b:
        return "not measured"
    (ma, va), (mb, vb) = _mean_se(a), _mean_se(b)
    diff = ma - mb
    if math.isnan(va) or math.isnan(vb):
        one = " (1 seed)"
        if kind == "not_worse":
            return ("holds" if diff >= 0 else "does not hold") + one
        return ("holds" if diff > 0 else "does not hold") + one
    se = math.sqrt(va + vb)
    if kind == "not_worse":
        return "does not hold" if diff < -se else "holds"
    if diff > se:
        return "holds"
    if diff < -se:
        return "does not hold"
    return "inconclusive"


NOT_TESTABLE = "not testable here"
NOT_ENOUGH = "not enough seeds"  # followed by ": <why>"

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
    "holds",
)


def _rank(verdict: str) -> int:
    return ORDER.index(NOT_TESTABLE if verdict.startswith(NOT_TESTABLE) else verdict)


def weakest(verdicts: list[str]) -> str:
    return min(verdicts, key=_rank)


def judge(runs: Runs, a: tuple[str, list[float]], b: tuple[str, list[float]], kind="better") -> str:
    """``compare`` of two arms given as (label, best accuracies), after ``runs.arm`` read them.
    Where an arm has no finished run but every run it has failed (e.g. diverged), the verdict is
    "not testable here" and says so, instead of "not measured" (nothing is missing)."""
    verdict = compare(a[1], b[1], kind)
    if verdict != "not measured":
        return verdict
    if any(not acc and not runs.failed.get(label) for label, acc in (a, b)):
        return verdict  # a run is missing: it may still be computed
    why = [
        f"{label} did not finish in any of its {len(runs.failed[label])} runs"
        for label, acc in (a, b)
        if not acc
    ]
    return f"{NOT_TESTABLE}: {'; '.join(why)}"


def text(label: str, acc: list[float], failed: list[str] | None = None) -> str:
    """ "label mean ± std"; runs that did not finish (``failed``: their errors) are named."""
    every = " | ".join(failed or [])  # each failed seed, with its error
    why = f" ({len(failed)} did not finish: {every})" if failed else ""
    if not acc:
        return f"{label}: did not finish ({every})" if failed else f"{label}: missing"
    m = 100 * np.mean(acc)
    sd = f" ± {100 * np.std(acc, ddof=1):.2f}" if len(acc) > 1 else ""
    return f"{label} {m:.2f}{sd}{why}"


def _paper_acc(algorithm: str, table=None) -> str:
    mean, std, _ = (table or paper.TABLE1)[algorithm][0]  # CIFAR-10
    return f"{mean:.2f} ± {std:.2f}"
