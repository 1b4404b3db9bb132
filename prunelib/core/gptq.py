r"""GPTQ (Frantar et al., 2023): quantize column by column, compensating each rounding error.

The same machinery as SparseGPT. Columns are fixed left to right; fixing column ``i`` to its
quantized value ``q_i`` leaves the error ``e = (w_i - q_i) / U[i, i]``, which the OBS update
spreads over the columns not yet fixed through row ``i`` of ``U``, the upper Cholesky factor of
``H^{-1}`` (:func:`prunelib.core.hessian.inverse_cholesky_upper`):

.. math::  W_{:, j} \leftarrow W_{:, j} - e\, U_{ij} \qquad (j > i).

Updates stay inside a block of ``blocksize`` columns and reach the columns to its right in one
matrix product (lazy batch updates). With a ``mask`` (a pruned model), masked weights are
quantized to exactly zero: their error, too, is compensated, so quantization never revives a
pruned weight and the pruned model's mask is kept.

Scales: per output channel they come from the weights before any update; per group of
``group_size`` columns, from the group's current (already updated) weights when the first
column of the group is reached, as in the reference implementation. With ``act_order``
columns are processed by decreasing ``H_jj`` (the inputs with the most energy first); groups
then keep their natural column ranges and their scales are computed from the original weights
up front ("static groups"), so a group's scale does not depend on the processing order.
"""

from __future__ import annotations

import torch

from ..errors import PrunelibError
from .hessian import drop_dead_inputs, inverse_cholesky_upper
from .quantize import Quantized, QuantSpec, group_scales, quantize_codes


def gptq(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    spec: QuantSpec | str,
    *,
    mask: torch.Tensor | None = None,
    blocksize: int | None = None,
    percdamp: float = 0.01,
    act_order: bool = False,
    name: str = "weight",
) -> Quantized:
    """Quantize ``weight`` ``(out, in)`` given ``hessian`` ``(in, in)`` = ``2/n sum x x^T``.

    ``mask`` (bool ``(out, in)``, True = kept) fixes the pruned weights at zero; without it the
    weight's own zeros are *not* protected (GPTQ of a dense matrix). Returns the dequantized
    weight (``weight``'s dtype), int8 codes and float32 scales ``(out, groups)``.

    ``blocksize`` only batches the updates (any block gives the same result); with dynamic group
    scales a block must hold whole groups. The default is 128, or the smallest multiple of the
    group size that is at least 128 (192 for groups of 192).
    """
    spec = QuantSpec.parse(spec)
    rows, cols = weight.shape
    groups = spec.groups(cols)
    if blocksize is None:
        blocksize = 128 if not spec.group_size else spec.group_size * -(-128 // spec.group_size)
    if spec.group_size and not act_order and blocksize % spec.group_size:
        raise PrunelibError(f"blocksize {blocksize} must be a multiple of the group size {spec.group_size}")
    if mask is not None and mask.shape != weight.shape:
        raise PrunelibError(f"mask {tuple(mask.shape)} does not match weight {tuple(weight.shape)}")
    H, W, dead = drop_dead_inputs(hessian.float(), weight.detach().float())
    keep = (torch.ones_like(W, dtype=torch.bool) if mask is None else mask.to(W.device, torch.bool).clone())
    keep[:, dead] = False  # a dead input contributes nothing: zero it
    W *= keep

    order = torch.argsort(H.diagonal(), descending=True, stable=True) if act_order else None
    static = spec.group_size is None or act_order
    scales = group_scales(W, spec) if static else torch.zeros(rows, groups, device=W.device)
    # the group of every (processed) column, to look its scale up
    group_of = [column // (spec.group_size or cols) for column in (order.tolist() if order is not None else range(cols))]
    if order is not None:
        W, H, keep = W[:, order], H[order][:, order], keep[:, order]
    U = inverse_cholesky_upper(H, percdamp, name=name)
    codes = torch.zeros(rows, cols, dtype=torch.int8, device=W.device)

    for start in range(0, cols, blocksize):
        end = min(start + blocksize, cols)
        Wt, U1 = W[:, start:end].T.contiguous(), U[start:end, start:end]
        keep_t = keep[:, start:end].T
        errors = torch.zeros_like(Wt)
        for i in range(end - start):
            column = start + i
            if not static and column % spec.group_size == 0:
                g = slice(i, i + spec.group_size)
                scales[:, group_of[column]] = group_scales((Wt[g] * keep_t[g]).T, QuantSpec(spec.bits, None))[:, 0]
            q = quantize_codes(Wt[i], scales[:, group_of[column]], spec) * keep_t[i]
            codes[:, column] = q
            fixed = q.float() * scales[:, group_of[column]]
            torch.div(Wt[i] - fixed, U1[i, i], out=errors[i])
            Wt[i] = fixed
            Wt[i + 1 :].addr_(U1[i, i + 1 :], errors[i], alpha=-1.0)
        W[:, start:end] = Wt.T
        W[:, end:].addmm_(errors.T, U[start:end, end:], alpha=-1.0)

    if order is not None:
        inverse = torch.argsort(order)
        W, codes = W[:, inverse], codes[:, inverse]
    return Quantized(W.to(weight.dtype), codes, scales)
