"""A local Flower federation on 127.0.0.1: one SuperLink, N SuperNodes, then ``flwr run``.

    python -m tinyproto.flower.deploy --run-config "algorithm='fedproto' rounds=5"
    python -m tinyproto.flower.deploy --simulation --run-config "..."   # simulation runtime

Deployment: a SuperLink and one SuperNode per client (``--node-config "partition-id=i
num-partitions=N"``), each a process of its own; ``--simulation``: a SuperLink running Flower's
simulation runtime (Ray), no SuperNodes. Insecure mode (no TLS) and 127.0.0.1 only: for trying
things and for tests on one machine. Every port is a free one the OS hands out at start, so
parallel federations do not collide. Flower's home (FLWR_HOME: its config naming this
SuperLink, installed apps, logs) is a fresh temporary folder, so nothing touches ``~/.flwr``.

Each process is started in a session of its own. Stopping (at the end, on an error, on Ctrl-C
or SIGTERM) ends exactly the processes started here, their process groups (the sessions they
lead) and their descendants, found by PID before anything is signalled: SIGTERM, then SIGKILL
after a grace period. Nothing is looked up by name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tinyproto import store
from tinyproto.config import ConfigError
from tinyproto.flower import settings
from tinyproto.flower.simulation import THREADS

CONNECTION = "tinyproto-local"  # the SuperLink connection written into FLWR_HOME/config.toml
GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 3.0  # seconds between status queries (each starts the flwr CLI: ~1 s of CPU)
PAIR = re.compile(r"(\S+?)=('[^']*'|\"[^\"]*\"|\S+)")  # a pair, as flwr run reads them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid``'s living descendants (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo += children.get(p, [])
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


class LocalFederation:
    """A SuperLink and ``supernodes`` SuperNodes (or the simulation runtime) on 127.0.0.1.

    Use as a context manager; :meth:`stop` ends every process it started, by PID.
    """

    def __init__(self, supernodes: int, *, simulation: bool = False, app: Path | None = None):
        if not isinstance(supernodes, int) or supernodes < 1:
            raise ConfigError(f"invalid supernodes={supernodes!r}: an integer >= 1")
        root = store.project_root(Path(__file__).resolve().parent)
        self.app = Path(app) if app is not None else root / settings.APP_DIR
        if not (self.app / "pyproject.toml").is_file():
            raise ConfigError(f"invalid app={str(self.app)!r}: no pyproject.toml of a Flower app")
        self.supernodes, self.simulation = supernodes, simulation
        self.home: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0

    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def env(self) -> dict:
        env = dict(os.environ, FLWR_HOME=str(self.home), FLWR_TELEMETRY_ENABLED="0")
        env.update(FLWR_DISABLE_UPDATE_CHECK="1", FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env  # Flower's executables start one another by name: this venv's come first

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        exe = str(Path(sys.executable).parent / args[0])
        self.procs[name] = subprocess.Popen(
            [exe, *args[1:]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start(self, timeout: float = 120.0) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tinyproto-flower-"))
        self.port = free_port()
        link = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(self.port)]
        link.append("--disable-runtime-dependency-installation")
        self._spawn("superlink", link + (["--simulation"] if self.simulation else []))
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self._wait_ready(timeout)
        if not self.simulation:
            for i in range(self.supernodes):
                node = f"partition-id={i} num-partitions={self.supernodes}"
                self._spawn(
                    f"supernode-{i}",
                    [
                        "flower-supernode",
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{self.port}",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        node,
                    ],
                )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["superlink"].poll() is not None:
                raise RuntimeError(f"flower-superlink exited; see {self.home / 'superlink.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"flower-superlink not ready within {timeout:g} s")

    def flwr(self, *args: str, timeout: float = 120.0) -> str:
        """The flwr CLI against this SuperLink; its stdout (RuntimeError with it on failure)."""
        exe = str(Path(sys.executable).parent / "flwr")
        r = subprocess.run(
            [exe, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            raise RuntimeError(f"flwr {args[0]} failed: {(r.stdout + r.stderr).strip()[-800:]}")
        return r.stdout

    def submit(self, run_config: dict) -> int:
        """``flwr run`` the app with ``run_config`` (overrides); returns Flower's run id."""
        args = ["run", str(self.app), CONNECTION, "--format", "json"]
        if run_config:
            args += ["--run-config", settings.to_arg(run_config)]
        if self.simulation:  # each ClientApp with the engine's torch threads (simulation.py)
            sim = f"num-supernodes={self.supernodes} client-resources-num-cpus={THREADS}"
            args += ["--federation-config", sim]
        out = json.loads(self.flwr(*args))
        if not out.get("success"):
            raise RuntimeError(f"flwr run failed: {out.get('error-message', out)}")
        return int(out["run-id"])

    def status(self, run_id: int) -> dict:
        runs = json.loads(self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json"))
        return runs["runs"][0]

    def wait(self, run_id: int, timeout: float) -> dict:
        """Flower's record of the run once it finished; TimeoutError (run stopped) if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(run_id)
            if st["status"].startswith("finished"):
                return st
            time.sleep(POLL)
        self.flwr("stop", str(run_id), CONNECTION)
        raise TimeoutError(f"Flower run {run_id} unfinished after {timeout:g} s; stopped")

    def logs(self, run_id: int) -> str:
        return self.flwr("log", str(run_id), CONNECTION, "--show")

    def kill_supernode(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Kill SuperNode ``i`` at once (a crash, for tests): its process group (the session it
        was started in, which its ClientApp processes share) and every descendant."""
        p = self.procs[f"supernode-{i}"]
        tree = [p.pid, *descendants(p.pid)]
        _signal(-p.pid, sig)
        for pid in tree:
            _signal(pid, sig)
        p.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """End every process started here, and its descendants, by PID."""
        ours = [p for p in self.procs.values() if p.returncode is None]  # reaped: pid not ours
        pids = []
        for p in ours:
            pids += [p.pid, *descendants(p.pid)]
        for p in ours:
            _signal(-p.pid, signal.SIGTERM)  # its session's group: our child is its leader
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)  # no reaping yet: an unreaped leader keeps its group id ours
        for p in ours:
            _signal(-p.pid, signal.SIGKILL)
        for pid in pids:
            if alive(pid):
                _signal(pid, signal.SIGKILL)
        for p in ours:
            try:
                p.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


