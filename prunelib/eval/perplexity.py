"""Perplexity with the GPTQ protocol (see ``shared/guide/protocols.md``).

The token stream is cut into ``numel // seqlen`` non-overlapping windows (remainder
dropped, no sliding context). Each window contributes ``seqlen`` times its mean next-token
cross-entropy over ``seqlen - 1`` targets; ``ppl = exp(sum / (windows * seqlen))``.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import PrunelibError


@torch.no_grad()
def perplexity(
    model,
    tokens: torch.Tensor,
    *,
    seqlen: int = 2048,
    max_windows: int | None = None,
    quiet: bool = False,
) -> dict:
    """Perplexity of ``model`` on ``tokens`` ``(1, n)``; only the first ``max_windows`` if given.

    Returns ``{"ppl", "windows", "available_windows", "seqlen", "eval_seconds"}``.
    """
    if seqlen < 2:
        raise PrunelibError(f"seqlen must be at least 2, got {seqlen}")
    available = tokens.numel() // seqlen
    windows = available if max_windows is None else min(available, max_windows)
    if windows < 1:
        raise PrunelibError(f"{tokens.numel()} tokens do not fill one window of {seqlen}")
    device = next(model.parameters()).device
    stream = tokens.reshape(-1)[: available * seqlen].view(available, seqlen)
    start = time.perf_counter()
    nll = 0.0
    for ids in tqdm(stream[:windows], desc="perplexity", disable=quiet, unit="window"):
        ids = ids.unsqueeze(0).to(device)
        logits = model(ids, use_cache=False).logits[0, :-1].float()
        nll += F.cross_entropy(logits, ids[0, 1:]).item() * seqlen
    return {
        "ppl": math.exp(nll / (windows * seqlen)),
        "windows": windows,
        "available_windows": available,
        "seqlen": seqlen,
        "eval_seconds": time.perf_counter() - start,
    }
