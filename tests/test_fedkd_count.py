"""FedKD's communication against a count that shares nothing with the codec: numpy float64 SVDs
of the dense matrices the messages stand for, ranks by the energy rule, the shapes each factor
must have, and k (m + n + 1) floats per factored matrix (else m n)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyproto import Config
from tinyproto.comm import Message
from tinyproto.runtime.engine import seed_for, setup


def rank_by_energy(M: np.ndarray, T: float) -> int | None:
    """Smallest k with sum(s[:k]^2) >= T sum(s^2), None for sent dense (all zeros or factors
    not smaller)."""
    s = np.linalg.svd(M.astype(np.float64), compute_uv=False)
    e = np.cumsum(s**2)
    if e[-1] <= 0:
        return None
    k = int(np.argmax(e >= T * e[-1] - 1e-12 * e[-1])) + 1
    m, n = M.shape
    return None if k * (m + n + 1) >= m * n else k


def independent_count(dense: dict[str, np.ndarray], T: float) -> tuple[int, dict]:
    """(floats, {name: expected array shapes}) of a FedKD message for these dense parameters."""
    total, shapes = 0, {}
    for name, p in dense.items():
        if p.ndim < 2:
            total += p.size
            shapes[name] = {name: p.shape}
            continue
        M = p.reshape(p.shape[0], -1)
        m, n = M.shape
        k = rank_by_energy(M, T)
        if k is None:
            total += m * n
            shapes[name] = {name: p.shape}
        else:
            total += k * (m + n + 1)
            shapes[name] = {f"{name}#U": (m, k), f"{name}#S": (k,), f"{name}#V": (k, n)}
    return total, shapes


def check_against_count(msg: Message, dense: dict[str, np.ndarray], T: float) -> int:
    """Assert the message holds exactly the arrays and floats the independent count says."""
    floats, shapes = independent_count(dense, T)
    want = {key: shape for per in shapes.values() for key, shape in per.items()}
    got = {key: tuple(a.shape) for key, a in msg.arrays.items()}
    assert got == want, f"arrays {got} != independent count {want}"
    assert msg.floats() == floats, f"{msg.floats()} floats != independent count {floats}"
    return floats


def dense_of(msg: Message, names) -> dict[str, np.ndarray]:
    """The matrices a message stands for, rebuilt here: U diag(S) V, or the dense array."""
    out = {}
    for name, shape in names.items():
        if name in msg.arrays:
            out[name] = msg.arrays[name].numpy().astype(np.float64)
        else:
            U, S, V = (msg.arrays[f"{name}#{f}"].numpy().astype(np.float64) for f in "USV")
            out[name] = ((U * S) @ V).reshape(shape)
    return out


def config() -> Config:
    return Config(
        algorithm="fedkd",
        profile="smoke",
        dataset="synthetic",
        num_classes=5,
        num_clients=3,
        alpha=0.5,
        rounds=2,
        max_samples=240,
        feature_dim=48,
        fedkd_t_start=0.5,
        fedkd_t_end=0.7,
        save_prototypes=False,
    )


def test_fedkd_messages_equal_an_independent_svd_count():
    cfg = config()
    S = setup(cfg)
    algo = S.algo
    factored = 0
    for rnd in range(cfg.rounds):
        T = algo.threshold(rnd)
        uploads, dense_up, counts = {}, {}, {}
        for st, d in zip(S.states, S.data):
            sd = seed_for(cfg.seed, rnd, st.cid)
            torch.manual_seed(sd)
            uploads[st.cid], _ = algo.client_round(st, d, rnd, torch.Generator().manual_seed(sd))
            dense_up[st.cid] = {
                k: p.detach().numpy().astype(np.float64) for k, p in st.mentee.named_parameters()
            }
            counts[st.cid] = d.num_train
            check_against_count(uploads[st.cid], dense_up[st.cid], T)
            factored += sum(k.endswith("#S") for k in uploads[st.cid].arrays)
        downloads = algo.server_round(uploads, rnd)
        # the server averages what the uploads stand for (n_i-weighted), then compresses
        names = {k: tuple(p.shape) for k, p in S.states[0].mentee.named_parameters()}
        rebuilt = {cid: dense_of(m, names) for cid, m in uploads.items()}
        total = sum(counts.values())
        avg = {k: sum(rebuilt[c][k] * counts[c] for c in rebuilt) / total for k in names}
        down_floats = check_against_count(downloads[0], avg, T)
        measured = sum(m.floats() for m in uploads.values()) + len(uploads) * down_floats
        assert measured == algo.server.kept_floats_per_round[rnd]
        for st in S.states:
            algo.receive(st, downloads[st.cid])
    assert factored > 0, "no matrix was factored: the SVD path went unchecked"


def test_the_check_catches_a_miscounted_factor():
    cfg = config()
    S = setup(cfg)
    st, d = S.states[0], S.data[0]
    torch.manual_seed(0)
    msg, _ = S.algo.client_round(st, d, 0, torch.Generator().manual_seed(0))
    dense = {k: p.detach().numpy().astype(np.float64) for k, p in st.mentee.named_parameters()}
    T = S.algo.threshold(0)
    check_against_count(msg, dense, T)
    key = next(k for k in msg.arrays if k.endswith("#V"))
    for bad in (msg.arrays[key][:-1], torch.cat([msg.arrays[key], msg.arrays[key][:1]])):
        tampered = Message({**msg.arrays, key: bad.contiguous()}, msg.config, msg.metrics)
        with pytest.raises(AssertionError):
            check_against_count(tampered, dense, T)
    with pytest.raises(AssertionError):  # a threshold the codec did not use: other ranks
        check_against_count(msg, dense, min(0.999, T + 0.2))
