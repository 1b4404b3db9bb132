"""Mask selection rules: which weights to zero, given scores.

Every rule returns a boolean *keep* mask (``True`` = weight stays) with exactly the
requested number of zeros in each comparison group. Selection is by index (a stable sort),
never by threshold: with ``score <= threshold`` a tie at the threshold, common in
dequantized weights, would prune more than asked.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..errors import PrunelibError

GROUPS = ("matrix", "row")


class NM(NamedTuple):
    """N:M sparsity: at most ``n`` non-zeros in every ``m`` consecutive inputs of a row (2:4 keeps 2 of 4)."""

    n: int
    m: int

    @classmethod
    def parse(cls, text: str | tuple | "NM") -> "NM":
        if isinstance(text, tuple):
            pattern = cls(*text)
        else:
            try:
                n, m = (int(part) for part in str(text).split(":"))
            except ValueError:
                raise PrunelibError(f"N:M pattern must look like '2:4', got '{text}'") from None
            pattern = cls(n, m)
        if not 1 <= pattern.n < pattern.m:
            raise PrunelibError(f"N:M needs 1 <= N < M, got {pattern.n}:{pattern.m}")
        return pattern

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def check_sparsity(sparsity: float) -> float:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise PrunelibError(f"sparsity must be in [0, 1), got {sparsity}")
    return float(sparsity)


def check_nm_columns(pattern: NM, columns: int, where: str = "the weight") -> None:
    if columns % pattern.m:
        raise PrunelibError(f"{where} has {columns} input columns, not divisible by M={pattern.m} of {pattern}")


def n_pruned(count: int, sparsity: float) -> int:
    """Number of weights to zero out of ``count``: ``floor(count * sparsity)``, robust to float error."""
    return min(count, math.floor(count * sparsity + 1e-9))


def _zero_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep mask zeroing the ``k`` lowest scores along the last dimension."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        lowest = torch.argsort(scores, dim=-1, stable=True)[..., :k]
        keep.scatter_(-1, lowest, False)
    return keep


def unstructured_mask(scores: torch.Tensor, sparsity: float, group: str = "matrix") -> torch.Tensor:
    """Zero the lowest ``sparsity`` fraction of ``scores`` ``(rows, cols)``.

    ``group="matrix"`` compares all entries together; ``group="row"`` compares within each
    output row, so every row gets exactly ``floor(cols * sparsity)`` zeros.
    """
    check_sparsity(sparsity)
    if group == "matrix":
        return _zero_lowest(scores.reshape(-1), n_pruned(scores.numel(), sparsity)).reshape(scores.shape)
    if group == "row":
        return _zero_lowest(scores, n_pruned(scores.shape[-1], sparsity))
    raise PrunelibError(f"unknown comparison group '{group}'; use one of {GROUPS}")


def nm_mask(scores: torch.Tensor, pattern: NM) -> torch.Tensor:
    """Keep the ``n`` highest scores in each group of ``m`` consecutive columns of ``(rows, cols)``."""
    rows, cols = scores.shape
    check_nm_columns(pattern, cols)
    groups = scores.reshape(rows, cols // pattern.m, pattern.m)
    return _zero_lowest(groups, pattern.m - pattern.n).reshape(rows, cols)


def select_mask(scores: torch.Tensor, sparsity: float = 0.0, nm: NM | None = None, group: str = "matrix") -> torch.Tensor:
    """N:M mask when ``nm`` is given, else the unstructured mask of ``sparsity`` per ``group``."""
    return nm_mask(scores, nm) if nm is not None else unstructured_mask(scores, sparsity, group)


class Pruned(NamedTuple):
    weight: torch.Tensor  #: the new weight, same shape and dtype as the input
    mask: torch.Tensor  #: bool, True where the weight is kept
    #: float32 ``(out, groups)`` when the weight was also quantized (SparseGPT's joint mode):
    #: then ``weight = codes * scales`` with integer codes
    scales: torch.Tensor | None = None
