"""Wanda (Sun et al., 2024): score ``|W_ij| * ||X_j||_2``, compared within each output row."""

from __future__ import annotations

import torch

from .masks import NM, Pruned, select_mask


def wanda_scores(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``S_ij = |W_ij| * sqrt(norms_j)`` for ``weight`` ``(out, in)`` and ``norms`` ``(in,)``.

    ``norms`` is :class:`prunelib.core.stats.InputNormStat`'s mean squared input norm per column.
    It is the diagonal approximation of the OBS saliency ``w_ij^2 / [H^-1]_jj`` with
    ``H ~ diag(X X^T)``, taken as a square root.
    """
    return weight.abs().float() * norms.float().sqrt().unsqueeze(0)


def wanda(
    weight: torch.Tensor, norms: torch.Tensor, *, sparsity: float = 0.0, nm: NM | None = None, group: str = "row"
) -> Pruned:
    """Zero the lowest Wanda scores per output row (default, as the paper) or per matrix; or N:M."""
    mask = select_mask(wanda_scores(weight, norms), sparsity, nm, group)
    return Pruned(weight.masked_fill(~mask, 0), mask)
