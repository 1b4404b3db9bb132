"""Prefill and decode throughput of a Hugging Face causal LM (CPU or CUDA).

Generating ``n`` tokens after a prompt of ``p`` tokens takes one *prefill* forward pass over the
``p`` prompt tokens, whose last logits give the first new token, then ``n - 1`` *decode* passes of
one token each, reusing the keys and values of earlier tokens from the KV cache. Prefill is
compute bound (``p`` rows per weight read); decode is bound by reading every weight once per step.

    prefill tokens/s = batch * p / t_prefill        decode tokens/s = batch * (n - 1) / t_decode
"""

from __future__ import annotations

import inspect
import statistics
import time

import torch

from ...errors import PrunelibError
from .timing import synchronize

#: new tokens of a warm-up run: the same prompt, so the same prefill shapes, and a few decode steps
WARMUP_TOKENS = 8


def _cache_keyword(model) -> str:
    """Name of the KV cache in ``forward`` and its output: ``cache`` in recent transformers,
    ``past_key_values`` before."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _keeps_last_logits(model) -> bool:
    """``logits_to_keep=1`` makes the prefill pass compute only the last position's logits, as
    ``generate`` does, instead of a ``(p, vocab)`` LM-head product nobody reads."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def model_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


@torch.inference_mode()
def greedy_decode(model, prompt: torch.Tensor, new_tokens: int) -> tuple[torch.Tensor, float, float]:
    """Greedy generation of exactly ``new_tokens`` tokens after ``prompt`` ``(batch, p)``, no stop token.

    Returns ``(tokens (batch, new_tokens), prefill_seconds, decode_seconds)``: the prefill pass
    (use_cache=True) yields the first token, ``new_tokens - 1`` cached one-token passes the rest.
    """
    if new_tokens < 1:
        raise PrunelibError(f"new_tokens must be at least 1, got {new_tokens}")
    device = model_device(model)
    cache_name = _cache_keyword(model)
    extra = {"logits_to_keep": 1} if _keeps_last_logits(model) else {}
    prompt = prompt.to(device)
    synchronize(device)
    start = time.perf_counter()
    out = model(input_ids=prompt, use_cache=True, **extra)
    token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
    synchronize(device)
    prefilled = time.perf_counter()
    tokens = [token]
    for _ in range(new_tokens - 1):
        out = model(input_ids=token, use_cache=True, **{cache_name: out[cache_name]}, **extra)
        token = out.logits[:, -1].argmax(dim=-1, keepdim=True)
        tokens.append(token)
    synchronize(device)
    return torch.cat(tokens, dim=1), prefilled - start, time.perf_counter() - prefilled


def _max_positions(config) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def prompt_ids(model, tokenizer_or_vocab, batch: int, prompt_tokens: int, seed: int = 0) -> torch.Tensor:
    """Random prompt ``(batch, prompt_tokens)`` of token ids: ``[0, vocab)`` for an int, or a
    tokenizer's ids minus its special tokens, and below the model's ``vocab_size`` either way."""
    limit = model.config.vocab_size
    if isinstance(tokenizer_or_vocab, int):
        allowed = torch.arange(min(tokenizer_or_vocab, limit))
    else:
        special = set(getattr(tokenizer_or_vocab, "all_special_ids", ()))
        allowed = torch.tensor([i for i in range(min(len(tokenizer_or_vocab), limit)) if i not in special])
    if allowed.numel() == 0:
        raise PrunelibError("the vocabulary is empty: pass a tokenizer or a positive vocabulary size")
    generator = torch.Generator().manual_seed(seed)
    return allowed[torch.randint(allowed.numel(), (batch, prompt_tokens), generator=generator)]


def throughput(model, tokenizer_or_vocab, prompt_tokens: int = 256, new_tokens: int = 64, repeats: int = 3,
               batch: int = 1, *, warmup: int = 1, seed: int = 0, return_tokens: bool = False) -> dict:
    """Prefill and decode tokens/s of ``model`` on a random prompt, median of ``repeats`` runs after
    ``warmup`` untimed ones of at most :data:`WARMUP_TOKENS` new tokens (see the module docstring
    for the two rates).

    ``tokenizer_or_vocab``: a tokenizer or a vocabulary size (prompt ids are random, fixed by
    ``seed``; throughput does not depend on which tokens). Runs under ``torch.inference_mode``
    with the model's own device and dtype; ``threads`` is ``torch.get_num_threads()``.
    With ``return_tokens``, the greedy tokens of the last run come back as ``tokens``.
    """
    for name, value, least in (("prompt_tokens", prompt_tokens, 1), ("new_tokens", new_tokens, 2),
                               ("repeats", repeats, 1), ("batch", batch, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < least:
            raise PrunelibError(f"{name} must be an integer >= {least}, got {value}")
    positions = _max_positions(model.config)
    if positions is not None and prompt_tokens + new_tokens > positions:
        raise PrunelibError(f"prompt_tokens + new_tokens = {prompt_tokens + new_tokens} exceeds the model's "
                            f"{positions} positions")
    prompt = prompt_ids(model, tokenizer_or_vocab, batch, prompt_tokens, seed)
    for _ in range(warmup):  # handles, workspaces and allocator pools for these shapes; not timed
        greedy_decode(model, prompt, min(new_tokens, WARMUP_TOKENS))
    prefill, decode = [], []
    for _ in range(repeats):
        tokens, prefill_s, decode_s = greedy_decode(model, prompt, new_tokens)
        prefill.append(prefill_s)
        decode.append(decode_s)
    prefill_s, decode_s = statistics.median(prefill), statistics.median(decode)
    device = model_device(model)
    found = {
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "batch": batch, "repeats": repeats, "warmup": warmup,
        "device": str(device), "dtype": str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "prefill_seconds": prefill_s, "prefill_tokens_per_s": batch * prompt_tokens / prefill_s,
        "decode_steps": new_tokens - 1, "decode_seconds": decode_s,
        "decode_tokens_per_s": batch * (new_tokens - 1) / decode_s,
        "ms_per_decode_step": 1e3 * decode_s / (new_tokens - 1),
        "generated_tokens": tokens.shape[1],
        "prefill_runs": prefill, "decode_runs": decode,
    }
    if return_tokens:
        found["tokens"] = tokens.tolist()
    return found
