"""The reproduction scorecard: each claim of the paper, the paper's figure, ours per profile, a
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
- Exact counts (the 10x cut) hold only if equal to the last float.
- Structured sparsity (Fig. 2 / App. A): the share of local-prototype energy off the class masks
  at the last round holds if at most half the no-structure level 1 - s/d.
- Dead units (Sec. 3, "about 50 % per class"): holds if FedProto's mean share of exactly-zero
  prototype dimensions per (client, class) lies in [0.4, 0.6].
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tinyproto import paper
from tinyproto.config import Config, ConfigError
from tinyproto.store import RunFolderError, is_complete, runs_root, verify_run

SEEDS = (0, 1, 2)
SCORE_PROFILES = ("quick", "long", "paper")
ALL_FEDERATED = ("fedproto", "fedtgp", "feddistill", "fml", "lg-fedavg", "fedkd", "tinyproto-fp")
COLUMNS = ("claim", "source", "paper", "profile", "ours", "verdict", "seeds", "rounds", "runs")


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
                except RunFolderError:
                    summary = None
            self._cache[rid] = summary
        return self._cache[rid]

    def arm(self, a: Arm) -> tuple[list[float], list[str], list[dict]]:
        """(best accuracies, run ids, summaries) over the seeds that have a finished run."""
        from tinyproto.failures import before_failure, failure

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


NOT_TESTABLE = "not testable here"  # followed by ": <why>"

# weakest first: a comparison that does not hold (over seeds) sinks a claim made of several
# comparisons ("best of all", "> both"), whatever the others say; then missing runs; then runs
# that exist but cannot be compared (an arm that did not finish in any seed)
ORDER = (
    "does not hold",
    "not measured",
    NOT_TESTABLE,
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


def _text(label: str, acc: list[float], failed: list[str] | None = None) -> str:
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


def scorecard(profiles=SCORE_PROFILES, roots: dict | None = None) -> pd.DataFrame:
    """Every claim for every profile, from the finished runs; one row per (claim, profile)."""
    from tinyproto.claims import claims

    rows = []
    for p in profiles:
        rows += claims(Runs(p, (roots or {}).get(p)))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    order = {c: i for i, c in enumerate(dict.fromkeys(df["claim"]))}
    return df.sort_values(
        ["claim", "profile"],
        key=lambda s: (
            s.map(order)
            if s.name == "claim"
            else s.map({p: i for i, p in enumerate(SCORE_PROFILES)})
        ),
    ).reset_index(drop=True)


MARK_BEGIN = "<!-- scorecard: generated by `tinyproto scorecard`; do not edit by hand -->"
MARK_END = "<!-- /scorecard -->"


def markdown(df: pd.DataFrame) -> str:
    """The scorecard as the README shows it: one line per claim and profile."""
    lines = [
        MARK_BEGIN,
        "",
        "| claim | paper | source | profile | ours (best acc. %, mean ± std over seeds) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        n = f", {r.seeds} seed{'s' if r.seeds != 1 else ''}, {r.rounds} rounds" if r.seeds else ""
        lines.append(
            f"| {r.claim} | {r.paper} | {r.source} | {r.profile}{n} | {r.ours} | {r.verdict} |"
        )
    return "\n".join([*lines, "", MARK_END])


def write(path: Path | None = None, profiles=SCORE_PROFILES) -> tuple[pd.DataFrame, Path]:
    """Compute the scorecard and write it to ``results/scorecard.csv`` (or ``path``)."""
    from tinyproto.store import results_root, write_csv

    df = scorecard(profiles)
    path = Path(path) if path is not None else results_root() / "scorecard.csv"
    write_csv(path, df)
    return df, path


def update_readme(df: pd.DataFrame, readme: Path | None = None) -> bool:
    """Replace README.md's generated scorecard block with ``df``'s; True if it changed."""
    from tinyproto.store import project_root

    readme = Path(readme) if readme is not None else project_root() / "README.md"
    text = readme.read_text()
    a, b = text.find(MARK_BEGIN), text.find(MARK_END)
    if a < 0 or b < a:
        raise ValueError(f"{readme}: no scorecard markers ({MARK_BEGIN!r} ... {MARK_END!r})")
    new = text[:a] + markdown(df) + text[b + len(MARK_END) :]
    if new != text:
        readme.write_text(new)
    return new != text


def did_not_finish(failed: dict[str, str], shown: int = 3) -> list[str]:
    """One line per distinct error of the runs that did not finish ({run id: error}), naming
    up to ``shown`` of its runs: a missing dataset fails every run of a profile the same way,
    and is said once, not once per run."""
    by_error: dict[str, list[str]] = {}
    for rid, line in failed.items():
        by_error.setdefault(line, []).append(rid)
    lines = []
    for error, ids in by_error.items():
        named = ", ".join(ids[:shown]) + (
            f" and {len(ids) - shown} more" if len(ids) > shown else ""
        )
        runs = f"run {named} did" if len(ids) == 1 else f"{len(ids)} runs ({named}) did"
        lines.append(f"scorecard: {runs} not finish: {error}")
    return lines


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scorecard",
        help="judge the paper's claims on the finished runs (writes results/scorecard.csv)",
        description="Recompute the reproduction scorecard from the finished runs of the quick, "
        "long and paper profiles (nothing is run) and write results/scorecard.csv; --markdown "
        "prints the README's table, --check fails if README.md's table differs from it.",
    )
    p.add_argument("--markdown", action="store_true", help="print the README table")
    p.add_argument(
        "--check", action="store_true", help="exit 1 if README.md's scorecard is not this one"
    )
    p.add_argument(
        "--update-readme", action="store_true", help="rewrite README.md's scorecard block"
    )
    p.add_argument(
        "--compute",
        choices=SCORE_PROFILES,
        default=None,
        metavar="PROFILE",
        help="first compute the missing runs of PROFILE's claims (resumable; hours for long)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --compute: also compute again the runs recorded as failed (failed.json); "
        "by default they are skipped, since a diverging run diverges again",
    )


def cmd(args) -> int:

    from tinyproto.store import project_root

    if args.compute:
        from tinyproto.claims import claims
        from tinyproto.sweep import sweep

        runs = Runs(args.compute)
        claims(runs)
        # seed-major: every claim gets its first seed before any gets its second, so an
        # interrupted computation (hours for long) leaves a 1-seed verdict on every row
        todo = sorted(runs.missing(), key=lambda c: c.seed)
        if not args.retry_failed:  # runs are deterministic: a recorded failure would recur
            from tinyproto.sweep import recorded_failures

            recorded = recorded_failures(todo)
            for rid, line in recorded.items():
                print(
                    f"scorecard: skipping run {rid}, which failed before ({line}); "
                    "--retry-failed computes it again",
                    file=sys.stderr,
                )
            todo = [c for c in todo if c.run_id() not in recorded]
        print(f"scorecard: {len(todo)} {args.compute} runs to compute", file=sys.stderr)
        if todo:  # a run that cannot finish (e.g. diverges) is recorded; the others go on
            done = sweep(
                todo, desc=f"{args.compute} scorecard runs", keep_going=True, retry_failed=True
            )
            for line in did_not_finish(done.attrs.get("failed", {})):
                print(line, file=sys.stderr)
    df, path = write()
    table = markdown(df)
    if args.update_readme:
        update_readme(df)
    if args.check and table not in (project_root() / "README.md").read_text():
        print(
            "tinyproto: error: README.md's scorecard differs from the runs'; paste "
            "`tinyproto scorecard --markdown` between its markers",
            file=sys.stderr,
        )
        return 1
    print(table if args.markdown else df[["claim", "profile", "verdict"]].to_string(index=False))
    print(f"saved    {path}", file=sys.stderr)
    return 0
