"""End-to-end 2:4 speed of a Llama-2-7B-shaped model with random weights, dense versus sparse.

The architecture is written out here (no hub download); the weights are random normal with
std 0.02. Kernel time depends on the shapes and the sparsity pattern, not on the values
(except that all-zero operands run faster, hence normal, not zeros), so a random model times
like the real one, and needs no gated checkpoint. Its text is meaningless.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ...core.masks import nm_mask
from ...errors import PrunelibError
from ...model.architecture import prunable_linears, set_weight_matrix, weight_matrix
from ...model.loading import quiet_transformers
from .generation import prompt_ids, throughput
from .semi import TWO_FOUR, convert_to_semi_structured, cuda_problem
from .timing import cuda_unusable, error_text, past

#: Llama-2-7B (LlamaConfig fields); ``layers=`` overrides ``num_hidden_layers`` to fit memory or time
LLAMA2_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
RANDOM_WEIGHTS = ("weights are random normal (std 0.02), not Llama-2-7B's: matmul time depends on shapes and the "
                  "2:4 pattern, not on values (all-zero operands would run faster, so none are used), and random "
                  "weights need no gated checkpoint download; generated text is meaningless")


def llama_config(layers: int | None = None, **overrides):
    """``LlamaConfig`` of :data:`LLAMA2_7B` with ``num_hidden_layers = layers`` and other fields overridden."""
    from transformers import LlamaConfig

    values = {**LLAMA2_7B, **overrides}
    if layers is not None:
        if not isinstance(layers, int) or layers < 1:
            raise PrunelibError(f"layers must be a positive integer, got {layers}")
        values["num_hidden_layers"] = layers
    return LlamaConfig(**values)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """Create parameters directly in ``dtype`` (a 7B model in float32 would be 27 GB first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def init_random_normal(model: nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """``W ~ N(0, std^2)`` for every linear and embedding weight, zero biases; norms stay 1."""
    device = model.get_input_embeddings().weight.device
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()


def random_llama(layers: int | None = None, *, dtype: torch.dtype = torch.float16, device: str | torch.device = "cpu",
                 seed: int = 0, std: float = 0.02, **overrides):
    """A ``LlamaForCausalLM`` of :func:`llama_config` with :func:`init_random_normal` weights, in eval mode."""
    from transformers import LlamaForCausalLM

    config = llama_config(layers, **overrides)
    with _default_dtype(dtype), torch.device(device), quiet_transformers():
        model = LlamaForCausalLM(config)
    init_random_normal(model, std, seed)
    return model.eval()


def mask_two_four(model: nn.Module) -> list[str]:
    """Apply the 2:4 magnitude mask ``nm_mask(|W|, 2:4)`` to every block linear; returns their names."""
    names = []
    with torch.no_grad():
        for name, module in prunable_linears(model).items():
            weight = weight_matrix(module)
            set_weight_matrix(module, weight * nm_mask(weight.abs(), TWO_FOUR))
            names.append(name)
    return names


@torch.inference_mode()
def _last_logits(model, prompt: torch.Tensor) -> torch.Tensor:
    return model(input_ids=prompt.to(model.get_input_embeddings().weight.device), use_cache=False).logits[:, -1].float()


def _agreement(dense: list, sparse: list) -> dict:
    """Share of equal greedy tokens, and the first position where the two runs differ (None if never)."""
    pairs = [(d, s) for row_d, row_s in zip(dense, sparse) for d, s in zip(row_d, row_s)]
    first = next((i for i, (d, s) in enumerate(zip(dense[0], sparse[0])) if d != s), None)
    return {"token_agreement": sum(d == s for d, s in pairs) / len(pairs), "first_divergence": first}


def end_to_end(layers: int | None = None, *, prompts: Iterable[int] = (512, 2048), new_tokens: int = 128,
               repeats: int = 3, backends: Iterable[str] = ("cusparselt",), device: str = "cuda", seed: int = 0,
               deadline: float | None = None, progress: Callable[[str], None] | None = None, **overrides) -> dict:
    """:func:`measure_end_to_end` of the random float16 Llama (:func:`random_llama`, CUDA only).

    With random weights the logits are nearly flat, so greedy paths may part on rounding
    differences; ``token_agreement`` is reported, not judged. ``overrides`` change
    :data:`LLAMA2_7B` fields (a smaller model for a smaller GPU).
    """
    problem = cuda_problem(device)
    if problem:
        raise PrunelibError(problem)
    say = progress or (lambda message: None)
    start = time.perf_counter()
    model = random_llama(layers, dtype=torch.float16, device=device, seed=seed, **overrides)
    built = time.perf_counter() - start
    say(f"built random Llama ({model.config.num_hidden_layers} layers) in {built:.0f} s")
    record = measure_end_to_end(model, model.config.vocab_size, prompts=prompts, new_tokens=new_tokens,
                                repeats=repeats, backends=backends, seed=seed, deadline=deadline, progress=progress)
    return {"architecture": {name: getattr(model.config, name) for name in LLAMA2_7B}, "weights": RANDOM_WEIGHTS,
            **record, "build_seconds": built, "seconds": time.perf_counter() - start}


def measure_end_to_end(model, tokenizer_or_vocab, *, prompts: Iterable[int] = (512,), new_tokens: int = 64,
                       repeats: int = 3, backends: Iterable[str] = ("cusparselt",), seed: int = 0,
                       deadline: float | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Prefill and decode tokens/s (:func:`~prunelib.eval.speed.generation.throughput`, batch 1,
    greedy, KV cache) of ``model`` with every block linear 2:4-masked (:func:`mask_two_four`, in
    place), dense, then converted to each of ``backends``.

    All runs use the 2:4-masked weights, so dense and sparse compute the same function; the
    dense weights are put back after each backend. Correctness: last-position logits of a fixed
    128-token prompt, sparse versus dense, and the share of equal greedy tokens. With no
    ``backends`` only the dense runs happen, on any device (the dry run of ``prunelib gpu-check``);
    converting needs CUDA (sm80+).
    """
    say = progress or (lambda message: None)
    prompts, backends = list(prompts), list(backends)
    device = model.get_input_embeddings().weight.device
    if backends and cuda_problem(device):
        raise PrunelibError(cuda_problem(device))
    start = time.perf_counter()
    masked = mask_two_four(model)
    record = {
        "dtype": str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "masked_linears": len(masked), "prompts": prompts, "new_tokens": new_tokens, "repeats": repeats,
        "batch": 1, "dense": {}, "sparse": {},
    }
    check_prompt = prompt_ids(model, tokenizer_or_vocab, 1, min(128, min(prompts)), seed + 1)
    dense_logits = _last_logits(model, check_prompt)

    def measure(entry: dict, label: str) -> None:
        for tokens in prompts:
            if past(deadline):
                entry[str(tokens)] = {"error": "skipped: time budget spent"}
                continue
            entry[str(tokens)] = throughput(model, tokenizer_or_vocab, tokens, new_tokens, repeats, seed=seed,
                                            return_tokens=True)
            found = entry[str(tokens)]
            say(f"{label} prompt {tokens}: prefill {found['prefill_tokens_per_s']:,.0f} tok/s, "
                f"decode {found['decode_tokens_per_s']:,.1f} tok/s")

    measure(record["dense"], "dense")
    linears = prunable_linears(model)
    for backend in backends:
        entry = record["sparse"][backend] = {}
        if past(deadline):
            entry["error"] = "skipped: time budget spent"
            continue
        originals = {name: module.weight for name, module in linears.items()}
        try:
            converted = convert_to_semi_structured(model, backend, strict=True)
            entry["converted_linears"] = len(converted)
            sparse_logits = _last_logits(model, check_prompt)
            difference = (sparse_logits - dense_logits).abs().max().item()
            entry["logits"] = {"max_abs_diff": difference,
                               "max_rel_diff": difference / dense_logits.abs().max().item()}
            measure(entry, backend)
            for tokens in prompts:
                dense_run, sparse_run = record["dense"][str(tokens)], entry[str(tokens)]
                if "tokens" in dense_run and "tokens" in sparse_run:
                    sparse_run.update(_agreement(dense_run["tokens"], sparse_run["tokens"]))
                    for rate in ("prefill_tokens_per_s", "decode_tokens_per_s"):
                        sparse_run[rate.replace("tokens_per_s", "speedup")] = sparse_run[rate] / dense_run[rate]
        except Exception as error:  # noqa: BLE001 - a backend failing must not lose the others
            entry["error"] = error_text(error)
            say(f"{backend}: {entry['error']}")
        finally:
            with torch.no_grad():
                for name, module in linears.items():
                    module.weight = originals[name]
            torch.cuda.empty_cache()
        broken = cuda_unusable(device)
        if broken:
            record["error"] = f"CUDA context unusable after {backend}: {broken}"
            break
    for entry in [record["dense"], *record["sparse"].values()]:
        for run in entry.values():
            if isinstance(run, dict):
                run.pop("tokens", None)
    record["seconds"] = time.perf_counter() - start
    return record
