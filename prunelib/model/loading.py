"""Load causal LMs: the embedded GGUF models, local directories, ``.gguf`` files or hub ids.

What pruning needs to know about a loaded model (its blocks, prunable weights, MLP and attention
layout) is discovered in :mod:`prunelib.model.architecture`.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..errors import PrunelibError
from .embedded import DEFAULT_MODEL, EMBEDDED


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """``"auto"`` means float32 on CPU and float16 on an accelerator."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float32 if torch.device(device).type == "cpu" else torch.float16
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise PrunelibError(f"unknown dtype '{dtype}'; use auto, float32, float16 or bfloat16")
    return value


def model_source(name: str) -> tuple[str, str | None]:
    """Map a model name to ``(from_pretrained argument, gguf_file or None)``.

    ``name`` is a short name from :data:`EMBEDDED`, a path to a ``.gguf`` file, a local
    directory saved with ``save_pretrained``, or a Hugging Face hub id.
    """
    if name in EMBEDDED:
        path = EMBEDDED[name].locate()
        return str(path.parent), path.name
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PrunelibError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    if name.startswith((".", "/", "~")) and not path.is_dir():
        raise PrunelibError(f"model directory not found: {path}")
    return name, None


def _gguf_options(gguf_file: str) -> dict:
    """Ask transformers for a plain dense model from a GGUF file.

    Recent transformers can keep GGUF blocks (when the ``kernels`` package is installed),
    which replaces ``nn.Linear`` and cannot be saved; pruning needs ordinary dense weights.
    Older releases always dequantize and have no ``dequantize`` option.
    """
    options = {"gguf_file": gguf_file}
    try:
        from transformers import GgufConfig

        options["quantization_config"] = GgufConfig(gguf_file=gguf_file, dequantize=True)
    except (ImportError, TypeError):
        pass
    return options


@contextlib.contextmanager
def quiet_transformers(enabled: bool = True):
    """Silence transformers' logging and progress bars inside the block (when ``enabled``)."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _quiet_loading(enabled: bool):
    """:func:`quiet_transformers`, plus the GGUF reader's plain tqdm bar, which transformers'
    logging switches do not reach: its module-level ``tqdm`` is swapped for a disabled one."""
    if not enabled:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        with quiet_transformers():
            yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original


def load_model(name: str = DEFAULT_MODEL, *, dtype: str | torch.dtype = "auto", device: str = "cpu", quiet: bool = False):
    """Load ``(model, tokenizer)`` in eval mode on ``device``.

    GGUF checkpoints (the embedded default) are dequantized by transformers, which needs the
    ``gguf`` package.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, gguf_file = model_source(name)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        with _quiet_loading(quiet):
            tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, **(_gguf_options(gguf_file) if gguf_file else {})
            )
    except OSError as error:
        raise PrunelibError(
            f"cannot load model '{name}': not a local model directory, and the hub failed ({error}). "
            f"Use a short name ({', '.join(EMBEDDED)}), a directory saved with save_pretrained, or a .gguf file."
        ) from error
    model.to(device).eval()
    return model, tokenizer


