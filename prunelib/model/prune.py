"""Prune a whole model: the sequential walk plus a method, and a measurement of what it did."""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..core.hessian import relative_error
from ..core.masks import NM, check_nm_columns, check_sparsity
from ..core.methods import Method, get_method
from ..core.permutation import retained_score, search_permutation
from ..core.stats import STATISTICS, HessianStat
from ..errors import PrunelibError
from .architecture import (
    block_linears,
    decoder_blocks,
    mlp_layout,
    prunable_linears,
    set_weight_matrix,
    weight_matrix,
)
from .channels import permute_mlp_channels
from .walk import InputStatistics, sequential


def _per_block(sparsity: float | Sequence[float], n_blocks: int) -> list[float]:
    values = [sparsity] * n_blocks if isinstance(sparsity, (int, float)) else list(sparsity)
    if len(values) != n_blocks:
        raise PrunelibError(f"got {len(values)} per-block sparsities for a model with {n_blocks} blocks")
    return [check_sparsity(value) for value in values]


def check_options(model: nn.Module, method: str, nm: NM | None, group: str | None = None,
                  options: dict | None = None) -> Method:
    """Refuse bad input before any weight changes; returns the method's definition."""
    definition = get_method(method)
    definition.check(group, options or {})
    if nm is not None:
        for name, module in prunable_linears(model).items():
            check_nm_columns(nm, weight_matrix(module).shape[1], f"linear {name}")
    return definition


def prune_linear(module: nn.Module, method: str, stat=None, *, sparsity: float = 0.0, nm: NM | None = None,
                 group: str | None = None, name: str = "layer", quantized: dict | None = None,
                 **options) -> torch.Tensor:
    """Prune one linear in place with ``method`` (a name in :data:`prunelib.core.methods.METHODS`)
    and the input statistic that method needs (``None`` when it needs none); returns its weight
    before pruning. When the method also quantized (``quantize=`` in ``options``),
    ``quantized[name]`` receives the codes and scales."""
    weight = weight_matrix(module).detach().clone()
    result = get_method(method).prune(weight, stat, sparsity=sparsity, nm=nm, group=group, name=name, **options)
    set_weight_matrix(module, result.weight)
    if result.scales is not None and quantized is not None:
        from ..core.quantize import Quantized, expand_scales

        codes = torch.round(result.weight.float() / expand_scales(result.scales, weight.shape[1])).to(torch.int8)
        quantized[name] = Quantized(result.weight, codes, result.scales)
    return weight


