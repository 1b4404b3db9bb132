r"""Channel permutation for N:M sparsity (Pool and Yu, 2021).

An N:M mask keeps the ``n`` best of every ``m`` *consecutive* input columns. When two
important columns sit in the same group, one of them must go, although a less important
column elsewhere could have gone instead. Reordering the input columns of ``W`` ``(out, in)``
by a permutation ``p`` changes which columns share a group; the layer computes the same
function if its input is permuted the same way, which is free when the input is produced by
another linear: permute that producer's output rows. In a Llama MLP, permuting the rows of
``gate_proj`` and ``up_proj`` and the columns of ``down_proj`` together leaves the block's
output unchanged exactly (:func:`prunelib.model.channels.permute_mlp_channels` does that to a block).

The objective is the retained score :math:`\sum_{\text{rows}} \sum_{\text{groups}}
\text{top}_n(S_{\text{row}, \text{group}})` for a score matrix ``S`` (``|W|``, Wanda's
``|W| * ||X||``, ...). The search:

1. start from the better of the identity and a *striped* order (columns sorted by total
   score and dealt round-robin to the groups, so the strongest columns land in different groups);
2. improve it by swapping pairs of columns between groups: evaluate the exact gain of many
   candidate swaps at once and apply the best ones that touch disjoint groups (their gains
   add up), until a round finds no improving swap.

With ``exhaustive=True`` each round evaluates every pair, so the result is a local optimum
under single swaps (affordable for small matrices; the tests check it against brute force).
"""

from __future__ import annotations

import torch

from ..errors import PrunelibError
from .masks import NM, check_nm_columns


def retained_score(scores: torch.Tensor, pattern: NM) -> torch.Tensor:
    """Sum over rows and groups of the ``n`` largest of each group of ``m`` consecutive columns."""
    rows, cols = scores.shape
    check_nm_columns(pattern, cols)
    return scores.reshape(rows, cols // pattern.m, pattern.m).topk(pattern.n, dim=-1).values.sum()


def striped_order(scores: torch.Tensor, pattern: NM) -> torch.Tensor:
    """Columns by descending total score, dealt round-robin to the ``in / m`` groups."""
    cols = scores.shape[1]
    groups = cols // pattern.m
    ranked = torch.argsort(scores.sum(0), descending=True, stable=True)
    # rank r goes to slot (r // groups) of group (r % groups)
    return ranked.view(pattern.m, groups).T.reshape(-1)


def _top_n_sum(grouped: torch.Tensor, pattern: NM) -> torch.Tensor:
    """Sum of the ``n`` largest along dim 1 of ``grouped`` ``(G, m, rows)``, summed over rows -> ``(G,)``.

    For 2:4 a sorting network of elementwise max/min (several times faster than ``topk``):
    with ``lo/hi`` the sorted pairs ``(a, b)`` and ``(c, d)``, the two largest of four sum to
    ``max(hi1, hi2) + max(min(hi1, hi2), max(lo1, lo2))``.
    """
    if pattern == (2, 4):
        a, b, c, d = grouped.unbind(1)
        lo1, hi1 = torch.minimum(a, b), torch.maximum(a, b)
        lo2, hi2 = torch.minimum(c, d), torch.maximum(c, d)
        top = torch.maximum(hi1, hi2) + torch.maximum(torch.minimum(hi1, hi2), torch.maximum(lo1, lo2))
        return top.sum(-1)
    return grouped.topk(pattern.n, dim=1).values.sum((1, 2))


def _swap_gains(St: torch.Tensor, pattern: NM, a: torch.Tensor, b: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Exact gain in retained score of swapping column positions ``a[k]`` and ``b[k]`` (different groups).

    ``St`` is the currently permuted score matrix, transposed ``(in, rows)``, so that gathering
    whole columns is contiguous; ``base`` holds the per-group scores.
    """
    m = pattern.m
    ga, gb = a // m, b // m
    members = torch.arange(m, device=St.device)
    cols_a = ga.unsqueeze(1) * m + members  # (P, m) positions in group A
    cols_b = gb.unsqueeze(1) * m + members
    # replace a by b inside group A, and b by a inside group B
    cols_a = torch.where(cols_a == a.unsqueeze(1), b.unsqueeze(1), cols_a)
    cols_b = torch.where(cols_b == b.unsqueeze(1), a.unsqueeze(1), cols_b)
    return _top_n_sum(St[cols_a], pattern) + _top_n_sum(St[cols_b], pattern) - base[ga] - base[gb]


def search_permutation(
    scores: torch.Tensor,
    pattern: NM | str,
    *,
    rounds: int = 100,
    candidates: int = 4096,
    exhaustive: bool = False,
    min_gain: float = 1e-5,
    seed: int = 0,
) -> torch.Tensor:
    """A permutation ``p`` of the input columns of ``scores`` ``(out, in)`` such that
    ``retained_score(scores[:, p])`` is at least that of the identity (usually much higher).

    Each round samples ``candidates`` column pairs from different groups (all pairs when
    ``exhaustive``), computes their exact gains and applies the best group-disjoint improving
    swaps; the search stops after ``rounds`` rounds, when a round finds no improving swap, or
    when a round gains less than ``min_gain`` times the retained score (not in exhaustive mode).
    """
    pattern = NM.parse(pattern)
    scores = scores.float()
    rows, cols = scores.shape
    check_nm_columns(pattern, cols)
    if rounds < 0 or candidates < 1:
        raise PrunelibError("rounds must be >= 0 and candidates >= 1")
    groups = cols // pattern.m
    identity = torch.arange(cols, device=scores.device)
    perm = identity
    if groups < 2:
        return perm
    striped = striped_order(scores, pattern)
    if retained_score(scores[:, striped], pattern) > retained_score(scores, pattern):
        perm = striped
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if exhaustive:
        a_all, b_all = torch.triu_indices(cols, cols, offset=1, device=scores.device)
        different = a_all // pattern.m != b_all // pattern.m
        a_all, b_all = a_all[different], b_all[different]

    for _ in range(rounds):
        St = scores[:, perm].T.contiguous()
        base = _top_n_sum(St.view(groups, pattern.m, rows), pattern)
        if exhaustive:
            a, b = a_all, b_all
        else:
            a = torch.randint(cols, (candidates,), generator=generator).to(scores.device)
            b = torch.randint(cols, (candidates,), generator=generator).to(scores.device)
            keep = a // pattern.m != b // pattern.m
            a, b = a[keep], b[keep]
        gains = torch.cat([_swap_gains(St, pattern, a[i:i + 8192], b[i:i + 8192], base) for i in range(0, a.numel(), 8192)])
        # a relative threshold so that float round-off never counts as an improvement
        tolerance = 1e-6 * base.abs().max().clamp_min(1e-30)
        order = torch.argsort(gains, descending=True)
        order = order[gains[order] > tolerance]
        if order.numel() == 0:
            break
        used = torch.zeros(groups, dtype=torch.bool)
        perm = perm.clone()
        gained = 0.0
        for k in order.tolist():
            i, j = int(a[k]), int(b[k])
            if used[i // pattern.m] or used[j // pattern.m]:
                continue
            used[i // pattern.m] = used[j // pattern.m] = True
            perm[i], perm[j] = perm[j].clone(), perm[i].clone()
            gained += float(gains[k])
        if not exhaustive and gained < min_gain * float(base.sum()):
            break
    return perm
