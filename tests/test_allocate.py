"""Allocation rules: the overall (parameter-weighted) sparsity is exactly the target, bounds hold,
and more sensitive / more outlier-heavy blocks are pruned less."""

import pytest
import torch

from prunelib.core.allocate import inverse_sensitivity, outlier_ratio, owl, weighted_mean
from prunelib.errors import PrunelibError

gen = torch.Generator().manual_seed(0)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.6, 0.7])
@pytest.mark.parametrize("trial", range(5))
def test_inverse_sensitivity_hits_the_target_within_bounds(target, trial):
    sensitivity = (torch.rand(30, generator=gen) * 10 + 0.01).tolist()
    weights = (torch.randint(1, 5, (30,), generator=gen) * 1000).tolist()
    s = inverse_sensitivity(sensitivity, target, weights, low=0.2, high=0.9)
    assert weighted_mean(s, weights) == pytest.approx(target, abs=1e-12)
    assert min(s) >= 0.2 - 1e-12 and max(s) <= 0.9 + 1e-12
    order = sorted(range(30), key=lambda i: sensitivity[i])
    assert all(s[a] >= s[b] - 1e-12 for a, b in zip(order, order[1:]))  # more sensitive, less pruned


def test_inverse_sensitivity_closed_form_without_clipping():
    # s_b = c / sens_b with c fixed by the weighted mean: c = target * sum(w) / sum(w / sens)
    sens, w = [2.0, 4.0, 8.0], [1.0, 1.0, 2.0]
    c = 0.3 * sum(w) / sum(wi / si for wi, si in zip(w, sens))
    assert inverse_sensitivity(sens, 0.3, w, low=0.0, high=0.99) == pytest.approx([c / s for s in sens], abs=1e-12)


def test_equal_sensitivities_give_the_uniform_target():
    assert inverse_sensitivity([3.0] * 4, 0.6) == pytest.approx([0.6] * 4, abs=1e-12)


def test_inverse_sensitivity_refuses_impossible_bounds():
    with pytest.raises(PrunelibError, match="low <= target"):
        inverse_sensitivity([1.0, 2.0], 0.5, low=0.6)
    with pytest.raises(PrunelibError, match="one value"):
        inverse_sensitivity([1.0, 2.0], 0.5, weights=[1.0])


@pytest.mark.parametrize("lam", [0.0, 0.04, 0.08, 0.2])
def test_owl_spans_two_lambda_reverses_the_ratio_order_and_hits_the_target(lam):
    ratios = torch.rand(30, generator=gen).tolist()
    s = owl(ratios, 0.7, lam=lam)
    assert weighted_mean(s, [1.0] * 30) == pytest.approx(0.7, abs=1e-12)
    assert max(s) - min(s) == pytest.approx(2 * lam, abs=1e-12)
    assert s[ratios.index(max(ratios))] == pytest.approx(min(s))
    assert s[ratios.index(min(ratios))] == pytest.approx(max(s))
    weights = (torch.rand(30, generator=gen) + 0.5).tolist()
    assert weighted_mean(owl(ratios, 0.7, weights, lam=lam), weights) == pytest.approx(0.7, abs=1e-12)


def test_owl_equal_ratios_and_refusals():
    assert owl([0.1] * 5, 0.5) == pytest.approx([0.5] * 5)
    with pytest.raises(PrunelibError, match="lambda"):
        owl([0.0, 1.0], 0.95, lam=0.2)


def test_outlier_ratio_counts_scores_above_m_times_the_mean():
    scores = torch.ones(100)
    scores[:3] = 100.0  # mean = (97 + 300) / 100 = 3.97; threshold 5 * 3.97 = 19.85
    assert outlier_ratio(scores, 5.0) == pytest.approx(0.03)
    assert outlier_ratio(torch.ones(10), 5.0) == 0.0
