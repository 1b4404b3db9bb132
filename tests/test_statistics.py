"""prunelib.report.statistics: seed spread, accuracy intervals, documents needed, Spearman's interval."""

import math
import random
import statistics as py

import pytest
import torch

from prunelib.errors import PrunelibError
from prunelib.report.statistics import (
    Z95,
    compare,
    documents_needed,
    gap_interval,
    ranks,
    spearman,
    spread,
)


def test_spread_is_the_mean_and_sample_deviation():
    values = [45.11, 45.02, 44.7]
    assert spread(values) == pytest.approx((py.mean(values), py.stdev(values)))
    assert spread([3.0]) == (3.0, 0.0)
    with pytest.raises(PrunelibError):
        spread([])


def test_a_gap_exceeds_the_spread_only_beyond_the_sum_of_deviations():
    a, b = [10.0, 11.0, 12.0], [14.0, 14.0, 14.0]  # s_a = 1, s_b = 0
    assert compare(a, b) == {"gap": -3.0, "spread": 1.0, "exceeds": True}
    assert not compare([10.0, 12.0, 14.0], [13.0, 13.0, 13.0])["exceeds"]  # gap 1, spread 2


def test_gap_interval_closed_form():
    low, high = gap_interval(0.5, 100, 0.5, 100)
    assert (low, high) == pytest.approx((-Z95 * math.sqrt(0.005), Z95 * math.sqrt(0.005)))


def test_documents_needed_is_the_smallest_n_whose_interval_excludes_zero_on_average():
    for p1, p2 in ((0.49, 0.40), (0.65, 0.64), (0.3, 0.45)):
        n = documents_needed(p1, p2, power_z=0.0)
        assert abs(p1 - p2) >= Z95 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
        assert abs(p1 - p2) < Z95 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / (n - 1))
    assert documents_needed(0.5, 0.5) is None


def test_documents_needed_gives_its_power_in_simulation():
    p1, p2 = 0.6, 0.5
    n = documents_needed(p1, p2)  # 80% power
    torch.manual_seed(0)
    draws = 4000
    a = torch.distributions.Binomial(n, torch.full((draws,), p1)).sample() / n
    b = torch.distributions.Binomial(n, torch.full((draws,), p2)).sample() / n
    separated = sum(gap_interval(x, n, y, n)[0] > 0 for x, y in zip(a.tolist(), b.tolist()))
    assert separated / draws == pytest.approx(0.80, abs=0.03)


def test_ranks_share_ties_like_brute_force():
    rng = random.Random(1)
    values = [rng.choice([1, 2, 2, 3, 5, 5, 5]) for _ in range(12)]
    brute = [sum(v < x for v in values) + (sum(v == x for v in values) + 1) / 2 for x in values]
    assert ranks(values) == brute


def test_spearman_without_ties_matches_the_textbook_formula_and_has_an_interval_around_it():
    rng = random.Random(2)
    x = [rng.random() for _ in range(9)]
    y = [xi + rng.gauss(0, 0.3) for xi in x]
    d2 = sum((a - b) ** 2 for a, b in zip(ranks(x), ranks(y)))
    found = spearman(x, y)
    assert found["rho"] == pytest.approx(1 - 6 * d2 / (9 * (9**2 - 1)))
    assert -1 < found["low"] < found["rho"] < found["high"] < 1
    half = Z95 * 1.03 / math.sqrt(9 - 3)
    assert math.atanh(found["high"]) - math.atanh(found["rho"]) == pytest.approx(half)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40])["rho"] == 1
    with pytest.raises(PrunelibError):
        spearman([1, 2, 3], [1, 2, 3])


def test_pareto_front_keeps_exactly_the_undominated_points():
    from prunelib.report.statistics import pareto_front

    assert pareto_front([(1, 5), (2, 2), (3, 3), (5, 1), (2, 2)]) == [0, 1, 3, 4]  # (3, 3) is dominated by (2, 2)
    assert pareto_front([]) == []
    rng = random.Random(0)

    def weakly_better(q, p):
        return all(a <= b for a, b in zip(q, p))

    for _ in range(200):
        dims = rng.choice((2, 3))
        points = [tuple(rng.randint(0, 6) for _ in range(dims)) for _ in range(rng.randint(1, 12))]
        kept = pareto_front(points)
        front = [points[i] for i in kept]
        # the front is a set of mutual trade-offs, and every dropped point is beaten by one on it
        assert all(not weakly_better(q, p) or q == p for p in front for q in front)
        for i, p in enumerate(points):
            if i not in kept:
                assert any(weakly_better(q, p) and q != p for q in front)
        # the minimum of each coordinate is always on the front
        assert all(min(p[k] for p in points) == min(q[k] for q in front) for k in range(dims))


def test_spearman_exact_p_counts_orderings_at_least_as_extreme():
    from prunelib.report.statistics import spearman

    perfect = spearman([1, 2, 3, 4], [40, 30, 20, 10])
    assert perfect["rho"] == -1 and perfect["p"] == pytest.approx(2 / 24)  # rho = +1 or -1: 2 of 4! orders
    five = spearman([1, 2, 3, 4, 5], [2, 1, 3, 4, 5])  # rho = 0.9: orders with |rho| >= 0.9
    import itertools
    from prunelib.report.statistics import pearson
    extreme = sum(abs(pearson([1, 2, 3, 4, 5], list(o))) >= 0.9 - 1e-12 for o in itertools.permutations([1, 2, 3, 4, 5]))
    assert five["rho"] == pytest.approx(0.9) and five["p"] == pytest.approx(extreme / 120)
    assert extreme == 10  # rho = 1 and the 4 adjacent swaps, on each side
    assert spearman(list(range(9)), list(range(9)))["p"] is None  # past EXACT_N: no enumeration
