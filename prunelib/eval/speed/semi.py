"""2:4 semi-structured sparsity with core PyTorch: which linears qualify, and the conversion.

``torch.sparse.to_sparse_semi_structured(W)`` compresses an ``(out_features, in_features)``
weight whose every group of 4 consecutive inputs in a row holds at most 2 non-zeros into the
kept values plus 2-bit position metadata, and dispatches ``F.linear(x, W)`` to the sparse
tensor cores of NVIDIA GPUs with compute capability 8.0 or more. Two backends exist:

* ``"cusparselt"``: NVIDIA's cuSPARSELt library (the default of ``to_sparse_semi_structured``);
* ``"cutlass"``: CUTLASS kernels built into PyTorch, chosen by setting the class flag
  ``SparseSemiStructuredTensor._FORCE_CUTLASS = True`` while converting (PyTorch's CUTLASS
  2:4 kernels were written for sm8x; on Hopper they may refuse to run, see pytorch issue 132928).

Each backend accepts a weight only when both of its dimensions are positive multiples of a
minimum that depends on the dtype (``_DTYPE_SHAPE_CONSTRAINTS[dtype].sparse_min_rows/cols``).
Activations need no such care: the backend pads ``x`` to a multiple of ``dense_min_rows/cols``
(8 for float16) and slices the result, so a decode step with 1 token computes 8 rows.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from ...core.masks import NM
from ...errors import PrunelibError
from ...model.architecture import Conv1D, prunable_linears

BACKENDS = ("cusparselt", "cutlass")
#: dtypes this module converts (the backends also take int8/float8/float32; prunebook does not use them)
DTYPES = (torch.float16, torch.bfloat16)
TWO_FOUR = NM(2, 4)
NO_CUDA = "no CUDA device: the 2:4 benchmark needs an NVIDIA GPU (sm80+)"


def satisfies_nm(weight: torch.Tensor, pattern: NM = TWO_FOUR) -> bool:
    """True when every group of ``m`` consecutive inputs of every row of ``weight``
    ``(rows, cols)`` holds at most ``n`` non-zeros; False when ``cols`` is not a multiple of ``m``."""
    if weight.dim() != 2:
        raise PrunelibError(f"expected a 2-D (out_features, in_features) weight, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if cols % pattern.m:
        return False
    nonzeros = (weight != 0).reshape(rows, cols // pattern.m, pattern.m).sum(dim=-1)
    return bool((nonzeros <= pattern.n).all())


def is_two_four(weight: torch.Tensor) -> bool:
    """The 2:4 pattern: ``#{j in group g : W[i, 4g + j] != 0} <= 2`` for every row ``i`` and group ``g``."""
    return satisfies_nm(weight, TWO_FOUR)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise PrunelibError(f"unknown 2:4 backend '{backend}'; use one of {', '.join(BACKENDS)}")
    return backend


def backend_class(backend: str) -> type:
    """The ``SparseSemiStructuredTensor`` subclass implementing ``backend``."""
    check_backend(backend)
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    return SparseSemiStructuredTensorCUTLASS if backend == "cutlass" else SparseSemiStructuredTensorCUSPARSELT


def shape_constraint(backend: str, dtype: torch.dtype) -> tuple[int, int]:
    """``(min_rows, min_cols)`` of a sparse weight: both dimensions must be positive multiples."""
    constraints = backend_class(backend)._DTYPE_SHAPE_CONSTRAINTS
    if dtype not in constraints:
        raise PrunelibError(f"the {backend} backend has no 2:4 kernels for {dtype}")
    config = constraints[dtype]
    return config.sparse_min_rows, config.sparse_min_cols


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def weight_problem(weight: torch.Tensor, backend: str = "cusparselt", dtype: torch.dtype | None = None) -> str | None:
    """Why ``weight`` ``(out_features, in_features)`` cannot become a 2:4 tensor of ``backend``
    when cast to ``dtype`` (default: its own dtype), or None when it can.

    Checked in order: dtype, shape constraint, 2:4 pattern. Device is not checked (CPU logic).
    """
    from torch.sparse import SparseSemiStructuredTensor

    if isinstance(weight, SparseSemiStructuredTensor):
        return "already a SparseSemiStructuredTensor"
    dtype = weight.dtype if dtype is None else dtype
    if dtype not in DTYPES:
        return f"dtype {_dtype_name(dtype)}: 2:4 conversion here needs float16 or bfloat16"
    min_rows, min_cols = shape_constraint(backend, dtype)
    rows, cols = weight.shape
    if rows < min_rows or rows % min_rows or cols < min_cols or cols % min_cols:
        return (f"shape {rows}x{cols}: the {backend} backend needs both dimensions to be positive multiples "
                f"of ({min_rows}, {min_cols}) for {_dtype_name(dtype)}")
    if not is_two_four(weight):
        return "weight is not 2:4 sparse (some group of 4 inputs has more than 2 non-zeros)"
    return None


