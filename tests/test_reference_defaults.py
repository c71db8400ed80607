"""Baselines follow HtFLlib by default (FML's uniform meme average, LG-FedAvg's shared round-0
head); what this package did before stays available and keeps its run ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tinyproto import Config
from tinyproto.algorithms.common import COUNT_KEY
from tinyproto.comm import Message
from tinyproto.config import config_from_dict
from tinyproto.config.core import ADDED_FIELDS
from tinyproto.runtime.engine import setup

ROOT = Path(__file__).resolve().parents[1]


def small(algorithm, **kw) -> Config:
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=4,
        num_clients=4,
        alpha=0.5,
        rounds=1,
        max_samples=200,
        feature_dim=8,
        save_prototypes=False,
    )
    return Config(**{**base, **kw})


@pytest.mark.parametrize("weighting", ["uniform", "samples"])
def test_fml_meme_average(weighting):
    S = setup(small("fml", fml_weighting=weighting))
    algo = S.algo
    names = list(algo.spec)
    counts = [1, 3, 10, 50]
    uploads, tensors = {}, []
    for cid, n in enumerate(counts):
        arrays = {k: torch.full(shape, float(cid + 1)) for k, (_, shape) in algo.spec.items()}
        uploads[cid] = Message(arrays, {COUNT_KEY: n})
        tensors.append(float(cid + 1))
    down = algo.server_round(uploads, 0)
    got = down[0].arrays[names[0]].flatten()[0].item()
    w = [1] * 4 if weighting == "uniform" else counts
    expected = sum(t * wi for t, wi in zip(tensors, w)) / sum(w)
    assert got == pytest.approx(expected, rel=1e-6)
    assert small("fml").fml_weighting == "uniform"  # HtFLlib's default


def test_lg_fedavg_heads_start_from_client_0s():
    shared = setup(small("lg-fedavg"))
    own = setup(small("lg-fedavg", lg_head_init="own"))
    h0 = own.states[0].model.head.weight
    for st in shared.states:  # every client starts from client 0's own initial head
        assert torch.equal(st.model.head.weight, h0)
        assert torch.equal(st.model.head.bias, own.states[0].model.head.bias)
    assert not torch.equal(own.states[1].model.head.weight, h0)
    # the bodies are untouched: the same as with own heads
    for a, b in zip(shared.states, own.states):
        body_a = {k: v for k, v in a.model.state_dict().items() if not k.startswith("head.")}
        body_b = {k: v for k, v in b.model.state_dict().items() if not k.startswith("head.")}
        assert body_a.keys() == body_b.keys() and len(body_a) > 0
        assert all(torch.equal(body_a[k], body_b[k]) for k in body_a)


def test_options_are_refused_elsewhere_and_checked():
    from tinyproto.config import ConfigError

    with pytest.raises(ConfigError, match="fml_weighting.*only fml"):
        small("fedproto", fml_weighting="uniform")
    with pytest.raises(ConfigError, match="lg_head_init"):
        small("lg-fedavg", lg_head_init="client0")


def test_every_added_field_keeps_older_run_ids():
    """A config.json written before a field existed reads with the field's old value, and the
    folder's name is still its config's id; the new default gives a different id. Checked on
    the run folders of results/ and on the config.json files of older committed runs, kept as
    they were in tests/data/legacy_configs/<run id>.json."""
    checked = 0
    found = [(p.parent.name, p) for p in sorted((ROOT / "results").glob("**/runs/*/config.json"))]
    found += [(p.stem, p) for p in sorted((ROOT / "tests/data/legacy_configs").glob("*.json"))]
    for rid, path in found:
        d = json.loads(path.read_text())
        absent = [k for k in ADDED_FIELDS if k not in d]
        if not absent:
            continue
        cfg = config_from_dict(d)
        assert cfg.run_id() == rid, path
        checked += 1
    assert checked > 50
    old = config_from_dict(
        json.loads(next((ROOT / "tests/data/legacy_configs").glob("fml-fmnist-*.json")).read_text())
    )
    assert old.fml_weighting == "samples"
    assert old.replace(fml_weighting="uniform").run_id() != old.run_id()
