"""Running input statistics of one linear layer, accumulated in float32 batch by batch.

Both are running means, so the result does not depend on how the calibration set is
split into batches.
"""

from __future__ import annotations

import torch


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Flatten ``(..., d)`` activations to ``(tokens, d)`` float32."""
    return x.reshape(-1, x.shape[-1]).float()


class HessianStat:
    r"""Layer-wise Hessian of the reconstruction loss :math:`\|WX - \hat W X\|_F^2`.

    ``H = (2 / n) * sum_t x_t x_t^T`` over all ``n`` tokens seen, shape ``(d, d)``, float32.
    """

    def __init__(self, columns: int, device: torch.device | str = "cpu"):
        self.H = torch.zeros(columns, columns, dtype=torch.float32, device=device)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        """Fold in activations ``x`` of shape ``(..., d)``."""
        rows = _rows(x)
        total = self.tokens + rows.shape[0]
        self.H.mul_(self.tokens / total)
        self.H.addmm_(rows.T, rows, alpha=2.0 / total)
        self.tokens = total


class InputNormStat:
    r"""Wanda's per-input-column statistic.

    ``norms[j] = mean over sequences of sum over tokens of x_j^2``; shape ``(d,)``, float32.
    The score is then ``|W_ij| * sqrt(norms[j])`` (the paper's :math:`\|X_j\|_2`, up to a
    constant factor that never changes a comparison).
    """

    def __init__(self, columns: int, device: torch.device | str = "cpu"):
        self.norms = torch.zeros(columns, dtype=torch.float32, device=device)
        self.samples = 0

    def update(self, x: torch.Tensor) -> None:
        """Fold in activations ``x`` of shape ``(batch, seq, d)`` (or ``(seq, d)`` for one sequence)."""
        batch = x.shape[0] if x.dim() == 3 else 1
        total = self.samples + batch
        self.norms.mul_(self.samples / total)
        self.norms.add_(_rows(x).pow(2).sum(0), alpha=1.0 / total)
        self.samples = total


#: statistic name -> its accumulator, as a :class:`~prunelib.core.methods.Method` names it
STATISTICS = {"hessian": HessianStat, "norms": InputNormStat}
