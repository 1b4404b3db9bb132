r"""Iterative pruning: reach a sparsity in steps, with a short recovery run after each.

One-shot pruning removes everything at once; the classic alternative (gradual magnitude pruning,
Zhu & Gupta 2017) raises the sparsity step by step and lets the remaining weights adapt in between.
The schedule here is the cubic one of that paper, which prunes fast while there is much to remove
and slowly near the end:

.. math::  s_k = s \left(1 - \left(1 - k / K\right)^3\right), \qquad k = 1, \dots, K.

Each step prunes every linear to ``s_k`` (the weights pruned before are already zero, so any
score ranks them first and they stay pruned), then trains ``recover_steps`` with the masks fixed,
on its own share of the training rows, so no two steps train on the same row. When the rows number
``K x recover_steps x batch_size``, the steps together see each row once, as a one-shot run of
``K x recover_steps`` steps over the same rows does, and the two compare at equal data.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..core.masks import check_sparsity
from ..errors import PrunelibError
from .finetune import SparsityKeeper, train
from .prune import prune_model


def cubic_schedule(final: float, steps: int) -> list[float]:
    """``[s_1, ..., s_K]`` with ``s_K = final``, increasing, fastest at the start."""
    check_sparsity(final)
    if steps < 1:
        raise PrunelibError(f"steps must be positive, got {steps}")
    return [final * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)]


def iterative_prune(
    model: nn.Module,
    train_tokens: torch.Tensor,
    *,
    sparsity: float,
    steps: int = 4,
    recover_steps: int = 50,
    method: str = "magnitude",
    calibration: torch.Tensor | None = None,
    lr: float = 1e-4,
    batch_size: int = 4,
    quiet: bool = False,
) -> dict:
    """Prune ``model`` (``method`` magnitude or wanda) to ``sparsity`` in ``steps`` steps of :func:`cubic_schedule`, training
    ``recover_steps`` on ``train_tokens`` ``(n, seqlen)`` after each with the masks kept.
    Returns ``{"schedule", "losses" (one list per step), "seconds", "train_tokens"}``."""
    if method not in ("magnitude", "wanda"):  # SparseGPT's updates can revive earlier zeros before it masks
        raise PrunelibError(f"iterative pruning supports magnitude and wanda, got '{method}'")
    schedule = cubic_schedule(sparsity, steps)
    shares = train_tokens.tensor_split(steps)  # disjoint rows per step, not the same first batches K times
    if shares[-1].shape[0] < batch_size:
        raise PrunelibError(f"{train_tokens.shape[0]} training rows cannot give each of {steps} steps a batch of "
                            f"{batch_size}")
    losses, seen, start = [], 0, time.perf_counter()
    for target, share in zip(schedule, shares):
        prune_model(model, calibration, method=method, sparsity=target, quiet=True)
        keeper = SparsityKeeper(model)
        result = train(model, share, steps=recover_steps, lr=lr, batch_size=batch_size, keeper=keeper,
                       quiet=quiet)
        keeper.remove()
        losses.append(result["losses"])
        seen += result["tokens_seen"]
    return {"schedule": schedule, "losses": losses, "seconds": time.perf_counter() - start, "train_tokens": seen}
