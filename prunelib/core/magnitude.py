"""Magnitude pruning: zero the weights with the smallest ``|W_ij|``."""

from __future__ import annotations

import torch

from .masks import NM, Pruned, select_mask


def magnitude(weight: torch.Tensor, *, sparsity: float = 0.0, nm: NM | None = None, group: str = "matrix") -> Pruned:
    """Keep the largest ``|W_ij|``.

    ``group="matrix"`` (the papers' baseline) compares the whole matrix, ``"row"`` each
    output row; ``nm`` switches to N:M groups of consecutive inputs and ignores ``sparsity``.
    """
    mask = select_mask(weight.abs(), sparsity, nm, group)
    return Pruned(weight.masked_fill(~mask, 0), mask)
