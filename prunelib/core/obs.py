"""Optimal Brain Surgeon (Hassibi & Stork, 1993) for one weight row: the teaching version.

For the quadratic loss ``L(dw) = 1/2 dw^T H dw`` around a row ``w``, removing weight ``q``
(``dw_q = -w_q``) at least cost gives, from the Lagrangian,

    dw = -(w_q / [H^-1]_qq) H^-1 e_q,        L = w_q^2 / (2 [H^-1]_qq).

SparseGPT applies this column by column; :mod:`prunelib.core.sparsegpt` is the fast form.
"""

from __future__ import annotations

import torch


def obs_saliency(w: torch.Tensor, H_inv: torch.Tensor) -> torch.Tensor:
    """Loss increase ``w_q^2 / (2 [H^-1]_qq)`` of removing each weight of ``w`` ``(d,)``."""
    return w.pow(2) / (2 * H_inv.diagonal())


def obs_remove(w: torch.Tensor, H_inv: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove weight ``q`` of ``w`` ``(d,)`` and update the rest optimally.

    Returns the new row (``[q]`` exactly zero) and the loss ``w_q^2 / (2 [H^-1]_qq)``.
    """
    scale = w[q] / H_inv[q, q]
    new = w - scale * H_inv[:, q]
    new[q] = 0.0
    return new, w[q] * scale / 2


def obs_eliminate(H_inv: torch.Tensor, q: int) -> torch.Tensor:
    """Inverse Hessian of the remaining weights after ``q`` is fixed (Gaussian elimination step).

    ``H_inv - H_inv[:, q] H_inv[q, :] / H_inv[q, q]``; row and column ``q`` become zero.
    """
    return H_inv - torch.outer(H_inv[:, q], H_inv[q, :]) / H_inv[q, q]
