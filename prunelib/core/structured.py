r"""Structured pruning of one matrix: whole rows, whole columns or square blocks.

All scores come from the same quantity, the Wanda-style energy
:math:`E_{ij} = W_{ij}^2 \, \|X_j\|^2` of ``weight`` ``(out, in)`` and the mean squared
input norm per column ``norms`` ``(in,)`` (:class:`prunelib.core.stats.InputNormStat`).

* Removing input column ``j`` changes the output by :math:`W_{:,j} x_j`, whose energy over the
  calibration tokens is exactly :math:`\|W_{:,j}\|^2 \|X_j\|^2 = \sum_i E_{ij}`.
* Removing output row ``i`` zeroes output ``i``; :math:`\sum_j E_{ij}` is the diagonal
  estimate of its energy :math:`W_i X X^\top W_i^\top`.
* A block's score is the sum of ``E`` over the block.

Functions return the *kept* indices (sorted), so a caller can slice a matrix to a
physically smaller one, or a keep mask for the zero-in-place comparison with unstructured
masks. After columns are removed, :func:`refit_columns` re-solves the remaining weights by
least squares on the calibration Hessian, the second-order correction of OBS applied to
whole columns.
"""

from __future__ import annotations

import torch

from ..errors import PrunelibError
from .hessian import drop_dead_inputs
from .masks import check_sparsity, n_pruned

KINDS = ("row", "column", "block")


def energy(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``E_ij = W_ij^2 * norms_j``, ``(out, in)`` float32."""
    if norms.shape != (weight.shape[1],):
        raise PrunelibError(f"norms of shape {tuple(norms.shape)} do not match {weight.shape[1]} input columns")
    return weight.float().pow(2) * norms.float().unsqueeze(0)


def row_scores(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``(out,)``: ``sum_j E_ij``."""
    return energy(weight, norms).sum(1)


def column_scores(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``(in,)``: ``sum_i E_ij = ||W_:,j||^2 * norms_j``, the exact output energy of input ``j``."""
    return energy(weight, norms).sum(0)


def block_scores(weight: torch.Tensor, norms: torch.Tensor, block: int = 64) -> torch.Tensor:
    """``(out / block, in / block)``: ``E`` summed over each ``block x block`` tile."""
    rows, cols = weight.shape
    if block < 1 or rows % block or cols % block:
        raise PrunelibError(f"a {rows}x{cols} matrix does not tile into {block}x{block} blocks")
    return energy(weight, norms).reshape(rows // block, block, cols // block, block).sum((1, 3))


def keep_top(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Sorted indices of the entries of 1-D ``scores`` that stay when the lowest ``ratio`` go.

    Removes exactly ``floor(len * ratio)`` entries; ties break by index (stable sort).
    """
    check_sparsity(ratio)
    removed = n_pruned(scores.numel(), ratio)
    order = torch.argsort(scores, descending=True, stable=True)
    return order[: scores.numel() - removed].sort().values


def grouped_keep_top(scores: torch.Tensor, groups: int, ratio: float) -> torch.Tensor:
    """Like :func:`keep_top`, but the same number is removed inside each of ``groups`` equal,
    consecutive slices of ``scores`` (grouped-query attention keeps every KV group equally wide)."""
    if scores.numel() % groups:
        raise PrunelibError(f"{scores.numel()} scores do not split into {groups} equal groups")
    size = scores.numel() // groups
    kept = [keep_top(part, ratio) + g * size for g, part in enumerate(scores.split(size))]
    return torch.cat(kept)


def expand_units(kept_units: torch.Tensor, unit: int) -> torch.Tensor:
    """Indices of all members of the kept units of ``unit`` consecutive entries (heads -> rows)."""
    return (kept_units.unsqueeze(1) * unit + torch.arange(unit)).reshape(-1)


def structured_mask(
    weight: torch.Tensor, norms: torch.Tensor, sparsity: float, kind: str = "row", block: int = 64
) -> torch.Tensor:
    """Keep mask ``(out, in)`` removing the lowest-scoring ``sparsity`` fraction of rows, columns or blocks."""
    keep = torch.zeros(weight.shape, dtype=torch.bool, device=weight.device)
    if kind == "row":
        keep[keep_top(row_scores(weight, norms), sparsity)] = True
    elif kind == "column":
        keep[:, keep_top(column_scores(weight, norms), sparsity)] = True
    elif kind == "block":
        scores = block_scores(weight, norms, block)
        tiles = torch.zeros(scores.numel(), dtype=torch.bool, device=weight.device)
        tiles[keep_top(scores.reshape(-1), sparsity)] = True
        keep = tiles.view(scores.shape).repeat_interleave(block, 0).repeat_interleave(block, 1)
    else:
        raise PrunelibError(f"unknown structure '{kind}'; use one of {KINDS}")
    return keep


def refit_columns(weight: torch.Tensor, H: torch.Tensor, keep: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    r"""Least-squares weights ``(out, |K|)`` for the kept input columns ``K``.

    Minimises :math:`\|W X - W'_K X_K\|_F^2` over :math:`W'_K`, with ``H = (2/n) X X^T``
    ``(in, in)``: the normal equations give
    :math:`W'_K = W H_{:,K} (H_{KK} + \lambda I)^{-1}`, ``lambda = percdamp * mean(diag H_KK)``.
    Solved in float32 (float64 when either input is). The removed columns' contribution is folded into the kept ones as far as it is linearly
    predictable from them.
    """
    compute = torch.float64 if torch.float64 in (weight.dtype, H.dtype) else torch.float32
    W, H = weight.to(compute), H.to(compute)
    keep = keep.to(H.device)
    H_kk, _, _ = drop_dead_inputs(H[keep][:, keep], W[:, keep])
    H_kk.diagonal().add_(percdamp * H_kk.diagonal().mean().clamp_min(1e-12))
    rhs = W @ H[:, keep]  # (out, |K|)
    solution = torch.linalg.solve(H_kk, rhs.T).T  # H_kk is symmetric
    return solution.to(weight.dtype)
