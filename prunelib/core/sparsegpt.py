"""SparseGPT (Frantar & Alistarh, 2023): OBS weight updates, column by column, in one pass.

Columns are processed left to right. When column ``i`` is fixed (pruned entries set to
zero), the error ``e = (w_i - q_i) / U[i, i]`` is spread over the columns to its right
through row ``i`` of ``U``, the upper Cholesky factor of ``H^-1``: exactly the OBS update
for the remaining, not yet fixed weights. Updates stay inside a block of ``blocksize``
columns and reach the columns to the right of the block in one matrix product ("lazy
batch updates"). The unstructured mask is chosen per block on the already-updated
weights (adaptive mask selection), the N:M mask per group of ``M`` columns.

Joint mode (``quantize=``): each kept weight is also rounded to the quantization grid when its
column is fixed, and the OBS update compensates the pruning and the rounding error together
(the paper's joint sparsification and quantization, GPTQ's update with a mask chosen on the
way). Group scales are taken when a group's first column is reached, from its current kept
weights; for N:M the groups of ``M`` not yet reached then still count all their weights.
"""

from __future__ import annotations

import torch

from ..errors import PrunelibError
from .hessian import drop_dead_inputs, inverse_cholesky_upper
from .masks import NM, Pruned, check_nm_columns, nm_mask, unstructured_mask
from .quantize import QuantSpec, group_scales, quantize_codes


def sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    sparsity: float = 0.0,
    nm: NM | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    quantize: QuantSpec | str | None = None,
    name: str = "weight",
) -> Pruned:
    """Prune ``weight`` ``(out, in)`` given ``hessian`` ``(in, in)`` = ``2/n sum x x^T``.

    Unstructured: each block of ``blocksize`` columns gets exactly
    ``floor(out * width * sparsity)`` zeros, selected by the OBS saliency
    ``w^2 / U[i, i]^2``. N:M: in every group of ``M`` columns each row keeps the ``N`` weights
    of highest saliency. Computation is float32; the result has ``weight``'s dtype.
    With ``quantize`` (e.g. ``"int4-g128"``) the kept weights are quantized in the same pass and
    the result carries the ``scales``.
    """
    rows, cols = weight.shape
    if nm is not None:
        check_nm_columns(nm, cols, name)
        if blocksize % nm.m:
            raise PrunelibError(f"blocksize {blocksize} must be a multiple of M={nm.m}")
    spec = QuantSpec.parse(quantize) if quantize is not None else None
    if spec is not None and spec.group_size and (blocksize % spec.group_size or cols % spec.group_size):
        raise PrunelibError(f"blocksize {blocksize} and {cols} columns must be multiples of the group size "
                            f"{spec.group_size}")
    H, W, _ = drop_dead_inputs(hessian.float(), weight.detach().float())
    U = inverse_cholesky_upper(H, percdamp, name=name)
    keep = torch.ones_like(W, dtype=torch.bool)
    scales = None
    if spec is not None:
        scales = group_scales(W, spec) if spec.group_size is None else torch.zeros(rows, spec.groups(cols), device=W.device)
        group_size = spec.group_size or cols

    for start in range(0, cols, blocksize):
        end = min(start + blocksize, cols)
        # The block is handled transposed, (width, rows), so that column i is the contiguous Wt[i].
        Wt, U1 = W[:, start:end].T.contiguous(), U[start:end, start:end]
        d = U1.diagonal()
        keep_t = torch.ones_like(Wt, dtype=torch.bool)
        if nm is None:
            keep_t[:] = unstructured_mask(Wt.pow(2) / d.pow(2).unsqueeze(1), sparsity, group="matrix")
        errors = torch.zeros_like(Wt)
        prune_over_d = (~keep_t).float() / d.unsqueeze(1)  # e_i = w_i * [i pruned] / U[i, i]
        for i in range(end - start):
            if nm is not None and i % nm.m == 0:
                group = slice(i, i + nm.m)
                keep_t[group] = nm_mask((Wt[group].pow(2) / d[group].pow(2).unsqueeze(1)).T, nm).T
                prune_over_d[group] = (~keep_t[group]).float() / d[group].unsqueeze(1)
            if spec is None:
                torch.mul(Wt[i], prune_over_d[i], out=errors[i])
            else:  # fix column i to its kept, rounded value; the error covers both
                column = start + i
                if spec.group_size and column % group_size == 0:
                    g = slice(i, i + group_size)
                    scales[:, column // group_size] = group_scales((Wt[g] * keep_t[g]).T, QuantSpec(spec.bits, None))[:, 0]
                scale = scales[:, column // group_size]
                fixed = (quantize_codes(Wt[i], scale, spec) * keep_t[i]).float() * scale
                torch.div(Wt[i] - fixed, d[i], out=errors[i])
                Wt[i] = fixed
            # OBS update of the columns to the right of i inside the block; column i itself
            # becomes w_i * keep_i, applied once for the whole block below.
            Wt[i + 1 :].addr_(U1[i, i + 1 :], errors[i], alpha=-1.0)
        W[:, start:end] = (Wt * keep_t).T
        keep[:, start:end] = keep_t.T
        W[:, end:].addmm_(errors.T, U[start:end, end:], alpha=-1.0)  # lazy update of the rest

    return Pruned(W.to(weight.dtype), keep, scales)
