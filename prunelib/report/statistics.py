r"""How sure a stated comparison is: seed spread, accuracy intervals, documents needed, rank correlation.

**Seeds.** A calibrated method gives one number per calibration draw; :func:`spread` is their mean
and sample standard deviation (``n - 1`` in the denominator). Two methods' gap *exceeds the seed
spread* (:func:`compare`) when :math:`|\bar a - \bar b| > s_a + s_b`; a method without calibration
(dense, magnitude) has :math:`s = 0`. With three seeds this is a stated rule, not a test.

**Accuracy.** An accuracy :math:`p` on :math:`n` documents has standard error
:math:`\sqrt{p(1-p)/n}`; the gap of two models scored on *different* documents has
:math:`\mathrm{se}(\Delta) = \sqrt{p_1 q_1/n_1 + p_2 q_2/n_2}`, and the 95% interval
:math:`\Delta \pm 1.96\,\mathrm{se}` separates them when it excludes 0. On the *same*
documents the pair is correlated; without per-document outcomes, the unpaired interval is the
conservative one. :func:`documents_needed` inverts it: the smallest :math:`n` per model at which a
true gap :math:`p_1 - p_2` gives an interval that excludes 0 with the given power,

.. math::  n = (z_{\alpha/2} + z_\beta)^2\, (p_1 q_1 + p_2 q_2) / (p_1 - p_2)^2 .

**Rank correlation.** Spearman's :math:`\rho` is Pearson's correlation of the ranks (ties get
their mean rank); its interval comes from Fisher's :math:`z = \operatorname{atanh}\rho` with
standard error :math:`1.03/\sqrt{n-3}` (Fieller, Hartley and Pearson, 1957).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import PrunelibError

Z95 = 1.959963984540054  #: two-sided 95%
Z_POWER80 = 0.8416212335729143  #: one-sided 80% power


def spread(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample standard deviation)``; the deviation of one value is 0."""
    if not values:
        raise PrunelibError("spread of no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def compare(a: Sequence[float], b: Sequence[float]) -> dict:
    """``{"gap": mean(a) - mean(b), "spread": s_a + s_b, "exceeds": |gap| > spread}``."""
    (mean_a, std_a), (mean_b, std_b) = spread(a), spread(b)
    gap = mean_a - mean_b
    return {"gap": gap, "spread": std_a + std_b, "exceeds": abs(gap) > std_a + std_b}


def accuracy_se(p: float, n: int) -> float:
    """``sqrt(p (1 - p) / n)``."""
    if n < 1 or not 0 <= p <= 1:
        raise PrunelibError(f"accuracy must be in [0, 1] on n >= 1 documents, got p={p}, n={n}")
    return math.sqrt(p * (1 - p) / n)


def gap_interval(p1: float, n1: int, p2: float, n2: int, z: float = Z95) -> tuple[float, float]:
    """The unpaired interval ``(p1 - p2) -+ z se(Delta)`` (see the module docstring)."""
    se = math.hypot(accuracy_se(p1, n1), accuracy_se(p2, n2))
    return p1 - p2 - z * se, p1 - p2 + z * se


def documents_needed(p1: float, p2: float, z: float = Z95, power_z: float = Z_POWER80) -> int | None:
    """Documents per model for the interval of a true gap ``p1 - p2`` to exclude 0 with the power
    of ``power_z`` (0: only on average); None when the two are equal."""
    if p1 == p2:
        return None
    return math.ceil((z + power_z) ** 2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p1 - p2) ** 2)


def documents_needed_mean(pairs: Sequence[tuple[float, float]], z: float = Z95,
                          power_z: float = Z_POWER80) -> int | None:
    """Documents per task and model for the interval of the gap of *mean* accuracies over ``k``
    tasks, ``pairs`` of true ``(p1, p2)``, to exclude 0 with that power:
    ``n = (z + z_beta)^2 sum(p1 q1 + p2 q2) / (k^2 gap^2)``; None when the means are equal."""
    gap = sum(p1 - p2 for p1, p2 in pairs) / len(pairs)
    if gap == 0:
        return None
    variance = sum(p1 * (1 - p1) + p2 * (1 - p2) for p1, p2 in pairs)
    return math.ceil((z + power_z) ** 2 * variance / (len(pairs) ** 2 * gap**2))


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    found = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            found[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return found


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        raise PrunelibError("correlation of a constant sequence is undefined")
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float], z: float = Z95) -> dict:
    """``{"rho", "low", "high", "n", "p"}``: Spearman's rank correlation, its Fisher-z interval
    (degenerate, ``low = high = rho``, when the ranks agree perfectly) and, for at most
    :data:`EXACT_N` pairs, the exact two-sided permutation p-value (else None). Needs at least 4 pairs."""
    if len(x) != len(y) or len(x) < 4:
        raise PrunelibError(f"Spearman's interval needs at least 4 pairs of equal length, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    rho = pearson(rx, ry)
    found = {"rho": rho, "n": len(x), "p": _permutation_p(rx, ry, rho) if len(x) <= EXACT_N else None}
    if abs(rho) == 1:  # Fisher's z is infinite: no interval, only the exact p says how surprising it is
        return {**found, "low": rho, "high": rho}
    half = z * 1.03 / math.sqrt(len(x) - 3)
    return {**found, "low": math.tanh(math.atanh(rho) - half), "high": math.tanh(math.atanh(rho) + half)}


#: up to this many pairs :func:`spearman` also gives the exact two-sided permutation p-value (n! orders)
EXACT_N = 8


def _permutation_p(rx: Sequence[float], ry: Sequence[float], rho: float) -> float:
    """Share of the orderings of ``ry`` whose rank correlation with ``rx`` is at least as far from 0."""
    import itertools

    hits = total = 0
    for order in itertools.permutations(ry):
        total += 1
        hits += abs(pearson(rx, order)) >= abs(rho) - 1e-12
    return hits / total


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (in input order) of the points no other point dominates, every coordinate to be
    minimized: ``q`` dominates ``p`` when ``q_k <= p_k`` for all ``k`` and ``q != p``. Equal
    points are all kept. (Perplexity against megabytes; flip the sign of a coordinate to maximize it.)"""
    def dominates(q, p):
        return all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