def _signal(pid: int, sig: int) -> None:
    """os.kill(pid, sig), a negative pid meaning its process group; gone already is fine."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (checked before anything starts)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"invalid timeout={text!r}: a number of seconds > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m tinyproto.flower.deploy``: start, run one app run, report, stop."""
    p = argparse.ArgumentParser(
        prog="python -m tinyproto.flower.deploy",
        description="Run tinyproto on a local Flower federation (127.0.0.1, insecure).",
    )
    p.add_argument(
        "--run-config",
        default="",
        help="overrides as for flwr run: \"rounds=5 algorithm='fedproto'\"",
    )
    p.add_argument(
        "--simulation", action="store_true", help="the simulation runtime, no SuperNodes"
    )
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=7200.0,
        help="seconds before the run is stopped (a number > 0)",
    )
    p.add_argument("--keep-logs", metavar="DIR", help="copy the Flower processes' logs here")
    args = p.parse_args(argv)
    try:
        overrides = _overrides(args.run_config)
        run = settings.parse(overrides)
    except ConfigError as e:
        print(f"tinyproto.flower.deploy: error: {e}", file=sys.stderr)
        return 2
    n = run.config.num_clients
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop() runs on the way out
    t0, started = time.monotonic(), time.time()
    with LocalFederation(n, simulation=args.simulation) as fed:
        mode = "simulation" if args.simulation else f"deployment, {n} SuperNodes"
        print(f"Flower SuperLink on 127.0.0.1:{fed.port} ({mode}); run folder {run.run_dir}")
        run_id = fed.submit(overrides)
        status = fed.wait(run_id, args.timeout)
        text = fed.logs(run_id)
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for f in fed.home.glob("*.log"):
                shutil.copy(f, keep / f.name)
            (keep / f"run-{run_id}.log").write_text(text)
    seconds = time.monotonic() - t0
    from tinyproto.flower.server_app import degraded_dir

    folder = run.run_dir
    written = degraded_dir(run) / "summary.json"
    if written.exists() and written.stat().st_mtime >= started:
        folder = written.parent  # this run lost a client: written apart from clean runs
    ok = status["status"] == "finished:completed" and (folder / "summary.json").exists()
    if folder.is_dir():
        store.write_json(
            folder / "flower.json",
            dict(
                flwr_run_id=run_id,
                mode=mode,
                status=status["status"],
                seconds=seconds,
                network_traffic=status.get("network-traffic"),
                compute_time=status.get("compute-time"),
            ),
        )
    if not ok:
        errors = [line for line in text.splitlines() if "Error" in line or "ERROR" in line]
        print(f"Flower run {run_id}: {status['status']}; {(errors or ['no error logged'])[-1]}")
        return 1
    s = json.loads((folder / "summary.json").read_text())
    traffic = (status.get("network-traffic") or {}).get("total-bytes")
    counted = f"; Flower's Fleet API counted {traffic} bytes in all" if traffic else ""
    print(
        f"Flower run {run_id} completed in {seconds:.0f} s: best acc {s['best_acc']:.4f}; per round "
        f"{s['comm_bytes_per_round']:.0f} payload bytes, {s['wire_bytes_per_round']:.0f} on the "
        f"wire (+{s['wire_control_bytes_per_round']:.0f} control){counted}"
    )
    d = s.get("degraded")
    if d:
        gone = " ".join(str(c) for c in sorted(set(d["absent"]) | set(d["failed"])))
        print(
            f"DEGRADED: client(s) {gone} missing (rounds {d['failed_rounds'] or 'all'}); the "
            f"accuracy is over the {d['clients_throughout']} of {d['num_clients']} clients that "
            f"answered throughout; run folder {folder} (apart from clean runs)"
        )
        return 3
    print(f"run folder {folder}")
    return 0


def _overrides(text: str) -> dict:
    """``--run-config`` text as flwr parses it; a relative results-dir made absolute here."""
    from flwr.common.config import parse_config_args

    leftover = PAIR.sub(" ", text).strip()  # flwr's parser skips what is not key=value
    if leftover:
        raise ConfigError(f"invalid --run-config {text!r}: {leftover!r} is not key=value")
    try:
        overrides = parse_config_args([text]) if text.strip() else {}
    except Exception as e:  # noqa: BLE001 - flwr's click error: one line of its own
        raise ConfigError(f"invalid --run-config {text!r}: {' '.join(str(e).split())}") from None
    settings.parse(overrides)
    if overrides.get("results-dir"):
        overrides["results-dir"] = str(Path(overrides["results-dir"]).expanduser().resolve())
    return overrides


if __name__ == "__main__":
    sys.exit(main())
