"""The algorithm table (tinyproto.config.registry): one entry per algorithm, every per-algorithm
list derived from it, and an algorithm registered at run time in one call runs like a built-in
one (docs/adding-an-algorithm.md)."""

from __future__ import annotations

import importlib

import pytest
import torch

import tinyproto
import tinyproto.config as config
from tinyproto import Config, ConfigError, algorithms
from tinyproto.algorithms import Algorithm, ClientData, ClientState
from tinyproto.algorithms.common import ce_loss, train_local
from tinyproto.comm import Message, expect
from tinyproto.config import PARAMS, AlgorithmSpec, registry


class Toy(Algorithm):
    """Local training, then each client sends its class shares (K floats) and gets their mean."""

    name = "toy"

    @classmethod
    def expected_cost(cls, *, num_classes, num_clients, **_) -> int | float:
        """K floats up and K down per client."""
        return 2 * num_clients * num_classes

    def spec(self) -> dict:
        return {"share": ("float", (self.ctx.num_classes,))}

    def client_round(self, state: ClientState, data: ClientData, rnd: int, generator):
        loss = train_local(state, data, self.cfg, generator, ce_loss)
        y = data.dataset.y[data.split.train_idx]
        share = torch.bincount(y, minlength=self.ctx.num_classes).float() / max(1, y.numel())
        return Message({"share": share}), loss

    def check_upload(self, msg: Message, sender: str):
        return expect(msg, sender, self.spec(), bound=self.bound, device=self.device)["share"]

    def aggregate(self, uploads: dict, rnd: int) -> dict[int, Message]:
        mean = torch.stack(list(uploads.values())).mean(0)
        return {cid: Message({"share": mean}) for cid in uploads}

    def receive(self, state: ClientState, download: Message) -> None:
        expect(download, "server", self.spec(), bound=self.bound, device=self.device)


class ToyProto(Toy):
    name = "toy-proto"


TOY = AlgorithmSpec("toy", Toy)
# reads the prototype group (lam, proto_pass) with its own proto_pass default, and APS's
TOY_PROTO = AlgorithmSpec(
    "toy-proto",
    ToyProto,
    groups=("proto", "tinyproto"),
    defaults={"proto_pass": "eval"},
    mu_target=1.0,
)

DERIVED = {  # the exported name -> the option group its algorithms read
    "PROTOTYPE_ALGORITHMS": "proto",
    "TINYPROTO_ALGORITHMS": "tinyproto",
    "SERVER_TRAINING_ALGORITHMS": "fedtgp",
    "SHARED_MODEL_ALGORITHMS": "shared",
    "FEDTINY_ALGORITHMS": "fedtiny",
}


@pytest.fixture
def registered(request):
    """Register the given spec for one test (one call), and always undo it."""
    spec = request.param
    cls = algorithms.register_algorithm(spec)
    try:
        yield spec, cls
    finally:
        algorithms.unregister_algorithm(spec.name)


def small(algorithm: str, **kw) -> Config:
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=5,
        num_clients=3,
        alpha=0.5,
        rounds=2,
        max_samples=150,
        feature_dim=8,
        save_prototypes=False,
    )
    return Config(**{**base, **kw})


