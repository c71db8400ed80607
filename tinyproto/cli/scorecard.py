"""``tinyproto scorecard``: judge the paper's claims on the finished runs (``tinyproto.scorecard``)."""

from __future__ import annotations

import sys

from tinyproto.scorecard.render import DOC, did_not_finish, doc_path, markdown, update_docs, write
from tinyproto.scorecard.rules import SCORE_PROFILES, Runs

DOC_NAME = DOC.as_posix()  # docs/scorecard.md


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scorecard",
        help="judge the paper's claims on the finished runs (writes results/scorecard.csv)",
        description="Recompute the reproduction scorecard from the finished runs of the quick, "
        f"long and paper profiles (nothing is run) and write results/scorecard.csv; --markdown "
        f"prints the table of {DOC_NAME}, --check fails if {DOC_NAME}'s table differs from it.",
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


def cmd(args) -> int:
    if args.compute:
        from tinyproto.scorecard.claims import claims
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
    for where, why in df.attrs.get("damaged", {}).items():  # never judged, never silent
        print(f"scorecard: skipped damaged run {where}: {why}", file=sys.stderr)
    table = markdown(df)
    if args.update_docs:
        update_docs(df)
    if args.check and table not in doc_path().read_text():
        print(
            f"tinyproto: error: {DOC_NAME}'s scorecard differs from the runs'; run "
            "`tinyproto scorecard --update-docs` (or paste `tinyproto scorecard --markdown` "
            "between its markers)",
            file=sys.stderr,
        )
        return 1
    print(table if args.markdown else df[["claim", "profile", "verdict"]].to_string(index=False))
    print(f"saved    {path}", file=sys.stderr)
    return 0
