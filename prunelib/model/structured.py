"""Structured pruning of a whole model: remove MLP channels and attention heads for real.

The result is a physically smaller model whose config describes it, so ``save_pretrained``
and ``from_pretrained`` work unchanged. Every block keeps the same fraction, hence the same
widths; a per-block list of widths would need a config that transformers cannot express.

* MLP channel ``c`` of a block is row ``c`` of the up (and gate) projection and column ``c``
  of the down projection; it is scored by the down projection's column score
  (:func:`prunelib.core.structured.column_scores`, the exact output energy it carries).
* Attention head ``h`` is ``head_dim`` rows of q (and, for a whole KV group, of k and v) and
  the matching columns of o; it is scored by o's column scores summed over the head. With
  grouped-query attention, ``heads_mode="query"`` removes the same number of query heads
  from every KV group (the grouping stays valid); ``"group"`` removes whole KV groups.
* ``refit=True`` re-solves the consumer (down / o projection) by least squares on the
  calibration Hessian of its inputs (:func:`prunelib.core.structured.refit_columns`).

Blocks are visited in order over calibration data (:func:`prunelib.model.walk.sequential`), so
block ``b``'s statistics come from the already pruned blocks ``< b``.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn

from ..core.masks import check_sparsity, n_pruned
from ..core.stats import HessianStat, InputNormStat
from ..core.structured import (
    KINDS,
    column_scores,
    expand_units,
    grouped_keep_top,
    keep_top,
    refit_columns,
    structured_mask,
)
from ..errors import PrunelibError, UnsupportedModelError
from .architecture import (
    MLP_WIDTH_KEYS,
    AttentionLayout,
    Conv1D,
    MlpLayout,
    attention_layout,
    block_linears,
    decoder_blocks,
    mlp_layout,
    mlp_width_key,
    set_weight_matrix,
    weight_matrix,
)
from .prune import measure_sparsity
from .walk import InputStatistics, sequential


def slice_linear(module: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Module:
    """A new, smaller linear (``nn.Linear`` or GPT-2's ``Conv1D``) keeping the given output rows
    and input columns of ``W`` ``(out, in)``; the bias follows the rows."""
    weight = weight_matrix(module).detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    bias = module.bias.detach() if module.bias is not None else None
    if bias is not None and rows is not None:
        bias = bias[rows]
    out_features, in_features = weight.shape
    if Conv1D and isinstance(module, Conv1D):
        new = Conv1D(out_features, in_features)
    else:
        new = nn.Linear(in_features, out_features, bias=bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    set_weight_matrix(new, weight.contiguous())
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def _replace(block: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(block.get_submodule(parent_path) if parent_path else block, name, new)


def head_geometry(model: nn.Module) -> tuple[int, int, int]:
    """``(query heads, KV heads, head_dim)`` of the first block, read from its projections."""
    layout = attention_layout(decoder_blocks(model)[0], model.config)
    return layout.heads, layout.kv_heads, layout.head_dim


def check_head_pruning(model: nn.Module) -> AttentionLayout:
    """The attention layout, if removing heads keeps the model expressible by its own config:
    separate q/k/v projections, a config with a ``head_dim`` field (so the narrower q/k/v do not
    change the head size on reload), and no norm across all heads (OLMo-2 normalizes the whole q
    vector; removing a head would change what the others are divided by)."""
    block = decoder_blocks(model)[0]
    layout = attention_layout(block, model.config)
    family = model.config.model_type
    if "head_dim" not in model.config.to_dict():
        raise UnsupportedModelError(
            f"head pruning needs a config with a head_dim field, which '{family}' lacks: its head size "
            "is hidden_size / heads, so a model with fewer heads could not be reloaded"
        )
    attention = block.get_submodule(layout.module)
    q_rows = weight_matrix(block.get_submodule(layout.query)).shape[0]
    for name, module in attention.named_modules():
        weight = getattr(module, "weight", None)
        if not block_linears(module) and isinstance(weight, torch.Tensor) and weight.dim() == 1 and weight.numel() == q_rows \
                and q_rows != layout.head_dim:
            raise UnsupportedModelError(
                f"'{family}' normalizes the queries across all heads ({layout.module}.{name}); removing a head "
                "would change the others, so head pruning is refused"
            )
    return layout


def _prune_mlp(block, layout: MlpLayout, stats, hessians, ratio, refit) -> int:
    consumer = block.get_submodule(layout.consumer)
    W = weight_matrix(consumer)
    width = W.shape[1]
    keep = keep_top(column_scores(W, stats[layout.consumer].norms), ratio)
    new_consumer = slice_linear(consumer, cols=keep)
    if refit:
        set_weight_matrix(new_consumer, refit_columns(W, hessians[layout.consumer].H, keep))
    _replace(block, layout.consumer, new_consumer)
    for path in layout.producers:
        _replace(block, path, slice_linear(block.get_submodule(path), rows=layout.rows(path, keep, width)))
    return keep.numel()


def _prune_heads(block, layout: AttentionLayout, stats, hessians, ratio, mode, refit) -> tuple[int, int]:
    heads, kv, head_dim = layout.heads, layout.kv_heads, layout.head_dim
    attn = block.get_submodule(layout.module)
    local = lambda path: path[len(layout.module) + 1:] if layout.module else path  # noqa: E731
    output = block.get_submodule(layout.output)
    W_o = weight_matrix(output)
    per_head = column_scores(W_o, stats[layout.output].norms).view(heads, head_dim).sum(1)
    group = heads // kv
    if mode == "query":
        kept_heads = grouped_keep_top(per_head, kv, ratio)
        kept_kv = torch.arange(kv)
    elif mode == "group":
        kept_kv = keep_top(per_head.view(kv, group).sum(1), ratio)
        kept_heads = expand_units(kept_kv, group)
    else:
        raise PrunelibError(f"unknown heads_mode '{mode}'; use 'query' or 'group'")
    q_rows, kv_rows = expand_units(kept_heads, head_dim), expand_units(kept_kv, head_dim)
    new_o = slice_linear(output, cols=q_rows)
    if refit:
        set_weight_matrix(new_o, refit_columns(W_o, hessians[layout.output].H, q_rows))
    setattr(attn, local(layout.output), new_o)
    setattr(attn, local(layout.query), slice_linear(block.get_submodule(layout.query), rows=q_rows))
    setattr(attn, local(layout.key), slice_linear(block.get_submodule(layout.key), rows=kv_rows))
    setattr(attn, local(layout.value), slice_linear(block.get_submodule(layout.value), rows=kv_rows))
    # attention modules that keep their head counts as attributes read them in forward
    for attribute, value in (("num_key_value_groups", kept_heads.numel() // kept_kv.numel()),
                             ("num_heads", kept_heads.numel()), ("num_key_value_heads", kept_kv.numel())):
        if isinstance(getattr(attn, attribute, None), int):
            setattr(attn, attribute, value)
    return kept_heads.numel(), kept_kv.numel()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def prune_structured(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    mlp: float = 0.0,
    heads: float = 0.0,
    heads_mode: str = "query",
    refit: bool = False,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    quiet: bool = False,
) -> dict:
    """Remove the fraction ``mlp`` of MLP channels and ``heads`` of attention heads in every block.

    ``calibration`` is an ``(nsamples, seqlen)`` LongTensor. ``heads`` counts query heads in
    mode ``"query"`` (per KV group) and KV groups in mode ``"group"``. The model is changed
    in place and its config updated; returns ``{"prune_seconds", "parameters_before",
    "parameters_after", "intermediate_size", "num_attention_heads", "num_key_value_heads"}``.
    """
    mlp, heads = check_sparsity(mlp), check_sparsity(heads)
    blocks = decoder_blocks(model)
    layouts = [mlp_layout(block) for block in blocks] if mlp else None  # unmappable: refused before any change
    width_key = mlp_width_key(model.config, weight_matrix(blocks[0].get_submodule(layouts[0].consumer)).shape[1]) if mlp else None
    attention = check_head_pruning(model) if heads else None
    if attention:
        unit = {"query": attention.heads // attention.kv_heads, "group": attention.kv_heads}.get(heads_mode)
        if unit is None:
            raise PrunelibError(f"unknown heads_mode '{heads_mode}'; use 'query' or 'group'")
        if n_pruned(unit, heads) == 0:
            what = "query heads per KV group" if heads_mode == "query" else "KV groups"
            raise PrunelibError(f"heads={heads} removes none of the {unit} {what}; raise it or change heads_mode")
    if calibration is None:
        raise PrunelibError("structured pruning needs calibration data for its scores")
    before = count_parameters(model)
    start = time.perf_counter()
    widths: dict[str, int] = {}

    def visit(index, block, forward):
        targets = {}
        if mlp:
            targets[layouts[index].consumer] = block.get_submodule(layouts[index].consumer)
        if heads:
            targets[attention.output] = block.get_submodule(attention.output)
        with contextlib.ExitStack() as hooks:
            stats = hooks.enter_context(InputStatistics(targets, InputNormStat, where=f"block {index}"))
            hessians = hooks.enter_context(InputStatistics(targets, HessianStat, where=f"block {index}")) if refit else None
            forward()
        if mlp:
            widths["mlp"] = _prune_mlp(block, layouts[index], stats, hessians, mlp, refit)
        if heads:
            widths["heads"], widths["kv"] = _prune_heads(block, attention, stats, hessians, heads, heads_mode, refit)

    sequential(model, calibration.split(batch_size), visit, device=device, quiet=quiet, desc="structured")
    _update_config(model, width_key, widths, attention)
    width_key = width_key or next((k for k in MLP_WIDTH_KEYS if hasattr(model.config, k)), "intermediate_size")
    return {
        "prune_seconds": time.perf_counter() - start,
        "parameters_before": before,
        "parameters_after": count_parameters(model),
        **{key: getattr(model.config, key, None) for key in (width_key, "num_attention_heads", "num_key_value_heads")},
    }


def _update_config(model, width_key, widths, attention) -> None:
    config = model.config
    if "mlp" in widths:
        setattr(config, width_key, widths["mlp"])
    if "heads" in widths:
        config.head_dim = attention.head_dim  # no longer hidden_size / heads
        config.num_attention_heads = widths["heads"]
        config.num_key_value_heads = widths["kv"]


@torch.no_grad()
def prune_structured_masks(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    kind: str,
    sparsity: float,
    block: int = 64,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    quiet: bool = False,
) -> dict:
    """Zero the lowest-scoring rows, columns or ``block x block`` tiles of every block linear, in place.

    The shapes stay, so this isolates what each structure costs in quality, for comparison with
    unstructured masks at the same sparsity (the speed side needs the physical removal above,
    or block-sparse kernels).
    """
    if kind not in KINDS:
        raise PrunelibError(f"unknown structure '{kind}'; use one of {KINDS}")
    check_sparsity(sparsity)
    start = time.perf_counter()

    def visit(index, block_module, forward):
        linears = block_linears(block_module)
        with InputStatistics(linears, InputNormStat, where=f"block {index}") as stats:
            forward()
        for name, module in linears.items():
            W = weight_matrix(module)
            keep = structured_mask(W, stats[name].norms, sparsity, kind, block)
            set_weight_matrix(module, W.masked_fill(~keep, 0))

    sequential(model, calibration.split(batch_size), visit, device=device, quiet=quiet, desc=f"{kind}s")
    return {"prune_seconds": time.perf_counter() - start, **measure_sparsity(model)}


def per_block_widths(model: nn.Module) -> list[dict]:
    """Actual widths of every block (MLP channels, query rows, KV rows), read from the weights."""
    widths = []
    for block in decoder_blocks(model):
        entry = {"mlp": weight_matrix(block.get_submodule(mlp_layout(block).consumer)).shape[1]}
        try:
            attention = attention_layout(block, model.config)
        except UnsupportedModelError:
            attention = None
        if attention is not None:
            entry["q_rows"] = weight_matrix(block.get_submodule(attention.query)).shape[0]
            entry["kv_rows"] = weight_matrix(block.get_submodule(attention.key)).shape[0]
        widths.append(entry)
    return widths