def test_the_built_in_lists_are_the_tables():
    """What the config layer used to spell out per algorithm, now derived: same contents and
    order (run ids hash configs; tests/test_reference_defaults.py checks the committed runs)."""
    assert config.ALGORITHMS == (
        "local",
        "fedproto",
        "fedtgp",
        "tinyproto-fp",
        "tinyproto-ft",
        "feddistill",
        "lg-fedavg",
        "fml",
        "fedkd",
        "fedavg",
        "fedtiny",
    )
    assert config.PROTOTYPE_ALGORITHMS == ("fedproto", "fedtgp", "tinyproto-fp", "tinyproto-ft")
    assert config.TINYPROTO_ALGORITHMS == ("tinyproto-fp", "tinyproto-ft")
    assert config.SERVER_TRAINING_ALGORITHMS == ("fedtgp", "tinyproto-ft")
    assert config.SHARED_MODEL_ALGORITHMS == ("fml", "fedkd", "fedavg", "fedtiny")
    assert config.FEDTINY_ALGORITHMS == ("fedtiny",)
    assert config.MU_TARGET == {"tinyproto-fp": 0.68, "tinyproto-ft": 4.5}
    assert registry.algorithm_defaults() == {
        "proto_pass": {
            "fedproto": "train",
            "tinyproto-fp": "train",
            "fedtgp": "eval",
            "tinyproto-ft": "eval",
        },
        "fml_weighting": {"fml": "uniform"},
        "lg_head_init": {"lg-fedavg": "shared"},
    }
    users = {g: u for g, (_, u) in config.GROUPS.items()}
    assert users["feddistill"] == ("feddistill",) and users["lg"] == ("lg-fedavg",)
    assert users["fml"] == ("fml",) and users["fedkd"] == ("fedkd",)
    assert PARAMS["precision"].applies == tuple(a for a in config.ALGORITHMS if a != "fedtiny")
    assert PARAMS["client_workers"].applies == PARAMS["precision"].applies
    assert PARAMS["algorithm"].allowed_choices() == config.ALGORITHMS
    for name, (group, _) in config.GROUP_OF.items():  # every option: its group's readers
        assert PARAMS[name].applies == registry.readers(group), name
    from tinyproto.config.profiles import ALGORITHMS  # the old home still answers

    assert ALGORITHMS == config.ALGORITHMS


@pytest.mark.parametrize("spec", registry.specs(), ids=lambda s: s.name)
def test_every_registered_spec_resolves_to_its_class(spec):
    cls = algorithms.resolve(spec)
    assert issubclass(cls, Algorithm) and cls.name == spec.name
    assert algorithms.REGISTRY[spec.name] is cls
    module, _, attr = spec.cls.partition(":")
    assert getattr(importlib.import_module(module), attr) is cls
    assert getattr(algorithms, cls.__name__) is cls  # the package's re-export is the same class


def test_registry_lists_exactly_the_table():
    assert tuple(algorithms.REGISTRY) == config.ALGORITHMS
    assert set(algorithms.REGISTRY) == set(config.ALGORITHMS)


@pytest.mark.parametrize("registered", [TOY], indirect=True, ids=["toy"])
def test_a_registered_algorithm_runs_and_sends_what_it_declares(registered, tmp_path):
    spec, cls = registered
    assert cls is Toy and "toy" in config.ALGORITHMS and "toy" in algorithms.REGISTRY
    cfg = small("toy")
    res = tinyproto.run(cfg, root=tmp_path, progress=False)
    assert res.run_dir.name == cfg.run_id() and cfg.run_id().startswith("toy-synthetic-")
    measured = (res.metrics["upload_floats"] + res.metrics["download_floats"]).tolist()
    expected = algorithms.expected_cost(
        "toy",
        num_classes=cfg.num_classes,
        dim=cfg.feature_dim,
        num_clients=cfg.num_clients,
        classes_present=res.summary["classes_present_train"],
    )
    assert expected == 2 * 3 * 5
    assert measured == [expected] * cfg.rounds
    assert res.summary["expected_floats_per_round"] == expected
    # its option groups: none, so another algorithm's options are refused
    with pytest.raises(ConfigError, match="lam"):
        small("toy", lam=1.0)
    assert PARAMS["precision"].applies[-1] == "toy"  # it trains with train_local