@torch.no_grad()
def prune_model(
    model: nn.Module,
    calibration: torch.Tensor | None = None,
    *,
    method: str,
    sparsity: float | Sequence[float] = 0.5,
    nm: NM | str | None = None,
    group: str | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    quiet: bool = False,
    measure_error: bool = False,
    permute: bool = False,
    quantized: dict | None = None,
    **options,
) -> dict:
    """Prune every linear inside the decoder blocks of ``model`` in place.

    ``calibration`` is an ``(nsamples, seqlen)`` LongTensor (unused by magnitude).
    ``sparsity`` is one fraction or one per block; ``nm`` (e.g. ``"2:4"``) overrides it.
    ``group`` sets the comparison group of magnitude/Wanda (``"matrix"`` or ``"row"``);
    ``options`` go to SparseGPT (``blocksize``, ``percdamp``, and ``quantize="int4-g128"`` for its
    joint mode, whose codes and scales are then stored in the ``quantized`` dict by linear name).
    With ``measure_error`` every linear's relative reconstruction error
    ``||W X - W' X||^2 / ||W X||^2`` on its calibration inputs (those of the model pruned so
    far) is reported under ``"errors"``; this needs calibration data for every method, and
    ``prune_seconds`` then includes the extra Hessian accumulation.
    With ``permute`` (N:M only) the MLP channels of each block are first reordered by
    :func:`prunelib.core.permutation.search_permutation` on the down projection's scores, which leaves the
    model's function unchanged and lets the N:M mask keep more of the score; the fraction of
    the score kept with and without the permutation is reported under ``"retained_score"``.
    Mixture-of-experts layers: each expert is pruned with statistics from the tokens routed to it;
    one that no calibration token reaches keeps its weights (with a warning) and is listed under
    ``"unrouted"``. Routers are never pruned.
    Returns ``{"prune_seconds", "sparsity", "layers", "unrouted"[, "errors"]}`` as measured after pruning.
    """
    nm = NM.parse(nm) if nm is not None else None
    definition = check_options(model, method, nm, group, options)
    if permute and nm is None:
        raise PrunelibError("permute reorders channels for an N:M pattern; pass nm as well")
    blocks = decoder_blocks(model)
    layouts = [mlp_layout(block) for block in blocks] if permute else None  # unmappable: refused here
    retained: dict[str, dict] = {}
    unrouted: list[str] = []
    sparsities = _per_block(0.0 if nm else sparsity, len(blocks))
    start = time.perf_counter()

    errors: dict[str, float] = {}
    if definition.statistic is None and not measure_error:
        for index, block in enumerate(tqdm(blocks, desc=method, disable=quiet, unit="block")):
            if permute:
                retained[f"{index}.{layouts[index].consumer}"] = _permute_channels(block, layouts[index], definition,
                                                                                   None, nm)
            for name, module in block_linears(block).items():
                prune_linear(module, method, None, sparsity=sparsities[index], nm=nm, group=group,
                             name=f"{index}.{name}", **options)
    else:
        if calibration is None:
            raise PrunelibError(f"{method} needs calibration data" + (" to measure errors" if measure_error else ""))
        kind = definition.statistic or "hessian"

        def visit(index, block, forward):
            linears = block_linears(block)
            with contextlib.ExitStack() as hooks:
                stats = hooks.enter_context(InputStatistics(linears, STATISTICS[kind], where=f"block {index}"))
                hessians = stats
                if measure_error and kind != "hessian":
                    hessians = hooks.enter_context(InputStatistics(linears, HessianStat, where=f"block {index}"))
                forward()
            if permute:
                retained[f"{index}.{layouts[index].consumer}"] = _permute_channels(block, layouts[index], definition,
                                                                                   stats, nm)
            for name, module in linears.items():
                where = f"{index}.{name}"
                if name not in stats:  # an expert the router sent no calibration token: nothing to score it by
                    unrouted.append(where)
                    continue
                before = prune_linear(module, method, stats[name], sparsity=sparsities[index], nm=nm, group=group,
                                      name=where, quantized=quantized, **options)
                if measure_error:
                    errors[where] = relative_error(before, weight_matrix(module), hessians[name].H)

        sequential(model, calibration.split(batch_size), visit, device=device, quiet=quiet, desc=method)

    report = {"prune_seconds": time.perf_counter() - start, **measure_sparsity(model)}
    if unrouted:
        warnings.warn(f"{len(unrouted)} linears (MoE experts the router never chose) received no calibration token "
                      "and keep their weights "
                      f"(listed under 'unrouted'): {', '.join(unrouted[:4])}{' ...' if len(unrouted) > 4 else ''}",
                      RuntimeWarning, stacklevel=2)
    report["unrouted"] = unrouted
    if measure_error:
        report["errors"] = errors
    if permute:
        report["retained_score"] = retained
    return report


def _permute_channels(block, layout, method: Method, stats, nm) -> dict:
    """Reorder the block's MLP channels for ``nm`` by the method's scores of the down projection,
    permuting that projection's input statistic along with its columns.

    Returns the fraction of the total score the N:M mask retains before and after."""
    consumer_name = layout.consumer
    W = weight_matrix(block.get_submodule(consumer_name))
    stat = stats[consumer_name] if stats is not None else None
    scores = method.scores(W, stat)
    perm = search_permutation(scores, nm)
    total = scores.sum().item()
    retained = {"identity": retained_score(scores, nm).item() / total,
                "permuted": retained_score(scores[:, perm], nm).item() / total}
    permute_mlp_channels(block, perm, layout)
    if stat is not None and hasattr(stat, "norms"):
        stat.norms = stat.norms[perm]
    if stat is not None and hasattr(stat, "H"):
        stat.H = stat.H[perm][:, perm]
    return retained


def measure_sparsity(model: nn.Module) -> dict:
    """Fraction of exactly-zero weights over all prunable linears, overall and per layer."""
    layers = {}
    zeros = total = 0
    for name, module in prunable_linears(model).items():
        weight = weight_matrix(module)
        layer_zeros = int((weight == 0).sum())
        layers[name] = {"shape": list(weight.shape), "zeros": layer_zeros, "sparsity": layer_zeros / weight.numel()}
        zeros += layer_zeros
        total += weight.numel()
    return {"sparsity": zeros / total, "zeros": zeros, "parameters": total, "layers": layers}
