"""``tinyproto run`` (one federated experiment) and ``tinyproto data`` (where the embedded
Fashion-MNIST comes from)."""

from __future__ import annotations

from tinyproto.cli.flags import add_config_flags, config_from_args


def add_parser(subparsers) -> None:
    r = subparsers.add_parser(
        "run",
        help="run one federated experiment",
        description="Run one federated experiment and write results/.../runs/<run-id>/. "
        "Unset fields come from --profile.",
    )
    add_config_flags(r)
    o = r.add_argument_group("run folder")
    o.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="runs folder. Default: results/runs (quick), results/<profile>/runs (smoke, long, paper)",
    )
    mode = o.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue from the run's checkpoint, if any"
    )
    mode.add_argument(
        "--restart",
        action="store_true",
        help="discard the run's checkpoint or damaged files and start from round 0",
    )
    mode.add_argument(
        "--reuse",
        action="store_true",
        help="return the finished run with the same id (the default: a finished run is never "
        "recomputed; --restart computes it again)",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = subparsers.add_parser("data", help="locate (or fetch) the embedded Fashion-MNIST and say where")
    d.add_argument(
        "--data-dir", default=None, metavar="DIR", help="folder with the idx files (explicit)"
    )


def _mode(summary: dict) -> str:
    """How the clients were executed (the summary's record; older runs lack it)."""
    workers, threads = summary.get("client_workers"), summary.get("torch_threads")
    if workers is None:
        return ""
    where = "in this process" if workers == 1 else f"in {workers} worker processes"
    return f"; clients {where}, {threads} torch thread each" if threads else f"; clients {where}"


def cmd(args) -> int:
    from tinyproto.runtime.engine import run

    cfg = config_from_args(args)
    res = run(
        cfg,
        root=args.results,
        resume=args.resume,
        reuse=args.reuse,
        restart=args.restart,
        progress=not args.no_progress,
    )
    s = res.summary
    print(f"run      {s['run_id']}  ({cfg.profile} profile, {cfg.dataset}, seed {cfg.seed})")
    if res.origin == "reused":
        print("state    reused the finished run (nothing computed; --restart computes it again)")
    elif res.origin == "restarted":
        print("state    restarted: the folder's earlier files were discarded and computed again")
    elif res.origin == "started fresh":
        print("state    started fresh (--resume found no checkpoint)")
    elif res.origin != "computed":
        print(f"state    {res.origin}")
    print(f"data     {s['data_source']}")
    print(f"accuracy best {s['best_acc']:.4f} (round {s['best_round']}), last {s['last_acc']:.4f}")
    if res.config.secure_agg:  # uploads are ring elements, not floats
        print(
            f"comm     {s['comm_bytes_per_round']:.0f} bytes/round (up: masked int64 tables, "
            f"secure aggregation; down {s['download_floats_per_round']:.0f} floats)"
        )
    else:
        print(
            f"comm     {s['comm_floats_per_round']:.0f} floats/round "
            f"(up {s['upload_floats_per_round']:.0f}, down {s['download_floats_per_round']:.0f}), "
            f"{s['comm_bytes_per_round']:.0f} bytes/round"
        )
    if s.get("mu_resolved") is not None:
        print(f"mu       {s['mu_resolved']:g}")
    print(
        f"time     {s['wall_seconds']:.1f} s ({s['seconds_per_round']:.2f} s/round, {s['device']}"
        f"{_mode(s)})"
    )
    print(f"saved    {res.run_dir}")
    return 0


def cmd_data(args) -> int:
    from tinyproto.data import locate_fmnist

    path, source = locate_fmnist(args.data_dir)
    print(f"Fashion-MNIST: {source}")
    print(f"files in {path}")
    return 0
