"""APS (paper Sec. 4.2): local scaling, the server's sum, Eq. 10's division, global scaling."""

import torch

from tinyproto import aps


def _uploads():
    # client A holds classes 0, 2; client B holds 2, 3 (K = 4, D = 3)
    pa, na = torch.tensor([[1.0, 2, 3], [4, 5, 6]]), torch.tensor([10, 2])
    pb, nb = torch.tensor([[0.5, 0.5, 0.5], [1, 1, 1]]), torch.tensor([4, 7])
    return (torch.tensor([0, 2]), pa, na), (torch.tensor([2, 3]), pb, nb)


def test_local_scaling_multiplies_by_class_counts():
    (ca, pa, na), _ = _uploads()
    out = aps.scale_local(pa, na)
    assert torch.equal(out, torch.tensor([[10.0, 20, 30], [8, 10, 12]]))


def test_server_sum_equals_count_weighted_sum():
    a, b = _uploads()
    ups = [(c, aps.scale_local(p, n)) for c, p, n in (a, b)]
    P, holders = aps.aggregate(ups, 4)
    assert holders.tolist() == [1, 0, 2, 1]
    # class 2: n_A p_A2 + n_B p_B2, i.e. n_2 times the weighted mean of Eq. 4
    expected2 = 2 * a[1][1] + 4 * b[1][0]
    assert torch.allclose(P[2], expected2)
    n2 = 2 + 4
    weighted_mean = (2 * a[1][1] + 4 * b[1][0]) / n2
    assert torch.allclose(P[2] / n2, weighted_mean)
    assert torch.equal(P[1], torch.zeros(3))  # nobody holds class 1
    assert torch.allclose(P[0], 10 * a[1][0]) and torch.allclose(P[3], 7 * b[1][1])


def test_eq10_divides_by_number_of_holders():
    a, b = _uploads()
    ups = [(c, aps.scale_local(p, n)) for c, p, n in (a, b)]
    P_sum, _ = aps.aggregate(ups, 4)
    P_div, _ = aps.aggregate(ups, 4, divide=True)
    assert torch.allclose(P_div[2], P_sum[2] / 2)
    assert torch.allclose(P_div[0], P_sum[0]) and torch.equal(P_div[1], P_sum[1])


def test_global_scaling():
    P = torch.tensor([[2.0, -4.0]])
    assert torch.equal(aps.scale_global(P, 0.25), torch.tensor([[0.5, -1.0]]))


def test_simple_mean_is_eq9():
    a, b = _uploads()
    P, _ = aps.sum_by_class([(a[0], a[1]), (b[0], b[1])], 4, mean=True)
    assert torch.allclose(P[2], (a[1][1] + b[1][0]) / 2)


def test_per_holder_is_eq10s_division_of_the_sum():
    """The division the servers apply to per-class sums (plain or securely aggregated)."""
    a, b = _uploads()
    ups = [(c, aps.scale_local(p, n)) for c, p, n in (a, b)]
    P_sum, holders = aps.aggregate(ups, 4)
    P_div, _ = aps.aggregate(ups, 4, divide=True)
    assert torch.equal(aps.per_holder(P_sum, holders), P_div)
    assert torch.equal(aps.per_holder(P_sum, holders)[1], torch.zeros(3))  # no holder: stays 0
