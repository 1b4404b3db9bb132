"""A whole pruned (and quantized) model in one compact file that reloads exactly.

``save_compact(model, directory)`` writes ``config.json`` (the model's own) and
``model.compact.safetensors`` (:func:`prunelib.storage.packing.save`): every prunable linear in a sparse
layout (``bitmask``, ``nm``, ``csr`` or ``dense``), its values packed integer codes with float16
scales when the model was quantized, float16 otherwise; all other tensors (embeddings, norms,
LM head, biases) as float16. ``load_compact(directory)`` builds the model from the config and
fills it in. Nothing is approximated on the way: round the in-memory model's other weights to
float16 first (:func:`round_to_float16`, what storing them in float16 does), and the reloaded
model is bit for bit the in-memory one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.quantize import BITS, Quantized, levels
from ..errors import PrunelibError
from ..model.architecture import prunable_linear_paths, prunable_linears, set_weight_matrix, weight_matrix
from . import formats, packing

FILE = "model.compact.safetensors"


@torch.no_grad()
def round_to_float16(model: nn.Module, quantized: dict[str, Quantized] | None = None) -> nn.Module:
    """Round every parameter to the nearest float16 value, keeping its dtype (in place), except
    the weights of the linears in ``quantized``: ``codes * scales`` is stored exactly as it is
    (a float16 scale times a code is not always a float16 number)."""
    linears = prunable_linears(model)
    skip = {id(linears[name].weight) for name in (quantized or {})}
    for parameter in model.parameters():
        if id(parameter) not in skip:
            parameter.copy_(parameter.to(torch.float16).to(parameter.dtype))
    return model


def _parameter_names(model: nn.Module) -> dict[str, str]:
    """``"<block>.<linear>"`` -> the state-dict key of that linear's weight."""
    return {key: f"{path}.weight" for key, path in prunable_linear_paths(model).items()}


@torch.no_grad()
def save_compact(
    model: nn.Module,
    directory: str | Path,
    *,
    quantized: dict[str, Quantized] | None = None,
    layout: str = "bitmask",
    nm: str | None = None,
    bits: int | None = None,
    verify: bool = False,
) -> dict:
    """Write ``model`` to ``directory``; ``quantized`` (from :func:`prunelib.model.quantize.quantize_model`
    or SparseGPT's joint mode) holds the codes and scales of the quantized linears, packed in
    ``bits`` each (default: the fewest that hold each linear's codes). With ``verify`` the file is
    loaded back and every tensor compared with ``model``'s; a difference raises. Returns
    ``{"path", "file_bytes", "linear_bytes", "other_bytes", "linear_weights", "bits_per_linear_weight"}``."""
    names = _parameter_names(model)  # fused MoE experts have no module path: refused before writing
    directory = Path(directory)
    options = {"nm": str(nm)} if layout == "nm" else {}
    if layout == "nm" and nm is None:
        raise PrunelibError("layout 'nm' needs the pattern, e.g. nm='2:4'")
    directory.mkdir(parents=True, exist_ok=True)
    quantized = quantized or {}
    unknown = set(quantized) - set(names)
    if unknown:
        raise PrunelibError(f"quantized results for linears the model does not have: {sorted(unknown)[:3]}")
    matrices, linear_weights = {}, 0
    for key, module in prunable_linears(model).items():
        weight = weight_matrix(module).detach()
        linear_weights += weight.numel()
        if key in quantized:
            q = quantized[key]
            if not torch.equal(q.weight.to(weight.dtype), weight):
                raise PrunelibError(f"linear {key} no longer holds its quantized weights; quantize again before saving")
            width = bits or _spec_bits(q)
            matrices[names[key]] = packing.QuantizedMatrix.encode(q.codes, q.scales, width, layout, **options)
        else:
            matrices[names[key]] = formats.encode(weight.to(torch.float16), layout, **options)
    stored = set(matrices)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    extra = {key: tensor.to(torch.float16) if tensor.is_floating_point() else tensor
             for key, tensor in model.state_dict().items() if key not in stored and key not in tied}
    model.config.save_pretrained(directory)
    path = directory / FILE
    packing.save(path, matrices, extra)
    linear_bytes = sum(m.nbytes for m in matrices.values())
    if verify:
        reloaded = load_compact(directory, dtype=next(model.parameters()).dtype).state_dict()
        if not all(torch.equal(value, reloaded[key]) for key, value in model.state_dict().items()):
            raise PrunelibError(f"the compact file in {directory} does not reload to the model that was saved")
    return {"path": str(path), **({"round_trip_exact": True} if verify else {}), "file_bytes": path.stat().st_size, "linear_bytes": linear_bytes,
            "other_bytes": sum(t.numel() * t.element_size() for t in extra.values()),
            "linear_weights": linear_weights, "bits_per_linear_weight": 8 * linear_bytes / linear_weights}


def _spec_bits(q: Quantized) -> int:
    """The smallest width whose symmetric range holds the codes (at least 2 bits)."""
    peak = int(q.codes.abs().max()) if q.codes.numel() else 0
    return next(bits for bits in BITS if levels(bits) >= peak)


@torch.no_grad()
def load_compact(directory: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model saved by :func:`save_compact`, with every weight decoded, in ``dtype``."""
    import transformers

    directory = Path(directory)
    if not (directory / FILE).is_file():
        raise PrunelibError(f"{directory} has no {FILE}; write one with prunelib.storage.compact.save_compact")
    config = transformers.AutoConfig.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    matrices, extra, meta = packing.load(directory / FILE)
    missing, unexpected = model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v
                                                 for k, v in extra.items()}, strict=False)
    names = _parameter_names(model)
    for key, module in prunable_linears(model).items():
        name = names[key]
        if name not in matrices:
            raise PrunelibError(f"{directory / FILE} has no weights for {name}")
        stored = matrices[name]
        set_weight_matrix(module, stored.decode(dtype) if isinstance(stored, packing.QuantizedMatrix)
                          else stored.decode().to(dtype))
    left = set(missing) - set(matrices) - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    if left or unexpected:
        raise PrunelibError(f"the file does not match the config: missing {sorted(left)[:3]}, unexpected {unexpected[:3]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model
