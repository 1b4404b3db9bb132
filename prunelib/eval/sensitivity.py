"""Layer-wise sensitivity and outlier ratios: the measurements behind non-uniform sparsity.

Sensitivity of a *unit* (one block, one linear type across all blocks, or one linear) is the
perplexity increase when only that unit is pruned and the rest of the model stays dense.
Every unit's calibration statistics come from one walk over the dense model
(:func:`collect_statistics`): for a single pruned block they are exactly the inputs it would
see, because everything before it is dense; for a linear type pruned in every block they are
an approximation (earlier blocks are pruned too), which the chapter states.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.allocate import outlier_ratio
from ..core.masks import NM
from ..core.methods import get_method
from ..core.stats import STATISTICS
from ..core.wanda import wanda_scores
from ..model.architecture import block_linears, decoder_blocks, prunable_linears, set_weight_matrix, weight_matrix
from ..model.prune import prune_linear
from ..model.walk import InputStatistics, sequential
from .perplexity import perplexity


@torch.no_grad()
def collect_statistics(
    model: nn.Module, calibration: torch.Tensor, kind: str = "norms", *, batch_size: int = 1,
    device: torch.device | str | None = None, quiet: bool = False,
) -> dict[str, object]:
    """Input statistics (``"norms"`` or ``"hessian"``) of every prunable linear of the *dense*
    model, keyed ``"<block>.<linear>"`` like :func:`prunelib.model.architecture.prunable_linears`."""
    found: dict[str, object] = {}

    def visit(index, block, forward):
        linears = block_linears(block)
        with InputStatistics(linears, STATISTICS[kind], where=f"block {index}") as stats:
            forward()
        found.update({f"{index}.{name}": stats[name] for name in linears})

    sequential(model, calibration.split(batch_size), visit, device=device, quiet=quiet, desc="statistics")
    return found


def units_by_block(model: nn.Module) -> dict[str, list[str]]:
    """``{"0": ["0.self_attn.q_proj", ...], ...}``: one unit per decoder block."""
    units: dict[str, list[str]] = {}
    for name in prunable_linears(model):
        units.setdefault(name.split(".", 1)[0], []).append(name)
    return units


def units_by_type(model: nn.Module) -> dict[str, list[str]]:
    """``{"self_attn.q_proj": ["0.self_attn.q_proj", "1.self_attn.q_proj", ...], ...}``."""
    units: dict[str, list[str]] = {}
    for name in prunable_linears(model):
        units.setdefault(name.split(".", 1)[1], []).append(name)
    return units


def units_by_linear(model: nn.Module) -> dict[str, list[str]]:
    """One unit per linear (block x type: the cells of a heat map)."""
    return {name: [name] for name in prunable_linears(model)}


@torch.no_grad()
def sensitivity(
    model: nn.Module,
    eval_tokens: torch.Tensor,
    units: dict[str, list[str]],
    statistics: dict[str, object] | None,
    *,
    method: str,
    sparsity: float = 0.5,
    nm: NM | str | None = None,
    seqlen: int = 2048,
    max_windows: int | None = 4,
    quiet: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """Perplexity with each unit alone pruned, restoring the dense weights after each.

    ``statistics`` comes from :func:`collect_statistics` with the method's kind (``None`` for
    magnitude). Returns ``{"dense": ppl, "ppl": {unit: ppl}, "increase": {unit: ppl - dense}}``.
    """
    nm = NM.parse(nm) if nm is not None else None
    linears = prunable_linears(model)
    dense = perplexity(model, eval_tokens, seqlen=seqlen, max_windows=max_windows, quiet=True)["ppl"]
    ppl: dict[str, float] = {}
    for unit, names in tqdm(units.items(), desc=f"sensitivity ({method})", unit="unit", disable=quiet):
        saved = {}
        for name in names:
            stat = statistics[name] if get_method(method).statistic is not None else None
            saved[name] = prune_linear(linears[name], method, stat, sparsity=sparsity, nm=nm, name=name)
        ppl[unit] = perplexity(model, eval_tokens, seqlen=seqlen, max_windows=max_windows, quiet=True)["ppl"]
        for name, weight in saved.items():
            set_weight_matrix(linears[name], weight)
        if progress is not None:
            progress(unit, ppl[unit])
    return {"dense": dense, "ppl": ppl, "increase": {unit: value - dense for unit, value in ppl.items()}}


def block_outlier_ratios(model: nn.Module, norms: dict[str, object], m: float = 5.0) -> list[float]:
    """OWL's outlier ratio of every block: the fraction of the Wanda scores of all its linears
    (taken together) above ``m`` times their mean. ``norms`` from :func:`collect_statistics`."""
    ratios = []
    for index, block in enumerate(decoder_blocks(model)):
        scores = [wanda_scores(weight_matrix(module), norms[f"{index}.{name}"].norms).reshape(-1)
                  for name, module in block_linears(block).items()]
        ratios.append(outlier_ratio(torch.cat(scores), m))
    return ratios


def block_parameters(model: nn.Module) -> list[int]:
    """Prunable parameters per block: the weights of the allocation rules' weighted mean."""
    return [sum(weight_matrix(module).numel() for module in block_linears(block).values())
            for block in decoder_blocks(model)]
