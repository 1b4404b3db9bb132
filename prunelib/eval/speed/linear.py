"""One linear layer, dense versus 2:4 sparse, on a CUDA GPU: time and agreement of outputs.

A layer ``(out_features, in_features)`` applied to ``tokens`` rows of activations computes
``y = x @ W.T`` with ``x`` ``(tokens, in_features)``. Prefill multiplies many rows (hundreds to
thousands of prompt tokens), decode one row per sequence, where the layer is bound by reading
``W`` from memory, not by arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from ...core.masks import nm_mask
from ...errors import PrunelibError
from ...model.loading import resolve_dtype
from .semi import BACKENDS, TWO_FOUR, backend_problem, compressed_bytes, cuda_problem, to_two_four
from .timing import cuda_unusable, error_text, median_us, past

#: Llama-2-7B block linears ``(out_features, in_features)``
LLAMA2_7B_SHAPES = {"attn q/k/v/o": (4096, 4096), "mlp gate/up": (11008, 4096), "mlp down": (4096, 11008)}
#: Llama-2-13B block linears (hidden 5120, MLP 13824)
LLAMA2_13B_SHAPES = {"attn q/k/v/o": (5120, 5120), "mlp gate/up": (13824, 5120), "mlp down": (5120, 13824)}
#: the embedded SmolLM2-135M's block linears (9 heads and 3 KV heads of 64)
SMOLLM2_SHAPES = {"attn q/o": (576, 576), "mlp gate/up": (1536, 576), "mlp down": (576, 1536), "attn k/v": (192, 576)}
SWEEP_SHAPES: tuple[tuple[str, str, int, int], ...] = tuple(
    (model, layer, out_features, in_features)
    for model, shapes in (("llama-2-7b", LLAMA2_7B_SHAPES), ("smollm2-135m", SMOLLM2_SHAPES))
    for layer, (out_features, in_features) in shapes.items()
)
PREFILL_TOKENS = (512, 2048, 8192)
DECODE_TOKENS = (1, 16, 128)
SWEEP_DTYPES = ("float16", "bfloat16")


def two_four_weight(out_features: int, in_features: int, dtype: torch.dtype = torch.float16,
                    device: str | torch.device = "cpu", seed: int = 0) -> torch.Tensor:
    """Random normal ``(out_features, in_features)`` with the 2:4 magnitude mask ``nm_mask(|W|, 2:4)``.

    Normal, not zeros or ones: GPUs run all-zero operands measurably faster (less switching,
    less power, higher clocks), which would flatter either side.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator, device=device)
    return (weight * nm_mask(weight.abs(), TWO_FOUR)).to(dtype)


