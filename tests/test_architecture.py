"""Client and server share nothing but messages; the engine touches state only through methods.

- A server built on its own, seeing only uploads that went through bytes (``Message.to_bytes``
  / ``from_bytes``), gives the in-process run's downloads, server state and client states, bit
  for bit, for every algorithm.
- After a run, nothing reachable from the algorithm object (its constants and server state)
  is a tensor, module or optimiser of any client state, and the other way round.
- The engine names only the algorithm's and the states' public methods; no algorithm module
  imports another algorithm's module except for a class it subclasses.
"""

from __future__ import annotations

import ast
import copy
import types
from pathlib import Path

import pytest
import torch

import tinyproto.algorithms as algorithms_pkg
import tinyproto.runtime.engine as engine_module
from tinyproto import Config
from tinyproto.algorithms import build_algorithm
from tinyproto.comm import Message
from tinyproto.config import ALGORITHMS
from tinyproto.runtime.engine import seed_for, setup

N, ROUNDS = 3, 2


def config(algorithm: str) -> Config:
    kw = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=6,
        num_clients=N,
        alpha=0.3,
        rounds=ROUNDS,
        max_samples=240,
        feature_dim=16,
        save_prototypes=False,
    )
    if algorithm in ("fedtgp", "tinyproto-ft"):
        kw["server_epochs"] = 1
    if algorithm == "fedkd":  # low thresholds: some matrices travel as SVD factors
        kw.update(fedkd_t_start=0.5, fedkd_t_end=0.7)
    return Config(**kw)


def wire(msg: Message) -> Message:
    return Message.from_bytes(msg.to_bytes())


def rounds(S, server, through_bytes: bool):
    """The engine's rounds by hand; yields (uploads, downloads) as bytes, per round."""
    hop = wire if through_bytes else (lambda m: m)
    for rnd in range(ROUNDS):
        uploads = {}
        for cid, (st, d) in enumerate(zip(S.states, S.data)):
            s = seed_for(S.config.seed, rnd, cid)
            torch.manual_seed(s)
            uploads[cid], _ = S.algo.client_round(st, d, rnd, torch.Generator().manual_seed(s))
        downloads = server.server_round({c: hop(m) for c, m in uploads.items()}, rnd)
        for cid, st in enumerate(S.states):
            S.algo.receive(st, hop(downloads[cid]))
        yield (
            {c: m.to_bytes() for c, m in uploads.items()},
            {c: m.to_bytes() for c, m in downloads.items()},
        )


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_separate_server_on_deserialised_messages_gives_identical_results(algorithm):
    cfg = config(algorithm)
    A = setup(cfg)  # one algorithm object plays both sides, messages passed in memory
    B = setup(cfg)  # clients keep B.algo; the server is its own object, fed bytes only
    server = build_algorithm(copy.deepcopy(B.ctx))
    for (up_a, down_a), (up_b, down_b) in zip(
        rounds(A, A.algo, through_bytes=False), rounds(B, server, through_bytes=True)
    ):
        assert up_a == up_b and down_a == down_b  # byte for byte, metadata included
    assert same(A.algo.server_state_dict(), server.server_state_dict())
    for sa, sb in zip(A.states, B.states):
        assert same(sa.state_dict(), sb.state_dict())
    assert same(B.algo.server_state_dict(), build_algorithm(B.ctx).server_state_dict())


def reachable(root) -> dict[int, object]:
    """Tensors, modules and optimisers reachable from ``root``, by id (tensors also by their
    storage's address, so that a view of a client tensor counts)."""
    found: dict[int, object] = {}
    seen: set[int] = set()
    stack = [root]
    leaves = (str, bytes, int, float, bool, type(None), torch.device, torch.dtype, type)
    skip = (types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType)
    while stack:
        obj = stack.pop()
        if isinstance(obj, leaves) or isinstance(obj, skip) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found[id(obj)] = obj
            if obj.numel() and obj.device.type != "meta":
                found[("storage", obj.untyped_storage().data_ptr())] = obj
            continue
        if isinstance(obj, (torch.nn.Module, torch.optim.Optimizer)):
            found[id(obj)] = obj
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return found


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_server_holds_no_reference_to_client_state(algorithm):
    S = setup(config(algorithm))
    for _ in rounds(S, S.algo, through_bytes=False):
        pass
    server_side = reachable(S.algo)
    for st in S.states:
        client_side = reachable(st)
        assert all(id(p) in client_side for p in st.model.parameters())  # the walk sees them
        shared = server_side.keys() & client_side.keys()
        assert not shared, [type(client_side[k]).__name__ for k in shared]


RUNTIMES = [  # every module that drives an algorithm: the round exists once, in runtime/step.py
    "runtime/engine.py",
    "runtime/step.py",
    "runtime/setup.py",
    "runtime/clients.py",
    "runtime/bench.py",
    "flower/client_app.py",
    "flower/server_app.py",
]


@pytest.mark.parametrize("module", RUNTIMES)
def test_the_runtimes_use_only_public_methods_of_algorithm_and_states(module):
    tree = ast.parse((Path(engine_module.__file__).parents[1] / module).read_text())
    algo_api = {
        "upload_config",  # the Flower server checks an upload before the round (check_upload)
        "upload_metrics",
        "check_upload",
        "init_client",
        "client_round",
        "server_round",
        "receive",
        "evaluate",
        "prototypes",
        "expected_floats",
        "report",
        "server_state_dict",
        "load_server_state_dict",
        "prototype_based",
        "cfg",  # the run's Config (Algorithm.__init__): its payload codec and local DP
        "secure_upload",  # secure_agg: the client's upload as a masked table (comm.secagg)
    }
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (
            isinstance(node.value, ast.Name)
            and node.value.id == "algo"
            or isinstance(node.value, ast.Attribute)
            and node.value.attr == "algo"
        )
    }
    assert used <= algo_api, used - algo_api
    # trained: the modules to compile; model: its architecture (bench, client assignment)
    state_api = {"state_dict", "load_state_dict", "trained", "model"}
    on_states = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("st", "state")
    }
    assert on_states <= state_api, on_states - state_api
    assert "getattr" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_algorithms_import_other_algorithms_only_to_subclass_them():
    folder = Path(algorithms_pkg.__file__).parent
    shared = {"__init__", "base", "common", "svd", "compute"}
    modules = {p.stem for p in folder.glob("*.py")} - shared
    for name in sorted(modules):
        tree = ast.parse((folder / f"{name}.py").read_text())
        bases = {
            b.id
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            for b in node.bases
            if isinstance(b, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["tinyproto", "algorithms"] and len(parts) == 3:
                    if parts[2] in modules:
                        names = {a.name for a in node.names}
                        assert names <= bases, (name, node.module, names - bases)
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name.split(".")[-1] not in modules, (name, a.name)
