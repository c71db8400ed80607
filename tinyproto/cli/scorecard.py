"""``tinyproto scorecard``: judge the paper's claims on the finished runs (``tinyproto.scorecard``)."""

from __future__ import annotations

import sys

from tinyproto.scorecard.render import (
    DOC,
    codecs_block,
    did_not_finish,
    doc_path,
    markdown,
    update_docs,
    write,
)
from tinyproto.scorecard.rules import SCORE_PROFILES, Runs

DOC_NAME = DOC.as_posix()  # docs/scorecard.md


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scorecard",
        help="judge the paper's claims on the finished runs (writes results/scorecard.csv)",
        description="Recompute the reproduction scorecard from the finished runs of the "
        f"{', '.join(SCORE_PROFILES[:-1])} and {SCORE_PROFILES[-1]} profiles (nothing is run unless "
        f"--compute is given) and write results/scorecard.csv; --markdown prints the table of "
        f"{DOC_NAME}, --check fails if {DOC_NAME}'s generated tables (the scorecard, the codec "
        "tables) differ from the runs' and results/'s.",
    )
    p.add_argument("--markdown", action="store_true", help=f"print the table of {DOC_NAME}")
    p.add_argument(
        "--check", action="store_true", help=f"exit 1 if {DOC_NAME}'s scorecard is not this one"
    )
    p.add_argument(
        "--update-docs",
        "--update-readme",  # its name from when the table lived in README.md
        dest="update_docs",
        action="store_true",
        help=f"rewrite the generated table of {DOC_NAME} (--update-readme: the same)",
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


def compute(profile: str, retry_failed: bool = False) -> None:
    """Compute the missing runs of ``profile``'s claims, in passes: first the mu grid's tuning
    runs (validation > 0), whose outcome decides the tuned arms' configs; then every other
    missing run, claim-major: in the scorecard's order of claims (the headline comparisons
    first), every seed of a claim's arms before the next claim's. A verdict needs 3 seeds, so an
    interrupted computation leaves the first claims judged instead of every row at "not enough
    seeds". A run is attempted at most once per call; a run recorded as failed is skipped
    unless ``retry_failed``."""
    from tinyproto.scorecard.claims import claims
    from tinyproto.sweep import recorded_failures, sweep

    attempted: set[str] = set()
    while True:
        runs = Runs(profile)
        claims(runs)
        todo = [c for c in runs.missing() if c.run_id() not in attempted]
        if not retry_failed:  # runs are deterministic: a recorded failure would recur
            recorded = recorded_failures(todo)
            for rid, line in recorded.items():
                print(
                    f"scorecard: skipping run {rid}, which failed before ({line}); "
                    "--retry-failed computes it again",
                    file=sys.stderr,
                )
                attempted.add(rid)
            todo = [c for c in todo if c.run_id() not in recorded]
        tuning = [c for c in todo if c.validation > 0]
        batch = tuning or todo  # Runs.missing(): in the order the claims asked for them
        what = "mu-grid tuning runs" if tuning else "runs"
        print(f"scorecard: {len(batch)} {profile} {what} to compute", file=sys.stderr)
        if not batch:
            return
        attempted.update(c.run_id() for c in batch)
        # a run that cannot finish (e.g. diverges) is recorded; the others go on
        done = sweep(batch, desc=f"{profile} scorecard {what}", keep_going=True, retry_failed=True)
        for line in did_not_finish(done.attrs.get("failed", {})):
            print(line, file=sys.stderr)


def cmd(args) -> int:
    if args.compute:
        compute(args.compute, retry_failed=args.retry_failed)
    df, path = write()
    for where, why in df.attrs.get("damaged", {}).items():  # never judged, never silent
        print(f"scorecard: skipped damaged run {where}: {why}", file=sys.stderr)
    table = markdown(df)
    if args.update_docs:
        update_docs(df)
    if args.check and not all(x in doc_path().read_text() for x in (table, codecs_block())):
        print(
            f"tinyproto: error: {DOC_NAME}'s scorecard or codec tables differ from the runs' "
            "and results/'s; run "
            "`tinyproto scorecard --update-docs` (or paste `tinyproto scorecard --markdown` "
            "between its markers)",
            file=sys.stderr,
        )
        return 1
    print(table if args.markdown else df[["claim", "profile", "verdict"]].to_string(index=False))
    print(f"saved    {path}", file=sys.stderr)
    return 0