def qualifying_linears(model: nn.Module, dtype: torch.dtype | None = None, backend: str = "cusparselt") -> dict[str, str | None]:
    """Every linear of the decoder blocks (named as in :func:`prunelib.model.architecture.prunable_linears`)
    mapped to the reason it cannot be converted to ``backend``, or None when it can.

    ``dtype`` is the dtype the weights will have when converted; None means each weight's own.
    Pure CPU logic: nothing is converted and the device does not matter.
    """
    check_backend(backend)
    reasons = {}
    for name, module in prunable_linears(model).items():
        if not isinstance(module, nn.Linear):
            kind = "Conv1D (stores W transposed)" if Conv1D and isinstance(module, Conv1D) else type(module).__name__
            reasons[name] = f"{kind} is not an nn.Linear"
        else:
            reasons[name] = weight_problem(module.weight, backend, dtype)
    return reasons


def cuda_problem(device: torch.device | str | None = None) -> str | None:
    """Why 2:4 kernels cannot run on ``device`` (default: the current CUDA device), or None."""
    if not torch.cuda.is_available():
        return NO_CUDA
    device = torch.device("cuda") if device is None else torch.device(device)
    if device.type != "cuda":
        return f"device {device} is not a CUDA device: 2:4 kernels run on NVIDIA GPUs (sm80+)"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"{torch.cuda.get_device_name(device)} is sm{major}{minor}: the 2:4 benchmark needs an NVIDIA GPU (sm80+)"
    return None


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` is unavailable in this PyTorch build, or None."""
    check_backend(backend)
    if backend == "cusparselt" and not torch.backends.cusparselt.is_available():
        return "this PyTorch build has no cuSPARSELt; use backend='cutlass'"
    return None


@contextlib.contextmanager
def semi_structured_backend(backend: str):
    """Make ``to_sparse_semi_structured`` build tensors of ``backend`` inside the block.

    The choice is the class attribute ``SparseSemiStructuredTensor._FORCE_CUTLASS``, read only
    when a tensor is created; the tensor's class then fixes its kernels, so it is restored after.
    Prototype warnings of the API are silenced here.
    """
    from torch.sparse import SparseSemiStructuredTensor

    check_backend(backend)
    previous = SparseSemiStructuredTensor._FORCE_CUTLASS
    SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*SparseSemiStructuredTensor.*prototype", category=UserWarning)
            yield
    finally:
        SparseSemiStructuredTensor._FORCE_CUTLASS = previous


def to_two_four(weight: torch.Tensor, backend: str = "cusparselt") -> torch.Tensor:
    """Compress one CUDA weight ``(out_features, in_features)`` (already 2:4) for ``backend``."""
    if weight.is_cuda:
        problem = cuda_problem(weight.device)
    else:
        problem = cuda_problem() or f"the weight is on {weight.device}; move it to CUDA"
    problem = problem or backend_problem(backend) or weight_problem(weight, backend)
    if problem:
        raise PrunelibError(f"cannot convert the weight to 2:4 ({backend}): {problem}")
    from torch.sparse import to_sparse_semi_structured

    with semi_structured_backend(backend):
        return to_sparse_semi_structured(weight.detach().contiguous())


def convert_to_semi_structured(model: nn.Module, backend: str = "cusparselt", strict: bool = False) -> list[str]:
    """Swap, in place, the weight of every qualifying block linear for its 2:4 compressed form.

    The model must be on a CUDA device of compute capability >= 8.0 in float16/bfloat16, with
    2:4 weights (e.g. :func:`prunelib.core.masks.nm_mask` applied). Linears that do not qualify stay
    dense, unless ``strict``, which refuses the whole model. Returns the converted names.
    Converted weights do not take gradients: this is for inference.
    """
    problem = cuda_problem() or backend_problem(backend)
    if problem:
        raise PrunelibError(f"cannot convert to 2:4 ({backend}): {problem}")
    linears = prunable_linears(model)
    on_cpu = [name for name, module in linears.items() if not module.weight.is_cuda]
    if on_cpu:
        raise PrunelibError(f"move the model to CUDA before converting to 2:4: {on_cpu[0]} is on {linears[on_cpu[0]].weight.device}")
    reasons = qualifying_linears(model, backend=backend)
    refused = {name: reason for name, reason in reasons.items() if reason}
    if strict and refused:
        name, reason = next(iter(refused.items()))
        raise PrunelibError(f"{len(refused)} linear(s) cannot be converted to 2:4 ({backend}); first {name}: {reason}")
    converted = []
    with torch.no_grad():
        for name, reason in reasons.items():
            if reason is None:
                module = linears[name]
                module.weight = nn.Parameter(to_two_four(module.weight, backend), requires_grad=False)
                converted.append(name)
    return converted


def compressed_bytes(tensor: torch.Tensor) -> int:
    """Bytes held by a SparseSemiStructuredTensor (kept values + metadata), or by a dense tensor."""
    parts = [getattr(tensor, slot, None) for slot in ("packed", "meta", "packed_t", "meta_t", "compressed_swizzled_bitmask")]
    parts = [part for part in parts if part is not None]
    if not parts:
        return tensor.numel() * tensor.element_size()
    return sum(part.numel() * part.element_size() for part in parts)
