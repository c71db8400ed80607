"""Where local prototypes come from (``proto_pass``), and the data normalised once.

"train": p_ij is the mean of the features of the round's training forward passes (HtFLlib, the
authors' code; no second pass). "eval": a second pass over the training split in eval mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tinyproto import Config
from tinyproto.config import ConfigError, config_from_dict
from tinyproto.runtime.engine import seed_for, setup

ROOT = Path(__file__).resolve().parents[1]


def small(algorithm="fedproto", **kw) -> Config:
    base = dict(
        algorithm=algorithm,
        profile="smoke",
        dataset="synthetic",
        num_classes=5,
        num_clients=3,
        alpha=0.5,
        rounds=2,
        max_samples=300,
        feature_dim=12,
        save_prototypes=False,
    )
    return Config(**{**base, **kw})


def one_client_round(cfg: Config, cid: int = 0, record: bool = False):
    """Client ``cid``'s first round; with ``record``, also every feature batch its model made."""
    S = setup(cfg)
    st, data = S.states[cid], S.data[cid]
    seen = []
    if record:
        forward = st.model.forward

        def spy(x):
            z, logits = forward(x)
            seen.append(z.detach().clone())
            return z, logits

        st.model.forward = spy
    s = seed_for(cfg.seed, 0, cid)
    torch.manual_seed(s)
    msg, _ = S.algo.client_round(st, data, 0, torch.Generator().manual_seed(s))
    return S, st, data, msg, seen, s


def test_defaults_per_algorithm():
    assert small("fedproto").proto_pass == "train"
    assert small("tinyproto-fp").proto_pass == "train"
    assert small("fedtgp", server_epochs=1).proto_pass == "eval"  # METHOD.md
    assert small("tinyproto-ft", server_epochs=1).proto_pass == "eval"
    assert small("fml").proto_pass is None


def test_train_pass_prototypes_are_the_mean_of_the_training_features():
    cfg = small("fedproto", local_epochs=2)
    S, st, data, msg, seen, s = one_client_round(cfg, record=True)
    # replay the same shuffles: the labels of every recorded batch, in order
    from tinyproto.algorithms.common import min_last_batch

    gen = torch.Generator().manual_seed(s)
    ys = [
        y
        for _ in range(cfg.local_epochs)
        for _, y in data.train_batches(cfg.batch_size, gen, min_last_batch([st.model], 32))
    ]
    assert len(ys) == len(seen)  # no forward pass besides training
    z, y = torch.cat(seen), torch.cat(ys)
    classes = torch.unique(y)
    expected = torch.stack([z[y == c].mean(0) for c in classes])
    assert torch.equal(st.classes, classes)
    torch.testing.assert_close(st.local, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(msg.arrays["classes"], classes)


def test_eval_pass_prototypes_use_the_trained_model_in_eval_mode():
    cfg = small("fedproto", proto_pass="eval")
    S, st, data, msg, seen, s = one_client_round(cfg)
    from tinyproto.algorithms.common import class_means

    classes, p, _ = class_means(st.model, data, S.ctx.num_classes)
    assert torch.equal(st.classes, classes)
    assert torch.equal(st.local, p)


def test_aps_counts_are_samples_not_passes():
    """Under APS a client uploads n_ij p_ij: with 3 local epochs the training passes see every
    sample 3 times, and n_ij must still be the class's sample count."""
    cfg = small("tinyproto-fp", cps_dim=None, mu=0.5, local_epochs=3)
    S, st, data, msg, seen, s = one_client_round(cfg)
    y = data.dataset.y[data.split.train_idx]
    n = torch.bincount(y, minlength=S.ctx.num_classes)[st.classes].to(st.local.dtype)
    torch.testing.assert_close(msg.arrays["protos"], st.local * n.unsqueeze(1))


def test_modes_agree_when_training_does_not_move_the_model():
    """lr -> 0 and a BatchNorm-free model: the training passes see the model the eval pass
    sees, so both modes give the same prototypes (up to summation order)."""
    a = one_client_round(small("fedproto", lr=1e-30))[1].local
    b = one_client_round(small("fedproto", lr=1e-30, proto_pass="eval"))[1].local
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    c = one_client_round(small("fedproto"))[1].local
    assert not torch.allclose(a, c)  # ... and the comparison can tell a moving model apart


def test_legacy_runs_keep_their_ids():
    """Runs made before proto_pass existed made an eval pass: that value is left out of the id,
    and a config.json without the field reads as eval. The config.json files of such runs, as
    they were committed, are kept in tests/data/legacy_configs/<run id>.json."""
    legacy = [
        (p.stem, json.loads(p.read_text()))
        for p in sorted((ROOT / "tests/data/legacy_configs").glob("*.json"))
    ]
    legacy = [(rid, d) for rid, d in legacy if d["algorithm"] in ("fedproto", "tinyproto-fp")]
    legacy = [(rid, d) for rid, d in legacy if "proto_pass" not in d]
    assert legacy, "no run folder written before proto_pass to check"
    for rid, d in legacy:
        cfg = config_from_dict(d)
        assert cfg.proto_pass == "eval"
        assert cfg.run_id() == rid
        assert cfg.replace(proto_pass="train").run_id() != rid


def test_proto_pass_is_checked():
    with pytest.raises(ConfigError, match="proto_pass"):
        small("fedproto", proto_pass="both")
    with pytest.raises(ConfigError, match="proto_pass.*only"):
        small("fml", proto_pass="train")


def test_cli_flag(capsys):
    from tinyproto.cli import main

    assert main(["run", "--profile", "smoke", "--algorithm", "fedproto", "--proto-pass", "x"]) == 2
    assert capsys.readouterr().err == (
        "tinyproto: error: invalid --proto-pass='x': one of train, eval or none\n"
    )


# -- data normalised once ----------------------------------------------------------------------


def test_normalised_once_equals_per_batch_bit_for_bit():
    S = setup(small("fedproto"))
    ds = S.data[0].dataset
    assert ds.normalised is not None
    idx = torch.randperm(len(ds))[:50]
    per_batch = ds.x[idx].float().div_(127.5).sub_(1.0)
    assert torch.equal(ds.images(idx), per_batch)
    assert float(ds.normalised.min()) >= -1.0 and float(ds.normalised.max()) <= 1.0


def test_too_large_data_is_normalised_per_batch():
    S = setup(small("fedproto"))
    ds = S.data[0].dataset.to("cpu")
    assert ds.normalised is None  # moving drops the copy
    kept = ds.prepared(max_bytes=4 * ds.x.numel() - 1)
    assert kept.normalised is None
    idx = torch.arange(7)
    assert torch.equal(kept.images(idx), ds.prepared().images(idx))
