r"""Non-uniform sparsity: how much of each block to prune for a given overall target.

Pure rules on per-block numbers. ``weights`` are the blocks' prunable parameter counts, so the
overall sparsity is the weighted mean :math:`\bar s = \sum_b w_b s_b / \sum_b w_b`; both rules
return per-block sparsities whose weighted mean is the target (to float precision).

* :func:`inverse_sensitivity`: sparsity proportional to ``1 / sensitivity`` (a block whose
  pruning hurts more keeps more), clipped to ``[low, high]``, with the scale solved so the
  weighted mean is the target.
* :func:`owl` (Yin et al., 2024): blocks with more *outlier* scores keep more weights. The
  outlier ratio of a block is the fraction of its Wanda scores above ``M`` times their mean
  (:func:`outlier_ratio`); ratios map linearly onto ``[s - lambda, s + lambda]``, the largest
  ratio getting ``s - lambda``, then shift so the weighted mean is ``s``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import PrunelibError
from .masks import check_sparsity


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    values, weights = torch.as_tensor(values, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64)
    return float((values * weights).sum() / weights.sum())


def _check(values: Sequence[float], weights: Sequence[float] | None, target: float) -> tuple[torch.Tensor, torch.Tensor]:
    check_sparsity(target)
    values = torch.as_tensor(values, dtype=torch.float64)
    weights = torch.ones_like(values) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if values.dim() != 1 or values.shape != weights.shape or values.numel() == 0:
        raise PrunelibError("need one value and one weight per block")
    if torch.any(weights <= 0) or not torch.isfinite(values).all():
        raise PrunelibError("weights must be positive and values finite")
    return values, weights


def inverse_sensitivity(
    sensitivity: Sequence[float],
    target: float,
    weights: Sequence[float] | None = None,
    *,
    low: float = 0.0,
    high: float = 0.95,
) -> list[float]:
    """Per-block sparsity ``s_b = clip(c / sensitivity_b, low, high)`` with ``c`` such that the
    weighted mean is ``target``. ``sensitivity`` is e.g. the perplexity increase when the block
    alone is pruned; values at or below zero count as the smallest positive one."""
    values, weights = _check(sensitivity, weights, target)
    if not low <= target <= high < 1:
        raise PrunelibError(f"need low <= target <= high < 1, got {low}, {target}, {high}")
    positive = values[values > 0]
    floor = positive.min() if positive.numel() else torch.tensor(1.0, dtype=torch.float64)
    inverse = 1.0 / values.clamp_min(floor)

    def mean_at(c: float) -> float:
        return weighted_mean((c * inverse).clamp(low, high), weights)

    lo, hi = 0.0, float(high / inverse.min())  # at hi every block reaches `high`
    for _ in range(200):  # mean_at is continuous and non-decreasing in c
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_at(mid) < target else (lo, mid)
    c = (lo + hi) / 2
    sparsity = (c * inverse).clamp(low, high)
    free = (sparsity > low) & (sparsity < high)
    if free.any():  # solve the scale exactly on the unclipped blocks
        fixed = (weights[~free] * sparsity[~free]).sum()
        c = float((target * weights.sum() - fixed) / (weights[free] * inverse[free]).sum())
        sparsity[free] = c * inverse[free]
    return sparsity.tolist()


def outlier_ratio(scores: torch.Tensor, m: float = 5.0) -> float:
    """Fraction of entries of ``scores`` greater than ``m`` times their mean (OWL's outlier ratio)."""
    scores = scores.float().reshape(-1)
    return float((scores > m * scores.mean()).float().mean())


def owl(
    outlier_ratios: Sequence[float], target: float, weights: Sequence[float] | None = None, *, lam: float = 0.08
) -> list[float]:
    r"""OWL's per-block sparsity: ``s_b = s + lambda - 2 lambda (D_b - D_min) / (D_max - D_min)``,
    shifted so the weighted mean is ``s``; equal ratios give the uniform ``s``."""
    ratios, weights = _check(outlier_ratios, weights, target)
    if lam < 0:
        raise PrunelibError(f"lambda must be >= 0, got {lam}")
    spread = ratios.max() - ratios.min()
    normalized = (ratios - ratios.min()) / spread if spread > 0 else torch.zeros_like(ratios)
    sparsity = target + lam - 2 * lam * normalized
    sparsity += target - weighted_mean(sparsity, weights)
    if sparsity.min() < 0 or sparsity.max() >= 1:
        raise PrunelibError(f"lambda={lam} around {target} leaves [0, 1); use a smaller lambda")
    return sparsity.tolist()