def output_difference(dense: torch.Tensor, sparse: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    """How far ``sparse`` is from ``dense`` (same shape): ``max |s - d|`` and that over ``max |d|``.

    With a float32 ``reference``, also each one's normwise error ``max |y - ref| / max |ref|``.
    """
    dense, sparse = dense.float(), sparse.float()
    scale = dense.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    difference = (sparse - dense).abs().max()
    found = {"max_abs_diff": difference.item(), "max_rel_diff": (difference / scale).item()}
    if reference is not None:
        reference = reference.float()
        ref_scale = reference.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
        found["dense_rel_error"] = ((dense - reference).abs().max() / ref_scale).item()
        found["sparse_rel_error"] = ((sparse - reference).abs().max() / ref_scale).item()
    return found


def tolerance(dtype: torch.dtype) -> float:
    """Normwise tolerance for two float16/bfloat16 matmuls that differ only in summation order:
    8 units of roundoff (``8 * eps``: 7.8e-3 for float16, 6.3e-2 for bfloat16)."""
    return 8 * torch.finfo(dtype).eps


def linear_benchmark(out_features: int, in_features: int, tokens: int, dtype: str | torch.dtype = "float16",
                     backend: str = "cusparselt", device: str | torch.device = "cuda", *,
                     min_run_time: float = 0.2, seed: int = 0) -> dict:
    """Median time of ``F.linear(x, W)`` with dense ``W`` versus its 2:4 compressed form (CUDA only).

    ``W`` is :func:`two_four_weight`, ``x`` random normal ``(tokens, in_features)``. Returns
    microseconds ``dense_us``, ``sparse_us``, ``speedup = dense_us / sparse_us``, the weight bytes
    of both forms, and :func:`output_difference` of the outputs, with ``agrees`` when the relative
    difference is within :func:`tolerance`.
    """
    dtype = resolve_dtype(dtype, device)
    problem = cuda_problem(device) or backend_problem(backend)
    if problem:
        raise PrunelibError(problem)
    if min(out_features, in_features, tokens) < 1:
        raise PrunelibError(f"shape {out_features}x{in_features} with {tokens} tokens: all must be positive")
    weight = two_four_weight(out_features, in_features, dtype, device, seed)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    x = torch.randn(tokens, in_features, generator=generator, device=device).to(dtype)
    sparse_weight = to_two_four(weight, backend)
    with torch.inference_mode():
        dense_out = F.linear(x, weight)
        sparse_out = F.linear(x, sparse_weight)
        reference = F.linear(x.float(), weight.float())
        difference = output_difference(dense_out, sparse_out, reference)
        dense_us = median_us("F.linear(x, w)", {"F": F, "x": x, "w": weight}, min_run_time=min_run_time)
        sparse_us = median_us("F.linear(x, w)", {"F": F, "x": x, "w": sparse_weight}, min_run_time=min_run_time)
    return {
        "out_features": out_features, "in_features": in_features, "tokens": tokens,
        "dtype": str(dtype).removeprefix("torch."), "backend": backend,
        "dense_us": dense_us, "sparse_us": sparse_us, "speedup": dense_us / sparse_us,
        "dense_weight_bytes": compressed_bytes(weight), "sparse_weight_bytes": compressed_bytes(sparse_weight),
        **difference, "tolerance": tolerance(dtype), "agrees": difference["max_rel_diff"] <= tolerance(dtype),
    }


def linear_sweep(shapes: Iterable[tuple[str, str, int, int]] = SWEEP_SHAPES,
                 tokens: Iterable[int] = PREFILL_TOKENS + DECODE_TOKENS,
                 dtypes: Iterable[str] = SWEEP_DTYPES, backends: Iterable[str] = BACKENDS,
                 device: str | torch.device = "cuda", *, min_run_time: float = 0.2,
                 deadline: float | None = None, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """:func:`linear_benchmark` over every ``(model, layer, out, in)`` shape, token count, dtype and backend.

    A failing combination records ``error`` and the sweep goes on; after ``deadline``
    (``time.monotonic()`` seconds) the rest is recorded as skipped, as is everything after an
    error that leaves the CUDA context unusable. Rows carry ``phase``: decode for token counts
    in :data:`DECODE_TOKENS`, else prefill.
    """
    if cuda_problem(device):
        raise PrunelibError(cuda_problem(device))
    shapes, tokens, dtypes, backends = list(shapes), list(tokens), list(dtypes), list(backends)
    rows, broken = [], None
    for dtype in dtypes:
        for backend in backends:
            for model, layer, out_features, in_features in shapes:
                for count in tokens:
                    row = {"model": model, "layer": layer, "out_features": out_features, "in_features": in_features,
                           "tokens": count, "phase": "decode" if count in DECODE_TOKENS else "prefill",
                           "dtype": dtype, "backend": backend}
                    if broken:
                        row["error"] = f"skipped: CUDA context unusable after an earlier error ({broken})"
                    elif past(deadline):
                        row["error"] = "skipped: time budget spent"
                    else:
                        start = time.perf_counter()
                        try:
                            row.update(linear_benchmark(out_features, in_features, count, dtype, backend, device,
                                                        min_run_time=min_run_time))
                        except Exception as error:  # noqa: BLE001 - one combination must not end the sweep
                            row["error"] = error_text(error)
                            if isinstance(error, torch.cuda.OutOfMemoryError):
                                torch.cuda.empty_cache()
                            broken = cuda_unusable(device)
                        row["seconds"] = time.perf_counter() - start
                    rows.append(row)
                    if progress:
                        progress(row)
    return rows
