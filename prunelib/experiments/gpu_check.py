"""The GPU check: what the book measures on one NVIDIA GPU, in one command of under 8 minutes.

Three parts, each writing what it measured even when a later one fails:

1. ``linear``: one linear dense versus 2:4 at Llama-2-7B and Llama-2-13B shapes, prefill
   (512, 2048 tokens) and decode (1, 16) token counts, float16, cuSPARSELt and CUTLASS
   (:func:`prunelib.eval.speed.linear.linear_sweep`).
2. ``end_to_end``: both embedded models, every block linear 2:4-masked, prefill and decode
   tokens/s dense versus converted (:func:`prunelib.eval.speed.llama.measure_end_to_end`).
3. ``perplexity``: the core table (:func:`prunelib.experiments.suites.core_suite`, seed 0) of
   both embedded models under the ``cpu`` protocol, on the GPU in float32 like the CPU runs,
   through the run cache, so the records sit next to the CPU ones (``device`` is part of a run's
   key) and each GPU perplexity can be compared with its CPU twin.

A **dry run** (forced where no CUDA GPU of sm80+ is found) does every step but the kernels:
it builds each 2:4 weight and checks the pattern and each backend's shape rules, loads both
models, masks them, lists the linears each backend would convert, times the dense models on
the CPU on a short prompt, and computes the core table under the ``ci`` protocol on the CPU.
Every skipped step is named in ``skipped``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from ..eval.speed.linear import (
    DECODE_TOKENS,
    LLAMA2_7B_SHAPES,
    LLAMA2_13B_SHAPES,
    linear_sweep,
    two_four_weight,
)
from ..eval.speed.llama import measure_end_to_end
from ..eval.speed.semi import BACKENDS, cuda_problem, qualifying_linears, weight_problem
from ..eval.speed.timing import error_text, past
from ..model.loading import load_model
from .executors import run_all
from .runs import _MODELS, profile_root
from .suites import TRANSFER, core_suite

#: the models of the end-to-end and perplexity parts: the embedded default and its transfer model
MODELS = ("smollm2-135m", TRANSFER["smollm2-135m"])
LINEAR_SHAPES = tuple((model, layer, out_features, in_features)
                      for model, shapes in (("llama-2-7b", LLAMA2_7B_SHAPES), ("llama-2-13b", LLAMA2_13B_SHAPES))
                      for layer, (out_features, in_features) in shapes.items())
LINEAR_TOKENS = (512, 2048, 1, 16)
#: Gemma 3's activations overflow float16 (its reference dtype is bfloat16)
E2E_DTYPES = {"smollm2-135m": "float16", "gemma3-270m": "bfloat16"}
PLAN = {"min_run_time": 0.1, "linear_budget_s": 120, "prompt": 512, "new_tokens": 64, "repeats": 3,
        "budget_s": 450}
#: the dry run's end-to-end timing on the CPU: enough to run every line of the measurement
DRY_PLAN = {"prompt": 16, "new_tokens": 4, "repeats": 1}
NO_KERNELS = "dry run: no 2:4 kernel was run"


def linear_part(*, dry: bool, deadline: float | None, progress: Callable[[str], None]) -> list[dict]:
    """Part 1. In a dry run each shape's 2:4 weight is built (on the CPU) and checked, and every
    combination records why it was skipped, or the shape rule a backend would refuse it by."""
    if not dry:
        return linear_sweep(LINEAR_SHAPES, tokens=LINEAR_TOKENS, dtypes=("float16",), backends=BACKENDS,
                            min_run_time=PLAN["min_run_time"], deadline=deadline,
                            progress=lambda row: progress(_linear_line(row)))
    rows = []
    for model, layer, out_features, in_features in LINEAR_SHAPES:
        weight = two_four_weight(out_features, in_features, torch.float16)
        for backend in BACKENDS:
            problem = weight_problem(weight, backend)  # dtype, the backend's shape rule, the 2:4 pattern
            for tokens in LINEAR_TOKENS:
                rows.append({"model": model, "layer": layer, "out_features": out_features, "in_features": in_features,
                             "tokens": tokens, "phase": "decode" if tokens in DECODE_TOKENS else "prefill",
                             "dtype": "float16", "backend": backend, "convertible": problem is None,
                             "error": f"skipped: {problem or NO_KERNELS}"})
            progress(f"{model} {layer} {out_features}x{in_features} {backend}: {problem or 'convertible'}")
    return rows


def _linear_line(row: dict) -> str:
    what = f"{row['model']} {row['layer']} tokens={row['tokens']} {row['backend']}"
    return f"{what}: " + (row["error"] if "error" in row else f"{row['speedup']:.2f}x")


def end_to_end_part(*, dry: bool, deadline: float | None, progress: Callable[[str], None]) -> dict:
    """Part 2, per model: the record of :func:`measure_end_to_end` and which linears each backend
    converts. A dry run times the dense model on the CPU (float32, a short prompt) only."""
    plan = DRY_PLAN if dry else PLAN
    results = {}
    for name in MODELS:
        if past(deadline):
            results[name] = {"error": "skipped: time budget spent"}
            continue
        try:
            model, tokenizer = load_model(name, dtype="float32" if dry else E2E_DTYPES[name],
                                          device="cpu" if dry else "cuda", quiet=True)
            found = measure_end_to_end(model, tokenizer, prompts=(plan["prompt"],), new_tokens=plan["new_tokens"],
                                       repeats=plan["repeats"], backends=() if dry else BACKENDS,
                                       deadline=deadline, progress=lambda line, name=name: progress(f"{name}: {line}"))
            dtype = getattr(torch, E2E_DTYPES[name])
            found["convertible"] = {backend: sum(reason is None for reason in qualifying_linears(model, dtype, backend)
                                                 .values()) for backend in BACKENDS}
            results[name] = found
        except Exception as error:  # noqa: BLE001 - one model failing must not lose the other
            results[name] = {"error": error_text(error)}
            progress(f"{name}: {results[name]['error']}")
        finally:
            model = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return results


def perplexity_part(*, dry: bool, root: Path | None, deadline: float | None,
                    progress: Callable[[str], None]) -> list[dict]:
    """Part 3: the core table's runs, seed 0, on each model; ``cpu`` protocol on CUDA, or in a dry
    run the ``ci`` protocol on the CPU. Returns one row per run (name, model, ppl, seconds, file)."""
    protocol = "ci" if dry else "cpu"
    root = profile_root(protocol, root)
    rows = []
    for name in MODELS:
        if not dry:
            _float32_on_cuda(name)
        for spec in core_suite(protocol, model=name, seeds=(0,)):
            spec = spec if dry else replace(spec, device="cuda")
            row = {"model": name, "run": spec.name}
            if past(deadline):
                row["error"] = "skipped: time budget spent"
            else:
                try:
                    record = run_all([spec], root=root, quiet=True)[0]
                    row.update(ppl=record["ppl"], sparsity=record["sparsity"], seconds=record["seconds"],
                               file=spec.path(root).name)
                except Exception as error:  # noqa: BLE001 - keep the rows measured so far
                    row["error"] = error_text(error)
            progress(f"{name} {spec.name}: " + (row["error"] if "error" in row else f"ppl {row['ppl']:.2f}"))
            rows.append(row)
    return rows


def _float32_on_cuda(name: str) -> None:
    """Load ``name`` in float32 on the GPU into the runs' model holder, so part 3 computes in the
    CPU runs' dtype and the two tables can be compared number for number (``load_model`` would
    pick float16 on CUDA, in which Gemma 3's activations overflow). A :class:`Run` has no dtype
    field yet; the records name the dtype."""
    model, tokenizer = load_model(name, dtype="float32", device="cuda", quiet=True)
    _MODELS.name, _MODELS.model, _MODELS.tokenizer = (name, "cuda"), model, tokenizer
    _MODELS.dense = {key: value.detach().clone() for key, value in model.state_dict().items()}


def gpu_check(*, dry_run: bool = False, root: Path | None = None, budget_s: float | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """The three parts in order, each under what is left of ``budget_s`` (default
    ``PLAN["budget_s"]``). ``dry_run`` is forced where :func:`cuda_problem` finds no usable GPU.
    ``root`` is the results root of part 3's run cache (its ``cpu`` or, in a dry run, ``ci``
    profile folder; default :func:`~prunelib.experiments.cache.results_root`). Returns the record; ``skipped`` lists what was not measured."""
    say = progress or (lambda line: None)
    problem = cuda_problem()
    dry = dry_run or problem is not None
    start = time.monotonic()
    deadline = start + (budget_s if budget_s is not None else PLAN["budget_s"])
    record = {"dry_run": dry, "plan": {**PLAN, **(DRY_PLAN if dry else {})}, "models": list(MODELS),
              "skipped": []}
    if dry:
        record["skipped"] += [f"{NO_KERNELS}: " + (problem or "--dry-run"),
                              "linear: timings of every combination (weights built and checked only)",
                              ("end to end: conversion to 2:4 and the sparse timings (dense timed on the CPU, "
                               f"{DRY_PLAN['prompt']}-token prompt)"),
                              "perplexity: the cpu protocol on CUDA (the ci protocol ran on the CPU instead)"]
    record["part_seconds"] = {}
    parts = (("linear", "one linear, dense versus 2:4",
              lambda: linear_part(dry=dry, deadline=start + PLAN["linear_budget_s"], progress=say)),
             ("end_to_end", "end to end on the embedded models",
              lambda: end_to_end_part(dry=dry, deadline=deadline, progress=say)),
             ("perplexity", "the core perplexity table",
              lambda: perplexity_part(dry=dry, root=root, deadline=deadline, progress=say)))
    for number, (key, title, measure) in enumerate(parts, 1):
        say(f"part {number}: {title}")
        began = time.monotonic()
        record[key] = measure()
        record["part_seconds"][key] = time.monotonic() - began
    record["skipped"] += [f"{row['model']} {row['run']}: {row['error']}" for row in record["perplexity"]
                          if "error" in row]
    record["seconds"] = time.monotonic() - start
    return record
