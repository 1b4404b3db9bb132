"""Does sparsity make inference faster? Measurements, not FLOP counts.

* :mod:`.semi`: 2:4 semi-structured sparsity with ``torch.sparse.to_sparse_semi_structured``
  (cuSPARSELt or CUTLASS): which linears qualify and the in-place conversion (CUDA, sm80+).
* :mod:`.linear`: one linear dense versus 2:4, over Llama-2-7B and SmolLM2 shapes (CUDA).
* :mod:`.llama` and :mod:`.generation`: prefill and decode tokens/s of whole models; a random
  Llama-2-7B-shaped model dense versus 2:4 (CUDA), any HF causal LM (CPU or CUDA).
* :mod:`.csr`: unstructured sparsity on CPU, dense matmul versus CSR, and the break-even sparsity.

Command line: ``prunelib speed gpu --out results/speed/gpu_24.json [--quick]`` and
``prunelib speed cpu-csr``; their tables are :mod:`prunelib.report.speed`.
"""

from __future__ import annotations

from .csr import csr_break_even, csr_linear, csr_sweep, plot_csr_sweep, sparse_valued_weight
from .generation import greedy_decode, throughput
from .linear import linear_benchmark, linear_sweep, two_four_weight
from .llama import LLAMA2_7B, end_to_end, llama_config, mask_two_four, random_llama
from .semi import (
    BACKENDS,
    NO_CUDA,
    convert_to_semi_structured,
    cuda_problem,
    is_two_four,
    qualifying_linears,
    semi_structured_backend,
)

__all__ = [
    "BACKENDS", "LLAMA2_7B", "NO_CUDA", "convert_to_semi_structured", "csr_break_even", "csr_linear", "csr_sweep",
    "cuda_problem", "end_to_end", "greedy_decode", "is_two_four", "linear_benchmark", "linear_sweep",
    "llama_config", "mask_two_four", "plot_csr_sweep", "qualifying_linears", "random_llama",
    "semi_structured_backend", "sparse_valued_weight", "throughput", "two_four_weight",
]
