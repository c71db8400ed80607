"""Where a run's clients live: in this process (LocalClients) or side by side in worker
processes (ClientPool); both run ``runtime.step``'s client step.

**One torch thread per client, whatever the execution mode.** On the CPU every computation of a
run (each client's training, receiving and evaluation, and the server's step) uses exactly
``RUN_THREADS`` = 1 torch intra-op thread (:func:`run_numerics`). CPU floating point depends on
the thread count (reductions are split per thread), so fixing it makes a run's numbers the same
in this process, in any number of client workers, in a sweep worker and on Flower, bit for bit;
the cores are used by training clients side by side instead. Batch-32 steps of the paper's
networks use a second torch thread poorly (docs/performance.md), so two clients trained at once
with one thread each do more work per second than one client with two threads.

``Config.client_workers`` = "auto" (the default) starts one worker per core the run may use (the
torch thread count of the process that calls the run: ``torch.get_num_threads()``, which is
``OMP_NUM_THREADS`` or the physical cores; a sweep gives each of its runs its share) when the
run is on the CPU, has more than one client and its estimated training time is at least
``AUTO_MIN_SECONDS`` (starting a worker costs a few seconds of a core); otherwise the clients
train in this process. An integer W starts W workers (1: in this process).

The worker processes (``python -m tinyproto.runtime.clients THREADS``) each build the clients
they are given (``runtime.setup.setup(cfg, clients=...)``: the same initial states as in-process,
seeded per client) and keep their states between rounds. A round is then: every worker trains
its sampled clients (seeded per (seed, round, client), as in-process) and returns their uploads
as ``Message.to_bytes`` (and, for prototype methods, the local prototypes the engine records);
the server aggregates in the main process; the downloads go back as bytes; the workers
evaluate. Clients are independent within a round, so the numbers are those of an in-process
run, whatever the number of workers or the assignment. The main process's client states are
brought up to date (``sync``) before a checkpoint and at the end.

Clients are assigned once, longest first to the least loaded worker, by estimated training
time (a few timed steps per architecture x the client's steps per round). Requests and answers
are ``runtime.procs`` frames over the workers' pipes (local, trusted processes). A user error in
a worker (a refused download) comes back as the same error class with its one line; a worker
that dies is a RuntimeError naming it.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys

import torch

from tinyproto import timing
from tinyproto.comm import Message, MessageError
from tinyproto.config import Config, ConfigError, config_from_dict
from tinyproto.data import DataError
from tinyproto.runtime import procs, step

ERRORS = {"MessageError": MessageError, "ConfigError": ConfigError, "DataError": DataError}
RUN_THREADS = 1  # torch intra-op threads of every computation of a run on the CPU
AUTO_MIN_SECONDS = 10.0  # "auto" starts workers for runs with at least this much training (s)


def run_numerics(device) -> contextlib.AbstractContextManager:
    """The block runs with ``RUN_THREADS`` torch threads on the CPU (restored after); on an
    accelerator the thread count is left as it is (it does not touch the device's numerics)."""
    if torch.device(device).type != "cpu":
        return contextlib.nullcontext()
    return procs.torch_threads(RUN_THREADS)


def assign(costs: list[float], workers: int) -> list[list[int]]:
    """Client ids per worker: longest first to the least loaded worker (ties: lowest index)."""
    loads = [0.0] * workers
    out: list[list[int]] = [[] for _ in range(workers)]
    for cid in sorted(range(len(costs)), key=lambda c: (-costs[c], c)):
        w = min(range(workers), key=lambda i: (loads[i], i))
        out[w].append(cid)
        loads[w] += costs[cid]
    return [sorted(c) for c in out if c]


def training_costs(S, steps: int = 3) -> list[float]:
    """Each client's training time, estimated: seconds per step of its architecture (timed
    here on a copy of the first model of that architecture, ``steps`` SGD steps after one
    warm-up, batch ``batch_size``) x its steps per round. Only the assignment uses it, and the
    numbers do not depend on the assignment; torch's random state is left as it was."""
    import copy
    import time

    import torch.nn.functional as F

    cfg = S.config
    per_step: dict[str, float] = {}
    biggest: dict[str, int] = {}  # per architecture, the client with the most training samples
    for cid, (st, d) in enumerate(zip(S.states, S.data)):
        best = biggest.get(st.model.arch)
        if best is None or d.num_train > S.data[best].num_train:
            biggest[st.model.arch] = cid
    costs = []
    with torch.random.fork_rng(devices=[]):
        for st, d in zip(S.states, S.data):
            arch = st.model.arch
            if arch not in per_step:
                big = biggest[arch]
                model = copy.deepcopy(S.states[big].model).train()
                opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
                gen = torch.Generator().manual_seed(0)
                x, y = next(S.data[big].train_batches(cfg.batch_size, gen))
                t0 = 0.0
                for i in range(steps + 1):
                    if i == 1:
                        t0 = time.perf_counter()
                    loss = F.cross_entropy(model(x)[1], y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                per_step[arch] = (time.perf_counter() - t0) / steps
            n_steps = -(-max(d.num_train, 1) // cfg.batch_size) * cfg.local_epochs
            costs.append(per_step[arch] * n_steps)
    return costs


class LocalClients:
    """The run's clients in this process (``client_workers`` = 1): the same calls as ClientPool."""

    workers = 1

    def __init__(self, S):
        self.S = S
        self.threads = RUN_THREADS if S.device.type == "cpu" else None

    def train(self, rnd: int, cids) -> dict[int, step.Trained]:
        S, out = self.S, {}
        for cid in cids:
            timing.label(S.states[cid].model.arch)
            out[cid] = step.train_client(S.algo, S.states[cid], S.data[cid], S.config.seed, rnd, cid)
        return out

    def receive(self, downloads: dict) -> None:
        for cid in sorted(downloads):
            step.receive(self.S.algo, self.S.states[cid], downloads[cid])

    def evaluate(self, cids) -> dict[int, int]:
        S = self.S
        return {cid: step.evaluate(S.algo, S.states[cid], S.data[cid]) for cid in cids}

    def load(self, states) -> None:
        pass  # the states are this process's

    def sync(self, states) -> None:
        pass

    def close(self) -> None:
        pass


def pool_size(cfg: Config, cores: int | None = None, costs: list[float] | None = None) -> int:
    """The worker processes a run's clients train in (1: in the run's own process).

    An integer ``client_workers``: that many, at most one per client. "auto": on the CPU, one
    per core the run may use (``cores``, default ``torch.get_num_threads()``), at most one per
    client, for built-in algorithms (one registered at run time lives in this process only),
    when the estimated training time of the whole run (``costs``: seconds per round per
    client, :func:`training_costs`; x rounds x join_ratio) is at least ``AUTO_MIN_SECONDS``;
    else 1. Without ``costs`` "auto" counts as long enough."""
    if cfg.client_workers != "auto":
        return max(1, min(cfg.client_workers, cfg.num_clients))
    from tinyproto.config.registry import BUILTIN_NAMES, having

    if cfg.algorithm not in having("uses_train_local") or not _on_cpu(cfg):
        return 1
    if cfg.algorithm not in BUILTIN_NAMES:  # registered here only: a worker would not know it
        return 1
    cores = torch.get_num_threads() if cores is None else cores
    n = max(1, min(cores, cfg.num_clients))
    if n > 1 and costs is not None:
        if sum(costs) * cfg.rounds * cfg.join_ratio < AUTO_MIN_SECONDS:
            return 1
    return n


def _on_cpu(cfg: Config) -> bool:
    if cfg.device == "auto":
        return not torch.cuda.is_available()
    return cfg.device == "cpu"


def open_clients(S, cores: int | None = None):
    """LocalClients, or a ClientPool of worker processes (CPU only); see :func:`pool_size`.
    ``cores``: the torch threads the run may use (default: this process's count)."""
    cfg = S.config
    if cfg.client_workers != "auto" and pool_size(cfg) > 1 and S.device.type != "cpu":
        raise ConfigError(
            f"invalid client_workers={cfg.client_workers} on device {S.device.type!r}: clients "
            "side by side run on the CPU (one accelerator runs one client at a time)"
        )
    if pool_size(cfg, cores) <= 1 or S.device.type != "cpu":
        return LocalClients(S)
    with run_numerics(S.device):  # the estimate times the steps as the run makes them
        costs = training_costs(S)
    n = pool_size(cfg, cores, costs)
    if n <= 1:
        return LocalClients(S)
    return ClientPool(cfg, assign(costs, n), RUN_THREADS)


class ClientPool:
    """W worker processes holding disjoint sets of a run's clients (see the module docstring)."""

    def __init__(self, cfg: Config, groups: list[list[int]], threads: int):
        self.threads, self.workers = threads, len(groups)
        self.owner: dict[int, int] = {c: w for w, g in enumerate(groups) for c in g}
        self.procs: list[subprocess.Popen] = []
        self.errs = []
        try:
            for group in groups:
                proc, err = procs.spawn("tinyproto.runtime.clients", threads)
                self.procs.append(proc)
                self.errs.append(err)
                self._send(len(self.procs) - 1, (json.dumps(cfg.to_dict()), group))
            for w in range(len(self.procs)):  # each answers once its clients are built
                self._receive(w)
        except BaseException:
            self.close()
            raise

    # -- the pipes ----------------------------------------------------------------------------
    def _send(self, w: int, obj) -> None:
        try:
            procs.send(self.procs[w].stdin, obj)
        except OSError:
            self._died(w)

    def _receive(self, w: int):
        try:
            status, value = procs.receive(self.procs[w].stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._died(w)
        if status == "error":
            kind, line = value
            raise ERRORS.get(kind, RuntimeError)(line)
        return value

    def _died(self, w: int):
        code = procs.reap(self.procs[w])
        clients = " ".join(str(c) for c, o in sorted(self.owner.items()) if o == w)
        raise procs.WorkerDied(
            f"client worker {w} (clients {clients}) died (exit {code}): "
            f"{procs.last_line(self.errs[w])}; rerun with --resume to continue from the run's "
            "last checkpoint (from the start if it has none yet)"
        )

    def _call(self, op: str, per_client: dict[int, object]) -> dict[int, object]:
        """Send ``op`` with each worker's share of ``per_client`` to all workers at once, then
        gather their answers ({client id: result})."""
        shares: dict[int, dict] = {}
        for cid, arg in per_client.items():
            shares.setdefault(self.owner[cid], {})[cid] = arg
        for w, share in shares.items():
            self._send(w, (op, share))
        out: dict[int, object] = {}
        first: BaseException | None = None
        for w in shares:  # every answer is read, so the pipes stay in step after an error
            try:
                out.update(self._receive(w))
            except (MessageError, ConfigError, DataError) as e:
                first = first or e
        if first is not None:
            raise first
        return out

    # -- what the engine asks -----------------------------------------------------------------
    def train(self, rnd: int, cids) -> dict[int, step.Trained]:
        with timing.part("client"), timing.part("train"):  # the workers' time, as a whole
            got = self._call("train", {c: rnd for c in cids})
        return {
            cid: step.Trained(Message.from_bytes(got[cid][0], f"client {cid}"), *got[cid][1:])
            for cid in cids
        }

    def receive(self, downloads: dict) -> None:
        with timing.part("receive"):
            self._call("receive", {cid: m.to_bytes() for cid, m in downloads.items()})

    def evaluate(self, cids) -> dict[int, int]:
        with timing.part("eval"):
            return self._call("evaluate", {c: None for c in cids})

    def load(self, states: dict[int, dict]) -> None:
        self._call("load", states)

    def sync(self, states) -> None:
        """Copy the workers' client states into ``states`` (the main process's list)."""
        for cid, sd in self._call("state", {c: None for c in self.owner}).items():
            states[cid].load_state_dict(sd)

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc, err in zip(self.procs, self.errs):
            procs.reap(proc)
            proc.stdout.close()
            err.close()
        self.procs = []


def serve(threads: int) -> int:
    """The worker's side: build the clients named in the first request, then answer."""
    from tinyproto.runtime.setup import setup
    from tinyproto.store.failures import user_errors

    inp, out = sys.stdin.buffer, procs.answer_channel()
    procs.exit_with_parent()  # the run that started it is gone: stop training its clients
    torch.set_num_threads(threads)
    try:
        config, group = procs.receive(inp)
        cfg = config_from_dict(json.loads(config))
        S = setup(cfg, clients=group)
    except user_errors() as e:
        procs.answer_error(out, e)
        return 2
    algo = S.algo
    procs.answer_ok(out)
    while True:
        try:
            op, share = procs.receive(inp)
        except EOFError:
            return 0
        result: dict[int, object] = {}
        try:
            for cid, arg in share.items():
                st, d = S.states[cid], S.data[cid]
                if op == "train":
                    t = step.train_client(algo, st, d, cfg.seed, arg, cid)
                    result[cid] = (t.upload.to_bytes(), t.loss, t.prototypes)
                elif op == "receive":
                    step.receive(algo, st, Message.from_bytes(arg, "server"))
                elif op == "evaluate":
                    result[cid] = step.evaluate(algo, st, d)
                elif op == "state":
                    result[cid] = st.state_dict()
                elif op == "load":
                    st.load_state_dict(arg)
                else:
                    raise RuntimeError(f"unknown request {op!r}")
        except user_errors() as e:
            procs.answer_error(out, e)
            continue
        procs.answer_ok(out, result)


if __name__ == "__main__":
    _threads = procs.usage_threads(sys.argv[1:], "tinyproto.runtime.clients")
    sys.exit(2 if _threads is None else serve(_threads))
