"""A local Flower federation on 127.0.0.1: one SuperLink, N SuperNodes, then ``flwr run``.

    python -m tinyproto.flower.deploy --run-config "algorithm='fedproto' rounds=5"
    python -m tinyproto.flower.deploy --simulation --run-config "..."   # simulation runtime

Deployment: a SuperLink and one SuperNode per client (``--node-config "partition-id=i
num-partitions=N"``), each a process of its own; ``--simulation``: a SuperLink running Flower's
simulation runtime (Ray), no SuperNodes. 127.0.0.1 only: for trying things and for tests on one
machine (docs/flower.md, "Secure deployment", for real machines). Every port is a free one the
OS hands out at start, so parallel federations do not collide. Flower's home (FLWR_HOME: its
config naming this SuperLink, installed apps, logs, credentials) is a fresh temporary folder,
removed at the end, so nothing touches ``~/.flwr``.

Secure by default (``--insecure`` turns it off): a throw-away CA and SuperLink certificate
(secure.py) and TLS on every connection: SuperNodes and the flwr CLI to the SuperLink, each
ClientApp worker to its SuperNode's Runtime API. SuperNode authentication on top: each
SuperNode gets an EC key pair, its public key is registered with ``flwr supernode register``
before it starts, and the SuperLink (``--enable-supernode-auth``) refuses a node whose key it
does not know. A refused SuperNode exits; the launcher records why (``refused`` in flower.json,
one line printed) and the run goes on without it: its client is absent (a degraded run).
``impostors`` (tests, demos) starts chosen SuperNodes wrongly: with a key never registered
(``unknown-key``), trusting another CA (``untrusted-ca``) or without TLS (``plaintext``).

ClientApps (``--clientapp``): ``worker`` (the default) starts every SuperNode with
``--isolation process`` and, beside it, one long-lived ClientApp process (worker.py) that
imports torch once and keeps the run's data between messages; the launcher waits until every
one is ready before it submits the run. ``per-message`` is Flower's own executor: a fresh
``flwr-clientapp`` process per message (each imports torch and builds the data: a smoke round
took ~40 s instead of ~2 s; docs/flower.md). The run's numbers are the same either way.

ServerApp (``--serverapp``): ``warm`` (the default, deployment only) starts the SuperLink with
``--isolation process`` and, beside it, a warm ServerApp executor (serverexec.py) that imports
torch and the ServerApp and builds the prepared run's data while the SuperNodes start, then
claims the run when it is submitted (about 4 s of the run's time on 2 cores before);
``subprocess`` is Flower's own: the SuperLink's SuperExec starts ``flwr-serverapp`` when the run
is submitted. The run's numbers are the same either way.

While a run goes, the server's log is followed with one ``flwr log --stream`` process (no
status polling): each round's line (``round k/N: acc ..., run folder ...``), warnings and
errors are printed as they come, and the stream's end is the run's end.

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
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tinyproto import store
from tinyproto.config import ConfigError
from tinyproto.data import DataError
from tinyproto.flower import polling, secure, serverexec, settings, worker
from tinyproto.flower.simulation import THREADS

CONNECTION = "tinyproto-local"  # the SuperLink connection written into FLWR_HOME/config.toml
GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 3.0  # seconds between status queries when the log stream is gone (each starts the flwr CLI)
CLIENTAPPS = ("worker", "per-message")  # a long-lived ClientApp per SuperNode, or Flower's own
SERVERAPPS = ("warm", "subprocess")  # a ServerApp process started beforehand, or Flower's own
SUPEREXEC_POLL = "0.25"  # seconds between the SuperLink's claims of a ServerApp task (Flower: 1)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROGRESS = re.compile(r"round \d+/\d+: ")  # server_app.progress_line
LEVEL = re.compile(r"\s*(INFO|WARNING|ERROR|DEBUG)\s*:\s*(.*)")  # Flower's log line
# the flwr CLI, Flower imported before it is needed (~1 s of a core): it runs the command whose
# arguments come as a JSON list on its stdin (an empty stdin: nothing)
WARM_CLI = (
    "import json, sys\n"
    "from flwr.cli.app import app\n"
    "line = sys.stdin.readline()\n"
    "if line:\n"
    "    sys.argv = ['flwr', *json.loads(line)]\n"
    "    sys.exit(app())\n"
)
# flwr supernode register, for every public key path on stdin (one per line), in one process
REGISTER = (
    "import sys\n"
    "from flwr.cli.app import app\n"
    "for line in sys.stdin:\n"
    "    args = ['supernode', 'register', line.strip(), sys.argv[1], '--format', 'json']\n"
    "    try:\n"
    "        app(args, prog_name='flwr', standalone_mode=False)\n"
    "    except SystemExit as e:\n"
    "        if e.code:\n"
    "            raise\n"
    "    print(flush=True)\n"
)
IMPOSTORS = ("unknown-key", "untrusted-ca", "plaintext")  # SuperNodes the SuperLink must refuse
EXIT_CODE = re.compile(r"Exit Code: (\d+)")
GENERIC = ("Failed to initialize the connection", "The SuperNode could not establish")
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

    def __init__(
        self,
        supernodes: int,
        *,
        simulation: bool = False,
        app: Path | None = None,
        clientapp: str = "worker",
        serverapp: str = "warm",
        prepare: dict | None = None,
        secure: bool = True,
        impostors: dict[int, str] | None = None,
        mods: dict[int, list[str]] | None = None,
    ):
        if not isinstance(supernodes, int) or supernodes < 1:
            raise ConfigError(f"invalid supernodes={supernodes!r}: an integer >= 1")
        if clientapp not in CLIENTAPPS:
            raise ConfigError(f"invalid clientapp={clientapp!r}: one of {', '.join(CLIENTAPPS)}")
        if clientapp == "worker" and not worker.available():
            print(
                "tinyproto.flower.deploy: this flwr lacks the Runtime API of flwr 1.42 that the "
                "ClientApp worker uses: a ClientApp process per message (slow)",
                file=sys.stderr,
            )
            clientapp = "per-message"
        if serverapp not in SERVERAPPS:
            raise ConfigError(f"invalid serverapp={serverapp!r}: one of {', '.join(SERVERAPPS)}")
        if simulation:
            serverapp = "subprocess"  # the simulation runtime starts its own
        elif serverapp == "warm" and not serverexec.available():
            print(
                "tinyproto.flower.deploy: this flwr lacks the Runtime API of flwr 1.42 that the "
                "warm ServerApp executor uses: Flower's own (a ServerApp process per run)",
                file=sys.stderr,
            )
            serverapp = "subprocess"
        self.serverapp = serverapp
        self.impostors = dict(impostors or {})
        for i, kind in self.impostors.items():
            if kind not in IMPOSTORS or not isinstance(i, int) or not 0 <= i < supernodes:
                raise ConfigError(
                    f"invalid impostors entry {i!r}: {kind!r}: a SuperNode index in "
                    f"[0, {supernodes}) and one of {', '.join(IMPOSTORS)}"
                )
        if self.impostors and (simulation or not secure):
            raise ConfigError("impostors need a secure deployment (not --insecure, not simulation)")
        self.mods = {i: list(m) for i, m in (mods or {}).items()}
        if self.mods and clientapp != "worker":
            raise ConfigError("mods need the ClientApp worker (clientapp='worker')")
        self.secure = secure
        self.refused: dict[int, str] = {}  # SuperNode index -> why the SuperLink refused it
        self.tls: dict[str, Path] = {}
        self.clientapp = clientapp
        self.prepare = prepare  # a run config whose data the workers build while starting
        root = store.project_root(Path(__file__).resolve().parent)
        self.app = Path(app) if app is not None else root / settings.APP_DIR
        if not (self.app / "pyproject.toml").is_file():
            raise ConfigError(f"invalid app={str(self.app)!r}: no pyproject.toml of a Flower app")
        self.supernodes, self.simulation = supernodes, simulation
        self.home: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = 0
        self.streamed: dict[int, list[str]] = {}  # run id -> its log's lines, as they came
        self._count = 0  # flwr CLI commands run

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

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        """Start ``args`` (a Flower executable of this venv by name, or a full path) in a
        session of its own, its output to ``<name>.log`` in Flower's home."""
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the process owns it
        exe = args[0] if os.sep in args[0] else str(Path(sys.executable).parent / args[0])
        self.procs[name] = subprocess.Popen(
            [exe, *args[1:]],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self.procs[name]

    def start(self, timeout: float = 120.0) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tinyproto-flower-"))
        self.port = free_port()
        link = ["flower-superlink", "--host", "127.0.0.1", "--port", str(self.port)]
        link.append("--disable-runtime-dependency-installation")
        link += ["--simulation"] if self.simulation else []
        # warm: no SuperExec; serverexec.py, started below, claims the runs' ServerApp tasks
        link += ["--isolation", "process"] if self.serverapp == "warm" else []
        if self.secure:
            self.tls = secure.make_tls(self.home / "tls")
            link += ["--ssl-ca-certfile", str(self.tls["ca"])]
            link += ["--ssl-certfile", str(self.tls["certificate"])]
            link += ["--ssl-keyfile", str(self.tls["key"])]
            link += [] if self.simulation else ["--enable-supernode-auth"]
        else:
            link.append("--insecure")
        # its SuperExec claims the run's ServerApp task within SUPEREXEC_POLL s instead of 1 s
        self._spawn("superlink", link, FLWR_SUPEREXEC_TASK_POLL_INTERVAL=SUPEREXEC_POLL)
        trust = f'root-certificates = "{self.tls["ca"]}"' if self.secure else "insecure = true"
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{trust}\n'
        )
        self._wait_ready(timeout)
        if self.prepare is not None:  # the run about to be submitted: its data built meanwhile
            (self.home / "prepare.json").write_text(json.dumps(self.prepare))
        if self.serverapp == "warm":
            self._start_serverexec()
        self.procs["flwr-cli"] = self._warm_cli()  # imports Flower while the rest starts
        if self.secure and not self.simulation:
            self._register_nodes(timeout)
        if not self.simulation:
            for i in range(self.supernodes):
                self._start_supernode(i)
            if self.clientapp == "worker":
                self._wait_workers(timeout)
        if self.serverapp == "warm":
            self._wait_serverexec(timeout)

    def _start_serverexec(self) -> None:
        """The warm ServerApp executor (serverexec.py): torch, the ServerApp and the prepared
        run's data loaded while the SuperNodes start; it claims the runs the SuperLink is given."""
        app = [sys.executable, "-m", "tinyproto.flower.serverexec"]
        app += ["--runtime-api-address", f"127.0.0.1:{self.port}"]
        app += ["--root-certificates", str(self.tls["ca"])] if self.secure else ["--insecure"]
        app += ["--parent-pid", str(self.procs["superlink"].pid)]
        app += ["--ready-file", str(self.home / "serverapp.ready")]
        if (self.home / "prepare.json").exists():
            app += ["--prepare", str(self.home / "prepare.json")]
        self._spawn("serverapp", app)

    def _wait_serverexec(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (self.home / "serverapp.ready").exists():
            if self.procs["serverapp"].poll() is not None or time.monotonic() > deadline:
                text = (self.home / "serverapp.log").read_text(errors="replace")
                raise RuntimeError(f"the warm ServerApp executor did not start:\n{text[-800:]}")
            time.sleep(0.2)

    def _register_nodes(self, timeout: float) -> None:
        """A key pair per SuperNode (an unknown-key impostor's stays unregistered); the others'
        public keys registered with the SuperLink (flwr supernode register, one process)."""
        pairs = secure.make_node_keys(self.home / "keys", self.supernodes)
        self.keys = [private for private, _ in pairs]
        known = [str(pairs[i][1]) for i in range(self.supernodes) if i not in self.impostors]
        if not known:
            return
        p = subprocess.run(
            [sys.executable, "-c", REGISTER, CONNECTION],
            input="\n".join(known) + "\n",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        answers = [json.loads(t) for t in p.stdout.split("\n\n") if t.strip()]
        if (
            p.returncode != 0
            or len(answers) != len(known)
            or not all(a.get("success") for a in answers)
        ):
            raise RuntimeError(f"flwr supernode register failed: {(p.stdout + p.stderr)[-800:]}")

    def _start_supernode(self, i: int) -> None:
        """SuperNode ``i`` (client i) and, with the worker, its ClientApp process."""
        api = free_port()  # the SuperNode's Runtime API, which its ClientApps talk to
        node = ["flower-supernode", "--superlink", f"127.0.0.1:{self.port}"]
        node += ["--port", str(api)]
        node += ["--node-config", f"partition-id={i} num-partitions={self.supernodes}"]
        kind = self.impostors.get(i)
        if not self.secure or kind == "plaintext":
            node.append("--insecure")
        else:
            ca = self.tls["ca"]
            if kind == "untrusted-ca":  # a CA of its own, not the one that signed the SuperLink's
                ca = secure.make_tls(self.home / f"tls-impostor-{i}")["ca"]
            node += ["--root-certificates", str(ca)]
            node += ["--auth-supernode-private-key", str(self.keys[i])]
            # its Runtime API (the ClientApp worker's link to it) with TLS too
            node += ["--ssl-ca-certfile", str(self.tls["ca"])]
            node += ["--ssl-certfile", str(self.tls["certificate"])]
            node += ["--ssl-keyfile", str(self.tls["key"])]
        if kind is not None:
            node += ["--max-retries", "2"]  # refused: it stops trying soon
        if self.clientapp == "per-message":
            self._spawn(f"supernode-{i}", node)
            return
        # Flower's SuperNode with short polling waits (supernode.py), its ClientApp tasks left
        # to the long-lived worker beside it (--isolation process), which it wakes through a
        # named pipe when it holds a message
        wake = self.home / f"clientapp-{i}.wake"
        os.mkfifo(wake)
        shim = [sys.executable, "-m", "tinyproto.flower.supernode", *node[1:]]
        p = self._spawn(
            f"supernode-{i}", [*shim, "--isolation", "process"], **{polling.WAKE_ENV: str(wake)}
        )
        ready = self.home / f"clientapp-{i}.ready"
        app = [sys.executable, "-m", "tinyproto.flower.worker"]
        if self.secure and kind != "plaintext":
            app += ["--root-certificates", str(self.tls["ca"])]
        else:
            app.append("--insecure")
        for mod in self.mods.get(i, []):
            app += ["--mod", mod]
        app += ["--runtime-api-address", f"127.0.0.1:{api}", "--parent-pid", str(p.pid)]
        app += ["--ready-file", str(ready), "--wake", str(wake)]
        if (self.home / "prepare.json").exists():  # the data of the run about to be submitted
            app += ["--prepare", str(self.home / "prepare.json")]
        self._spawn(f"clientapp-{i}", app)

    def _wait_workers(self, timeout: float) -> None:
        """Until every ClientApp worker has imported what it needs (RuntimeError if one of the
        processes ended, TimeoutError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        waiting = set(range(self.supernodes))
        while waiting:
            for i in sorted(waiting):
                for name in (f"supernode-{i}", f"clientapp-{i}"):
                    if self.procs[name].poll() is not None:  # (its log goes with stop())
                        text = (self.home / f"{name}.log").read_text(errors="replace")
                        why = refusal(text) if self.secure and name.startswith("super") else None
                        if why is None:
                            raise RuntimeError(f"{name} exited while starting:\n{text[-800:]}")
                        self.refused[i] = why  # the run goes on without it
                        _end(self.procs[f"clientapp-{i}"])
                        waiting.discard(i)
                        break
                else:
                    if (self.home / f"clientapp-{i}.ready").exists():
                        waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(
                    f"ClientApp workers {sorted(waiting)} not ready in {timeout:g} s"
                )
            time.sleep(0.2)

    def refusals(self) -> dict[int, str]:
        """The SuperNodes the SuperLink refused (they exited saying why), by index; found as
        they start (the worker) or now, by their logs (any ClientApp)."""
        if self.secure and self.home is not None:
            for i in range(self.supernodes):
                p = self.procs.get(f"supernode-{i}")
                if i not in self.refused and p is not None and p.poll() is not None:
                    log = (self.home / f"supernode-{i}.log").read_text(errors="replace")
                    why = refusal(log)
                    if why is not None:
                        self.refused[i] = why
        return dict(self.refused)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["superlink"].poll() is not None:
                raise RuntimeError(f"flower-superlink exited; see {self.home / 'superlink.log'}")
            scheme = "https" if self.secure else "http"
            context = ssl.create_default_context(cafile=self.tls["ca"]) if self.secure else None
            try:
                url = f"{scheme}://127.0.0.1:{self.port}/health"
                with urllib.request.urlopen(url, timeout=2, context=context):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"flower-superlink not ready within {timeout:g} s")

    def _cli(self, *args: str) -> subprocess.Popen:
        """The flwr CLI running ``args``: the warm one (started before, Flower imported; a new
        one is started in its place for the next command) or, before start(), a fresh one.
        Its stdin (to be closed), stdout and stderr are pipes."""
        warm = self.procs.pop("flwr-cli", None)
        p = warm if warm is not None and warm.poll() is None else self._warm_cli()
        self._count += 1
        self.procs[f"flwr-{args[0]}-{self._count}"] = p  # stop() ends it if still running
        if self.home is not None:
            self.procs["flwr-cli"] = self._warm_cli()
        p.stdin.write(json.dumps(list(args)) + "\n")
        p.stdin.flush()  # (communicate() closes it; a stream closes it itself)
        return p

    def _warm_cli(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", WARM_CLI],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def flwr(self, *args: str, timeout: float = 120.0) -> str:
        """The flwr CLI against this SuperLink; its stdout (RuntimeError with it on failure)."""
        p = self._cli(*args)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _end(p)
            raise
        if p.returncode != 0:
            raise RuntimeError(f"flwr {args[0]} failed: {(out + err).strip()[-800:]}")
        return out

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

    def wait(self, run_id: int, timeout: float, echo=None) -> dict:
        """Flower's record of the run once it finished; TimeoutError (run stopped) if not.

        Follows the run's log with one ``flwr log --stream`` process, which ends when the run
        has finished; ``echo(line)`` gets each of its lines (ANSI colours removed) as it comes.
        Should the stream end early, the run's status is polled every POLL seconds instead."""
        deadline = time.monotonic() + timeout
        lines = self.streamed.setdefault(run_id, [])
        stream, reader = self._follow(run_id, lines, echo)
        try:
            stream.wait(timeout=max(0.0, deadline - time.monotonic()))
            reader.join(timeout=10)  # the stream's last lines
        except subprocess.TimeoutExpired:
            pass
        while True:
            st = self.status(run_id)
            if st["status"].startswith("finished"):
                return st
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        _end(stream)
        self.flwr("stop", str(run_id), CONNECTION)
        raise TimeoutError(f"Flower run {run_id} unfinished after {timeout:g} s; stopped")

    def _follow(self, run_id: int, lines: list[str], echo) -> tuple:
        stream = self._cli("log", str(run_id), CONNECTION, "--stream")
        stream.stdin.close()

        def read(pipe) -> None:
            for line in pipe:
                line = ANSI.sub("", line.rstrip("\n"))
                lines.append(line)
                if echo is not None:
                    echo(line)

        reader = threading.Thread(target=read, args=(stream.stdout,), daemon=True)
        reader.start()
        threading.Thread(target=read, args=(stream.stderr,), daemon=True).start()
        return stream, reader

    def logs(self, run_id: int) -> str:
        return self.flwr("log", str(run_id), CONNECTION, "--show")

    def kill_supernode(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Kill SuperNode ``i`` at once (a crash, for tests): its process group (the session it
        was started in, which its ClientApp processes share), its ClientApp worker's and every
        descendant of both."""
        procs = [self.procs[f"supernode-{i}"]]
        procs += [self.procs[f"clientapp-{i}"]] if f"clientapp-{i}" in self.procs else []
        tree = [pid for p in procs for pid in (p.pid, *descendants(p.pid))]
        for p in procs:
            _signal(-p.pid, sig)
        for pid in tree:
            _signal(pid, sig)
        for p in procs:
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


def refusal(log: str) -> str | None:
    """Why a SuperNode that exited was not let in, in one line, from its log (Flower's exit
    report: ``Exit Code: 305`` and the lines after it); None if it did not exit that way."""
    lines = [ANSI.sub("", line).strip() for line in log.splitlines()]
    for k, line in enumerate(lines):
        m = EXIT_CODE.search(line)
        if m:
            why = []
            for text in lines[k + 1 :]:
                if not text or text.startswith(("For more information", "INFO:")):
                    break
                if not text.startswith(GENERIC):  # Flower's lines around the reason
                    why.append(text.rstrip("."))
            return f"exit code {m.group(1)}: {'; '.join(why) or 'no reason given'}"
    return None


def _end(p: subprocess.Popen) -> None:
    """End our child ``p`` (SIGTERM, then SIGKILL after GRACE) and reap it."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
        description="Run tinyproto on a local Flower federation on 127.0.0.1: TLS and "
        "SuperNode authentication with throw-away credentials (unless --insecure).",
    )
    p.add_argument(
        "--run-config",
        action="append",
        default=[],
        help="overrides as for flwr run: \"rounds=5 algorithm='fedproto'\" (once)",
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
    p.add_argument(
        "--clientapp",
        choices=CLIENTAPPS,
        default="worker",
        help="worker: one long-lived ClientApp process per SuperNode (default); per-message: "
        "Flower's own, a fresh process per message (slow)",
    )
    p.add_argument(
        "--serverapp",
        choices=SERVERAPPS,
        default="warm",
        help="warm: a ServerApp process started with the federation, torch and the run's data "
        "loaded before the run (default); subprocess: Flower's own, started when the run is "
        "submitted",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS and no SuperNode authentication (plaintext on 127.0.0.1)",
    )
    p.add_argument("--keep-logs", metavar="DIR", help="copy the Flower processes' logs here")
    args = p.parse_args(argv)
    if len(args.run_config) > 1:
        p.error("--run-config given more than once: put every key=value in one --run-config")
    try:
        overrides = _overrides(args.run_config[0] if args.run_config else "")
        run = settings.parse(overrides)
        _check_before_start(run, args.keep_logs)
    except (ConfigError, DataError) as e:
        line = settings._as_keys(" ".join(str(e).split()))
        print(f"tinyproto.flower.deploy: error: {line}", file=sys.stderr)
        return 2
    n = run.config.num_clients
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop() runs on the way out
    t0 = time.monotonic()
    mode = "simulation" if args.simulation else f"deployment, {n} SuperNodes"
    security = "insecure" if args.insecure else "TLS" + ("" if args.simulation else ", node auth")
    print(f"starting a Flower SuperLink ({mode}, {security}); run folder {run.run_dir}", flush=True)
    fed = LocalFederation(
        n,
        simulation=args.simulation,
        clientapp=args.clientapp,
        serverapp=args.serverapp,
        prepare=overrides,
        secure=not args.insecure,
    )
    with fed:
        startup = time.monotonic() - t0
        print(f"started on 127.0.0.1:{fed.port} in {startup:.1f} s; running", flush=True)
        for i, why in sorted(fed.refused.items()):
            print(f"  SuperNode {i} refused by the SuperLink ({why}): left out", flush=True)
        t1 = time.monotonic()
        run_id = fed.submit(overrides)
        status = fed.wait(run_id, args.timeout, echo=_progress)
        ran = time.monotonic() - t1
        text = "\n".join(fed.streamed.get(run_id, [])) or fed.logs(run_id)
        refused = fed.refusals()
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for f in fed.home.glob("*.log"):
                shutil.copy(f, keep / f.name)
            (keep / f"run-{run_id}.log").write_text(text)
    seconds = time.monotonic() - t0
    folder = written_folder(text) or run.run_dir  # degraded runs are written apart
    ok = status["status"] == "finished:completed" and (folder / "summary.json").exists()
    if folder.is_dir():
        store.write_json(
            folder / "flower.json",
            dict(
                flwr_run_id=run_id,
                mode=mode,
                status=status["status"],
                seconds=seconds,
                startup_seconds=startup,
                run_seconds=ran,
                clientapp=None if args.simulation else fed.clientapp,
                serverapp=None if args.simulation else fed.serverapp,
                tls=fed.secure,
                node_auth=fed.secure and not args.simulation,
                refused={str(i): why for i, why in sorted(refused.items())},
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
        f"Flower run {run_id} completed in {seconds:.0f} s (start-up {startup:.0f} s, run "
        f"{ran:.0f} s): best acc {s['best_acc']:.4f}; per round "
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


def written_folder(log: str) -> Path | None:
    """The run folder the server's log says it wrote (server_app.WRITTEN), if it says so."""
    from tinyproto.flower.server_app import WRITTEN

    for line in reversed(log.splitlines()):
        m = LEVEL.match(line)
        text = m.group(2) if m else line.strip()
        if text.startswith(WRITTEN):
            return Path(text[len(WRITTEN) :].strip())
    return None


def _progress(line: str) -> None:
    """A line of the run's log worth showing while it runs: the server's round lines
    (server_app.progress_line), its warnings and errors."""
    m = LEVEL.match(line)
    level, text = (m.group(1), m.group(2)) if m else ("", line.strip())
    if PROGRESS.match(text):
        print(f"  {text}", flush=True)
    elif level in ("WARNING", "ERROR"):
        print(f"  {level}: {text}", flush=True)


def _check_before_start(run: settings.FlowerRun, keep_logs: str | None) -> None:
    """What the ServerApp would find wrong only after the federation started: the device, the
    results folder (writable), an explicit data source, the memory; and the --keep-logs folder."""
    from tinyproto.runtime.environment import (
        check_environment,
        check_path_text,
        check_writable_folder,
    )

    check_environment(run.config, run.results_dir)
    if keep_logs is not None:
        check_path_text(keep_logs, "keep-logs")
        check_writable_folder(keep_logs, "keep-logs")


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