@pytest.mark.parametrize("registered", [TOY_PROTO], indirect=True, ids=["toy-proto"])
def test_a_registered_algorithm_is_in_every_derived_view_until_undone(registered):
    assert config.ALGORITHMS[-1] == "toy-proto"
    assert config.PROTOTYPE_ALGORITHMS[-1] == "toy-proto"
    assert config.TINYPROTO_ALGORITHMS[-1] == "toy-proto"
    assert "toy-proto" not in config.SERVER_TRAINING_ALGORITHMS
    assert config.MU_TARGET["toy-proto"] == 1.0
    assert "toy-proto" in config.GROUPS["proto"][1]
    assert "toy-proto" in PARAMS["lam"].applies and "toy-proto" in PARAMS["cps_dim"].applies
    assert "toy-proto" in PARAMS["algorithm"].allowed_choices()
    cfg = small("toy-proto", lam=2.0)
    assert cfg.proto.proto_pass == "eval"  # its own default
    assert cfg.cps_dim == 1  # CPS's s = d // 10, at least 1
    assert cfg.resolve_mu(10.0) == 0.1  # its mu_target by the product rule
    with pytest.raises(ConfigError, match="gamma"):
        small("toy-proto", gamma=2.0)
    algorithms.unregister_algorithm("toy-proto")
    try:
        for name in ["ALGORITHMS", *DERIVED]:
            assert "toy-proto" not in getattr(config, name), name
        assert "toy-proto" not in config.MU_TARGET and "toy-proto" not in algorithms.REGISTRY
        assert "toy-proto" not in PARAMS["lam"].applies
        with pytest.raises(ConfigError, match="invalid algorithm='toy-proto'"):
            small("toy-proto")
        with pytest.raises(ValueError, match="not implemented|unknown"):
            algorithms.algorithm_class("toy-proto")
    finally:
        algorithms.register_algorithm(TOY_PROTO)  # the fixture undoes it


def test_registering_changes_no_built_in_run_id():
    before = [small(a).run_id() for a in config.ALGORITHMS if a != "fedtiny"]
    algorithms.register_algorithm(TOY_PROTO)
    try:
        after = [small(a).run_id() for a in registry.BUILTIN_NAMES if a != "fedtiny"]
    finally:
        algorithms.unregister_algorithm("toy-proto")
    assert after == before


@pytest.mark.parametrize(
    "spec, match",
    [
        (AlgorithmSpec("fedproto", Toy), "not registered yet"),
        (AlgorithmSpec("Toy!", Toy), "lowercase"),
        (AlgorithmSpec("toy", Toy, groups=("protos",)), "groups='protos'"),
        (AlgorithmSpec("toy", Toy, defaults={"proto_pass": "eval"}), "a group it reads"),
        (AlgorithmSpec("toy", Toy, groups=("proto",), defaults={"lam": 1.0}), "defaults='lam'"),
        (AlgorithmSpec("toy", Toy, groups=("proto",), defaults={"proto_pass": "x"}), "train, eval"),
        (AlgorithmSpec("toy", Toy, groups=("tinyproto",)), "mu_target"),
        (AlgorithmSpec("toy", Toy, mu_target=0.5), "mu_target"),
    ],
)
def test_a_wrong_spec_is_refused_in_one_line(spec, match):
    with pytest.raises(ConfigError, match=match) as e:
        algorithms.register_algorithm(spec)
    assert "\n" not in str(e.value)
    assert spec.name not in config.ALGORITHMS or spec.name == "fedproto"
    assert config.ALGORITHMS == registry.BUILTIN_NAMES


def test_a_class_that_does_not_match_its_spec_is_not_registered():
    with pytest.raises(TypeError, match="named 'toy'"):
        algorithms.register_algorithm(AlgorithmSpec("toy2", Toy))
    with pytest.raises(TypeError, match="not an Algorithm"):
        algorithms.register_algorithm(AlgorithmSpec("toy2", dict))
    with pytest.raises(ValueError, match="package.module:Class"):
        AlgorithmSpec("toy2", "tinyproto.algorithms.local.Local")
    assert config.ALGORITHMS == registry.BUILTIN_NAMES  # rolled back
    with pytest.raises(ConfigError, match="built in"):
        algorithms.unregister_algorithm("fedproto")
