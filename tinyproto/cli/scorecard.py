"""``tinyproto scorecard``: judge the paper's claims on the finished runs (``tinyproto.scorecard``)."""

from __future__ import annotations

import sys

from tinyproto.scorecard.render import did_not_finish, markdown, update_readme, write
from tinyproto.scorecard.rules import SCORE_PROFILES, Runs


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
