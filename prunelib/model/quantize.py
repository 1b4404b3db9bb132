"""Quantize every prunable linear of a model in place, keeping its pruned zeros.

``rtn`` needs no data. ``gptq`` walks the blocks in order like :func:`prunelib.model.prune.prune_model`:
each block's Hessians come from the outputs of the blocks before it, already quantized, so
later blocks compensate what earlier ones lost. In both, a weight that is exactly zero (pruned)
is fixed at zero: :func:`prunelib.core.quantize.rtn` maps it to code 0, :func:`prunelib.core.gptq`
takes the zeros as its mask.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..core.gptq import gptq
from ..core.methods import METHODS
from ..core.quantize import Quantized, QuantSpec, rtn
from ..core.stats import HessianStat
from ..errors import PrunelibError
from .architecture import block_linears, decoder_blocks, set_weight_matrix, weight_matrix
from .walk import InputStatistics, sequential


@dataclass(frozen=True)
class QuantMethod:
    """How weights get their integer codes."""

    name: str
    description: str
    uses_calibration: bool
    #: done by the pruning method in its own pass (it needs ``Method.joint_quantization``)
    joint: bool = False


QUANT_METHODS: dict[str, QuantMethod] = {
    "rtn": QuantMethod("rtn", "round to nearest", False),
    "gptq": QuantMethod("gptq", "GPTQ after pruning, the mask fixed", True),
    "joint": QuantMethod("joint", "the pruning method quantizes in the same pass (SparseGPT's joint mode)", True,
                         joint=True),
}


def check_quant_method(name: str, pruning: str | None = None) -> QuantMethod:
    """The quantization method ``name``; a joint one needs a ``pruning`` method that can quantize."""
    if name not in QUANT_METHODS:
        raise PrunelibError(f"unknown quant_method '{name}'; use {', '.join(QUANT_METHODS)}")
    method = QUANT_METHODS[name]
    if method.joint:
        able = [m.name for m in METHODS.values() if m.joint_quantization]
        if pruning not in able:
            raise PrunelibError(f"quant_method '{name}' is {' or '.join(able)}'s joint mode; "
                                f"use method={' or '.join(repr(a) for a in able)}")
    return method


def quantize_linear(module: nn.Module, spec: QuantSpec, method: str = "rtn", hessian: torch.Tensor | None = None,
                    *, name: str = "layer", **options) -> Quantized:
    """Quantize one linear in place (its exact zeros stay zero); returns codes and scales."""
    weight = weight_matrix(module).detach()
    if method == "rtn":
        result = rtn(weight, spec)
    else:
        result = gptq(weight, hessian, spec, mask=weight != 0, name=name, **options)
    set_weight_matrix(module, result.weight)
    return result


@torch.no_grad()
def quantize_model(
    model: nn.Module,
    calibration: torch.Tensor | None = None,
    *,
    spec: QuantSpec | str,
    method: str = "rtn",
    batch_size: int = 1,
    device: torch.device | str | None = None,
    quiet: bool = False,
    **options,
) -> tuple[dict, dict[str, Quantized]]:
    """Quantize every linear inside the decoder blocks of ``model`` in place.

    ``method`` is ``"rtn"`` (no data) or ``"gptq"`` (needs ``calibration``, an ``(nsamples,
    seqlen)`` LongTensor; ``options`` go to :func:`prunelib.core.gptq`: ``act_order``,
    ``blocksize``, ``percdamp``). Returns ``(report, quantized)``: the report
    ``{"quantize_seconds", "spec", "method", "zeros_kept", "unrouted"}`` (MoE experts that no calibration
    token reached; GPTQ has no Hessian for them, so they are rounded to nearest) and ``{"<block>.<linear>": Quantized}``
    with every linear's int8 codes and scales, which :mod:`prunelib.storage.compact` stores.
    """
    spec = QuantSpec.parse(spec)
    if method not in QUANT_METHODS or QUANT_METHODS[method].joint:
        separate = [name for name, m in QUANT_METHODS.items() if not m.joint]
        raise PrunelibError(f"unknown quantization method '{method}'; use one of {', '.join(separate)}")
    for index, block in enumerate(decoder_blocks(model)):
        for name, module in block_linears(block).items():
            spec.groups(weight_matrix(module).shape[1])  # refuse a bad group size before any change
    quantized: dict[str, Quantized] = {}
    zeros_before = zeros_after_at_zero = 0
    start = time.perf_counter()

    unrouted: list[str] = []

    def quantize_block(index, block, stats=None):
        nonlocal zeros_before, zeros_after_at_zero
        for name, module in block_linears(block).items():
            before = weight_matrix(module) == 0
            where = f"{index}.{name}"
            if stats is not None and name not in stats:  # an expert no calibration token reached: no Hessian
                unrouted.append(where)
                quantized[where] = quantize_linear(module, spec, "rtn", name=where)
            else:
                quantized[where] = quantize_linear(module, spec, method, stats[name].H if stats else None,
                                                   name=where, **options)
            zeros_before += int(before.sum())
            zeros_after_at_zero += int((weight_matrix(module)[before] == 0).sum())

    if method == "rtn":
        for index, block in enumerate(tqdm(decoder_blocks(model), desc="rtn", disable=quiet, unit="block")):
            quantize_block(index, block)
    else:
        if calibration is None:
            raise PrunelibError("gptq needs calibration data")

        def visit(index, block, forward):
            linears = block_linears(block)
            with contextlib.ExitStack() as hooks:
                stats = hooks.enter_context(InputStatistics(linears, HessianStat, where=f"block {index}"))
                forward()
            quantize_block(index, block, stats)

        sequential(model, calibration.split(batch_size), visit, device=device, quiet=quiet, desc="gptq")

    if zeros_after_at_zero != zeros_before:  # cannot happen by construction; say so loudly if it does
        raise PrunelibError(f"quantization revived {zeros_before - zeros_after_at_zero} pruned weights")
    report = {"quantize_seconds": time.perf_counter() - start, "spec": str(spec), "method": method,
              "zeros_kept": zeros_before, "unrouted": unrouted, **({"options": options} if options else {})}
    return report, quantized
