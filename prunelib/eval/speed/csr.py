"""When does unstructured sparsity pay on a CPU? Dense matmul versus CSR sparse matmul.

A weight ``W`` ``(out_features, in_features)`` with sparsity ``s`` (exactly ``floor(in_features * s)``
zeros per row, at random places) is applied to ``x`` ``(tokens, in_features)``, ``y = x @ W.T``:

* dense: ``F.linear(x, W)`` on the zero-filled dense matrix, ``2 * tokens * out * in`` flops whatever ``s``;
* CSR: ``W`` in compressed sparse rows (values, column indices, row pointers), ``y = (W_csr @ x.T).T``,
  ``2 * tokens * nnz`` flops but irregular memory access.

The break-even sparsity is the lowest measured ``s`` at which CSR is faster.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from ...core.masks import check_sparsity, unstructured_mask
from ...errors import PrunelibError
from .timing import median_us

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
#: (out_features, in_features): the embedded model's MLP down projection and a Llama-2-7B attention matrix
CSR_SHAPES = ((576, 1536), (4096, 4096))
CSR_TOKENS = (1, 512)


def sparse_valued_weight(out_features: int, in_features: int, sparsity: float, seed: int = 0) -> torch.Tensor:
    """Random normal float32 ``(out_features, in_features)`` with ``floor(in_features * sparsity)`` zeros in
    every row, placed by :func:`prunelib.core.masks.unstructured_mask` on random scores (row groups)."""
    check_sparsity(sparsity)
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator)
    scores = torch.rand(out_features, in_features, generator=generator)
    return weight * unstructured_mask(scores, sparsity, group="row")


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """``weight.to_sparse_csr()``, without PyTorch's "CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return weight.to_sparse_csr()


def csr_linear(weight_csr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y = x @ W.T`` ``(tokens, out_features)`` with ``W`` in CSR: ``(W_csr @ x.T).T`` (a transposed view)."""
    return torch.sparse.mm(weight_csr, x.t()).t()


def csr_bytes(weight_csr: torch.Tensor) -> int:
    parts = (weight_csr.values(), weight_csr.col_indices(), weight_csr.crow_indices())
    return sum(part.numel() * part.element_size() for part in parts)


def csr_sweep(out_features: int, in_features: int, tokens: int, sparsities: Iterable[float] = SPARSITIES,
              threads: int | None = None, *, min_run_time: float = 0.2, seed: int = 0) -> list[dict]:
    """Median microseconds of the dense and the CSR product at each sparsity, float32 on CPU.

    Rows: shape, ``tokens``, ``sparsity``, ``nnz``, ``dense_us``, ``csr_us``,
    ``speedup = dense_us / csr_us`` (> 1: CSR faster), ``max_abs_diff`` between the two outputs,
    bytes of both weight forms, ``threads`` (default ``torch.get_num_threads()``).
    """
    if min(out_features, in_features, tokens) < 1:
        raise PrunelibError(f"shape {out_features}x{in_features} with {tokens} tokens: all must be positive")
    threads = threads or torch.get_num_threads()
    x = torch.randn(tokens, in_features, generator=torch.Generator().manual_seed(seed + 1))
    rows = []
    for sparsity in sparsities:
        weight = sparse_valued_weight(out_features, in_features, sparsity, seed)
        weight_csr = to_csr(weight)
        with torch.inference_mode():
            difference = (csr_linear(weight_csr, x) - F.linear(x, weight)).abs().max().item()
            dense_us = median_us("F.linear(x, w)", {"F": F, "x": x, "w": weight},
                                 min_run_time=min_run_time, threads=threads)
            csr_us = median_us("csr_linear(w, x)", {"csr_linear": csr_linear, "x": x, "w": weight_csr},
                               min_run_time=min_run_time, threads=threads)
        rows.append({
            "out_features": out_features, "in_features": in_features, "tokens": tokens, "sparsity": sparsity,
            "nnz": int(weight_csr.values().numel()), "dense_us": dense_us, "csr_us": csr_us,
            "speedup": dense_us / csr_us, "max_abs_diff": difference,
            "dense_bytes": weight.numel() * weight.element_size(), "csr_bytes": csr_bytes(weight_csr),
            "threads": threads,
        })
    return rows


def csr_break_even(rows: list[dict]) -> float | None:
    """Lowest sparsity at which CSR was faster than dense in ``rows`` of one shape and token count,
    or None if it never was."""
    configs = {(row["out_features"], row["in_features"], row["tokens"]) for row in rows}
    if len(configs) > 1:
        raise PrunelibError(f"csr_break_even needs rows of one shape and token count, got {sorted(configs)}")
    faster = [row["sparsity"] for row in rows if row["csr_us"] < row["dense_us"]]
    return min(faster) if faster else None


def group_rows(rows: list[dict]) -> dict[tuple[int, int, int], list[dict]]:
    """Rows by ``(out_features, in_features, tokens)``, each sorted by sparsity."""
    groups: dict[tuple[int, int, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["out_features"], row["in_features"], row["tokens"]), []).append(row)
    return {key: sorted(group, key=lambda row: row["sparsity"]) for key, group in groups.items()}


def plot_csr_sweep(rows: list[dict], ax=None):
    """Dense time over CSR time against sparsity, one line per shape and token count (log scale);
    above the dashed line at 1, CSR is faster. Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for (out_features, in_features, tokens), group in group_rows(rows).items():
        ax.plot([row["sparsity"] for row in group], [row["speedup"] for row in group], marker="o",
                label=f"{out_features}x{in_features}, {tokens} token{'s' if tokens != 1 else ''}")
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("sparsity (fraction of zero weights)")
    ax.set_ylabel("dense time / CSR time")
    ax.legend()
    return ax
