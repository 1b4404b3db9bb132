"""Pruning methods: pure functions of (weight, statistics, options) -> :class:`Pruned`.

Weights are ``(out_features, in_features)``; masks are boolean with ``True`` = kept.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Pruned(NamedTuple):
    weight: torch.Tensor  #: the new weight, same shape and dtype as the input
    mask: torch.Tensor  #: bool, True where the weight is kept
    #: float32 ``(out, groups)`` when the weight was also quantized (SparseGPT's joint mode):
    #: then ``weight = codes * scales`` with integer codes
    scales: torch.Tensor | None = None


from .gptq import gptq  # noqa: E402
from .magnitude import magnitude  # noqa: E402
from .sparsegpt import sparsegpt  # noqa: E402
from .wanda import wanda, wanda_scores  # noqa: E402

#: method name -> the statistic it needs from calibration data (None: no calibration).
STATISTIC = {"magnitude": None, "wanda": "norms", "sparsegpt": "hessian"}
METHODS = tuple(STATISTIC)

__all__ = ["METHODS", "STATISTIC", "Pruned", "gptq", "magnitude", "sparsegpt", "wanda", "wanda_scores"]
