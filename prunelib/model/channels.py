"""Apply a channel permutation to a decoder block's MLP (the search itself is pure:
:func:`prunelib.core.permutation.search_permutation`)."""

from __future__ import annotations

import torch

from .architecture import MlpLayout, mlp_layout, set_weight_matrix, weight_matrix


def permute_mlp_channels(block: torch.nn.Module, perm: torch.Tensor, layout: MlpLayout | None = None) -> None:
    """Reorder the MLP channels of ``block`` in place by ``perm``: producers' output rows (both
    halves of a fused ``[gate; up]``) and the consumer's input columns together, which leaves the
    block's function unchanged. ``layout`` defaults to :func:`prunelib.model.architecture.mlp_layout`."""
    layout = layout or mlp_layout(block)
    for path in layout.producers:
        module = block.get_submodule(path)
        rows = layout.rows(path, perm, perm.numel())
        set_weight_matrix(module, weight_matrix(module)[rows].contiguous())
        if module.bias is not None:
            module.bias.data = module.bias.data[rows].contiguous()
    consumer = block.get_submodule(layout.consumer)
    set_weight_matrix(consumer, weight_matrix(consumer)[:, perm].contiguous())
