"""CPS (paper Sec. 4.1): Eq. 7, Eq. 8, the round trip, and the mask properties."""

import itertools

import pytest
import torch

from tinyproto.cps import compress, hamming_stats, make_masks, reconstruct, sparsify

CASES = [  # (K, d, s): disjoint, exactly full, overlapping, d not divisible by K, K*s >> d
    (10, 500, 50),
    (10, 100, 10),
    (10, 100, 30),
    (7, 50, 9),
    (100, 500, 50),
    (200, 500, 50),
    (20, 64, 16),
    (3, 10, 10),
]


@pytest.mark.parametrize("K,d,s", CASES)
def test_masks_have_exactly_s_ones_per_class(K, d, s):
    m = make_masks(K, d, s, seed=0)
    assert m.dtype == torch.bool and m.shape == (K, d)
    assert (m.sum(1) == s).all()


@pytest.mark.parametrize("K,d,s", [c for c in CASES if c[0] * c[2] <= c[1]])
def test_masks_disjoint_when_they_fit(K, d, s):
    m = make_masks(K, d, s, seed=3).to(torch.int64)
    assert (m.sum(0) <= 1).all()
    stats = hamming_stats(make_masks(K, d, s, seed=3))
    assert stats["hamming_min"] == 2 * s  # maximal: no shared dimension


@pytest.mark.parametrize("K,d,s", [c for c in CASES if c[0] * c[2] > c[1]])
def test_masks_balanced_usage_and_even_overlap(K, d, s):
    m = make_masks(K, d, s, seed=1)
    usage = m.sum(0)
    lo, hi = (K * s) // d, -(-K * s // d)
    assert usage.min() >= lo and usage.max() <= hi and usage.max() - usage.min() <= 1
    stats = hamming_stats(m)
    # near-even overlap: better spread than independent random masks of the same size
    g = torch.Generator().manual_seed(0)
    rand = torch.zeros(K, d, dtype=torch.bool)
    for j in range(K):
        rand[j, torch.randperm(d, generator=g)[:s]] = True
    rstats = hamming_stats(rand)
    spread = stats["overlap_max"] - stats["overlap_min"]
    assert spread <= rstats["overlap_max"] - rstats["overlap_min"]
    assert stats["hamming_min"] >= rstats["hamming_min"]
    if s < d:
        assert stats["hamming_min"] > 0  # no two classes share a mask


def test_masks_deterministic_per_seed():
    a, b = make_masks(100, 500, 50, seed=7), make_masks(100, 500, 50, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, make_masks(100, 500, 50, seed=8))
    assert not torch.equal(make_masks(10, 500, 50, seed=0), make_masks(10, 500, 50, seed=1))


@pytest.mark.parametrize("bad", [(10, 50, 0), (10, 50, 51), (0, 50, 5), (10, 0, 1)])
def test_masks_reject_bad_sizes(bad):
    with pytest.raises(ValueError, match="invalid"):
        make_masks(*bad)


def test_eq7_sparsify_is_hadamard_product():
    m = make_masks(4, 12, 3, seed=0)
    p = torch.randn(12)
    out = sparsify(p, m[2])
    assert out.shape == (12,)
    assert torch.equal(out, p * m[2].float())
    assert (out[~m[2]] == 0).all() and torch.equal(out[m[2]], p[m[2]])


def test_eq8_compress_keeps_masked_entries_in_index_order():
    m = torch.zeros(10, dtype=torch.bool)
    m[[7, 1, 4]] = True
    p = torch.arange(10, dtype=torch.float32) * 10
    assert compress(p, m).tolist() == [10.0, 40.0, 70.0]


@pytest.mark.parametrize("K,d,s", CASES)
def test_round_trip_equals_sparsify(K, d, s):
    m = make_masks(K, d, s, seed=2)
    P = torch.randn(K, d)
    c = compress(P, m)
    assert c.shape == (K, s)
    assert torch.equal(reconstruct(c, m), sparsify(P, m))
    assert torch.equal(compress(reconstruct(c, m), m), c)
    for j in (0, K - 1):  # single-vector form agrees with the batched form
        assert torch.equal(compress(P[j], m[j]), c[j])


def test_reconstruct_rejects_wrong_length():
    m = make_masks(3, 20, 4)
    with pytest.raises(ValueError, match="do not fit"):
        reconstruct(torch.ones(5), m[0])


def test_hamming_stats_values():
    m = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    st = hamming_stats(m)
    pairs = [(m[i] ^ m[j]).sum().item() for i, j in itertools.combinations(range(3), 2)]
    assert st["hamming_min"] == min(pairs) == 2 and st["hamming_max"] == max(pairs) == 4
    assert st["hamming_mean"] == pytest.approx(sum(pairs) / 3)
    assert (st["usage_min"], st["usage_max"]) == (1, 2)
