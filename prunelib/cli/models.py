"""The verbs that work on one model: ``prune``, ``shrink``, ``pipeline`` and ``eval``.

    prunelib prune --model smollm2-135m --method wanda --sparsity 0.5 --json out.json
    prunelib prune --method sparsegpt --nm 2:4 --permute      # N:M with channel permutation
    prunelib shrink --mlp 0.25 --refit --save smaller-model    # remove MLP channels / heads for real
    prunelib eval --model pruned-dir --max-windows 40 --zero-shot arc_easy piqa --zero-shot-limit 200
    prunelib pipeline --method sparsegpt --nm 2:4 --quantize int4-g64 --compact out/   # end to end

Each prints one JSON line of its main numbers; ``--json`` writes the full record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .. import data
from ..core.masks import NM, check_sparsity
from ..core.methods import METHODS, get_method
from ..errors import PrunelibError
from ..eval.perplexity import perplexity
from ..eval.zero_shot import ZERO_SHOT_TASKS
from ..model.architecture import prunable_linears, weight_matrix
from ..model.loading import load_model
from ..model.provenance import (
    model_bytes,
    model_record,
    peak_memory_bytes,
    reset_peak_memory,
    resident_memory_bytes,
)
from ..model.prune import check_options, prune_model
from ..model.quantize import QUANT_METHODS
from ..model.structured import prune_structured
from .common import add_common, check_data, check_outputs, check_positive, handle, save_model, summary


def _add_calibration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nsamples", type=int, default=64, help="calibration sequences (default 64)")
    parser.add_argument("--calib-seqlen", type=int, default=1024, help="calibration sequence length (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    parser.add_argument("--batch-size", type=int, default=1, help="calibration sequences per forward pass (default 1)")


def register(commands) -> None:
    """Add ``prune``, ``shrink``, ``pipeline`` and ``eval`` to the ``prunelib`` command."""
    prune = commands.add_parser("prune", help="prune a model one-shot, evaluate WikiText-2 perplexity")
    add_common(prune)
    prune.add_argument("--method", required=True, choices=("dense", *METHODS),
                       help="; ".join(f"{name}: needs {m.statistic or 'no calibration'}" for name, m in METHODS.items()))
    prune.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights to zero, in [0, 1)")
    prune.add_argument("--nm", default=None, help="N:M pattern such as 2:4 (keep N of every M); overrides --sparsity")
    prune.add_argument("--group", default=None, choices=("matrix", "row"), help="comparison group of magnitude/wanda")
    prune.add_argument("--permute", action="store_true", help="reorder MLP channels before an N:M mask (needs --nm)")
    _add_calibration(prune)
    prune.add_argument("--save", type=Path, default=None, help="save the pruned model as a HF directory")

    shrink = commands.add_parser("shrink", help="remove MLP channels and attention heads (a smaller model), evaluate")
    add_common(shrink)
    shrink.add_argument("--mlp", type=float, default=0.0, help="fraction of MLP channels to remove in every block")
    shrink.add_argument("--heads", type=float, default=0.0, help="fraction of attention heads to remove in every block")
    shrink.add_argument("--heads-mode", default="query", choices=("query", "group"),
                        help="query: the same number of query heads per KV group; group: whole KV groups")
    shrink.add_argument("--refit", action="store_true", help="least-squares refit of the down / o projections")
    _add_calibration(shrink)
    shrink.add_argument("--save", type=Path, default=None, help="save the smaller model as a HF directory")

    pipe = commands.add_parser("pipeline", help="prune, optionally quantize, evaluate, save compact and/or HF")
    add_common(pipe)
    _add_calibration(pipe)
    pipe.add_argument("--method", default="wanda", choices=METHODS)
    pipe.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights to zero, in [0, 1)")
    pipe.add_argument("--nm", default=None, help="N:M pattern such as 2:4; overrides --sparsity")
    pipe.add_argument("--group", default=None, choices=("matrix", "row"), help="comparison group of magnitude/wanda")
    pipe.add_argument("--permute", action="store_true", help="reorder MLP channels before an N:M mask (needs --nm)")
    pipe.add_argument("--quantize", default=None, help="also quantize the weights: int8, int4 (per channel), int4-g64 (groups of 64 inputs), ...")
    pipe.add_argument("--quant-method", default="gptq", choices=tuple(QUANT_METHODS),
                      help="; ".join(f"{name}: {m.description}" for name, m in QUANT_METHODS.items()))
    pipe.add_argument("--act-order", action="store_true", help="GPTQ: process inputs by decreasing Hessian diagonal")
    pipe.add_argument("--compact", type=Path, default=None,
                      help="write config.json + model.compact.safetensors (packed, sparse) here, and check it reloads exactly")
    pipe.add_argument("--layout", default="auto", choices=("auto", "bitmask", "nm", "csr", "dense"),
                      help="sparse layout of the compact file (auto: nm for --nm, else bitmask)")
    pipe.add_argument("--save", type=Path, default=None, help="also save a standard HF directory (dense tensors)")

    evaluate = commands.add_parser("eval", help="evaluate the WikiText-2 perplexity (and zero-shot accuracy) of a model")
    add_common(evaluate)
    evaluate.add_argument("--zero-shot", nargs="+", default=(), metavar="TASK", choices=ZERO_SHOT_TASKS,
                          help=f"also zero-shot accuracy with lm-eval on these tasks ({', '.join(ZERO_SHOT_TASKS)})")
    evaluate.add_argument("--zero-shot-limit", type=int, default=None, help="first N documents per task (default all)")
    evaluate.add_argument("--zero-shot-batch-size", type=int, default=16, help="lm-eval batch size")

    for name, handler in (("prune", run_prune), ("shrink", run_shrink), ("pipeline", run_pipeline),
                          ("eval", run_eval)):
        commands.choices[name].set_defaults(handler=handle(handler))


def _check_prune_args(args) -> NM | None:
    if args.method == "dense" and (args.nm or args.group):
        raise PrunelibError("--nm and --group do not apply to --method dense")
    if args.permute and not args.nm:
        raise PrunelibError("--permute reorders channels for an N:M pattern; pass --nm as well")
    check_sparsity(args.sparsity)
    _check_calibration_args(args)
    return NM.parse(args.nm) if args.nm else None


def _check_calibration_args(args) -> None:
    check_positive(args, "nsamples", "calib_seqlen", "eval_seqlen", "batch_size")


def _needs_calibration(args) -> bool:
    quant_method = QUANT_METHODS.get(getattr(args, "quant_method", None) or "rtn")
    quantizes_with_data = getattr(args, "quantize", None) and quant_method.uses_calibration
    method = getattr(args, "method", "dense")
    return (args.command == "shrink" or (method != "dense" and get_method(method).uses_calibration)
            or bool(quantizes_with_data))


def _check_data(args) -> None:
    check_data(args, _needs_calibration(args))


def run_prune(args) -> dict:
    nm = _check_prune_args(args)
    check_outputs(args)
    _check_data(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, quiet=args.quiet)
    if args.method != "dense":
        check_options(model, args.method, nm, args.group)
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, args.split)
    record = {"command": "prune", "model": model_record(args.model, model), "method": args.method, "prune_seconds": 0.0}
    memory = {"model_bytes": model_bytes(model)}
    calibration = None
    if _needs_calibration(args):
        calibration, record["calibration"] = data.c4_calibration(tokenizer, args.nsamples, args.calib_seqlen, args.seed)
        memory["calibration_activation_bytes"] = (
            calibration.numel() * model.config.hidden_size * torch.finfo(model.dtype).bits // 8
        )
    memory["resident_before_prune_bytes"] = resident_memory_bytes()
    reset_peak_memory(args.device)
    if args.method != "dense":
        record.update(sparsity_target=nm.sparsity if nm else args.sparsity, nm=str(nm) if nm else None, group=args.group)
        report = prune_model(
            model, calibration, method=args.method, sparsity=args.sparsity, nm=nm, group=args.group,
            batch_size=args.batch_size, device=args.device, quiet=args.quiet, permute=args.permute,
        )
        record["prune_seconds"] = report["prune_seconds"]
        record["unrouted"] = report["unrouted"]  # MoE experts no calibration token reached (kept dense)
        record["permute"] = args.permute
    memory["prune_peak_bytes"] = peak_memory_bytes(args.device)
    record["memory"] = memory
    return _evaluate_and_save(model, tokenizer, eval_tokens, eval_source, args, record)


def _evaluate_and_save(model, tokenizer, eval_tokens, eval_source, args, record: dict) -> dict:
    """Perplexity and the summary into ``record``; then ``--save`` if asked."""
    ppl = perplexity(model, eval_tokens, seqlen=args.eval_seqlen, max_windows=args.max_windows, quiet=args.quiet)
    record.update(summary(model, ppl, eval_source, args))
    if args.save is not None:
        save_model(model, tokenizer, args.save, args.overwrite)
        record["saved_to"] = str(args.save)
    return record


def run_shrink(args) -> dict:
    check_sparsity(args.mlp)
    check_sparsity(args.heads)
    if not (args.mlp or args.heads):
        raise PrunelibError("nothing to remove: pass --mlp and/or --heads")
    _check_calibration_args(args)
    check_outputs(args)
    _check_data(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, quiet=args.quiet)
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, args.split)
    calibration, calibration_source = data.c4_calibration(tokenizer, args.nsamples, args.calib_seqlen, args.seed)
    report = prune_structured(model, calibration, mlp=args.mlp, heads=args.heads, heads_mode=args.heads_mode,
                              refit=args.refit, batch_size=args.batch_size, device=args.device, quiet=args.quiet)
    record = {"command": "shrink", "model": model_record(args.model, model), "calibration": calibration_source,
              "options": {k: getattr(args, k) for k in ("mlp", "heads", "heads_mode", "refit")}, **report}
    return _evaluate_and_save(model, tokenizer, eval_tokens, eval_source, args, record)


def run_pipeline(args) -> dict:
    """Load, prune, quantize (optional), round to what the compact file stores, evaluate, save."""
    from ..core.quantize import QuantSpec
    from ..model.quantize import check_quant_method, quantize_model
    from ..storage.compact import round_to_float16, save_compact

    nm = _check_prune_args(args)
    spec = QuantSpec.parse(args.quantize) if args.quantize else None
    if spec is not None:
        check_quant_method(args.quant_method, args.method)
    layout = args.layout if args.layout != "auto" else ("nm" if nm else "bitmask")
    if layout == "nm" and nm is None:
        raise PrunelibError("--layout nm needs --nm")
    check_outputs(args)
    _check_data(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, quiet=args.quiet)
    check_options(model, args.method, nm, args.group)
    if spec is not None:
        for name, module in prunable_linears(model).items():
            spec.groups(weight_matrix(module).shape[1])  # a bad group size fails before any work
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, args.split)
    record = {"command": "pipeline", "model": model_record(args.model, model), "method": args.method,
              "nm": str(nm) if nm else None, "sparsity_target": nm.sparsity if nm else args.sparsity,
              "quantize": str(spec) if spec else None, "quant_method": args.quant_method if spec else None}
    calibration = None
    if _needs_calibration(args):
        calibration, record["calibration"] = data.c4_calibration(tokenizer, args.nsamples, args.calib_seqlen, args.seed)
    quantized: dict = {}
    joint = {"quantize": str(spec), "quantized": quantized} if spec and QUANT_METHODS[args.quant_method].joint else {}
    record["prune_seconds"] = prune_model(
        model, calibration, method=args.method, sparsity=args.sparsity, nm=nm, group=args.group,
        batch_size=args.batch_size, device=args.device, quiet=args.quiet, permute=args.permute, **joint,
    )["prune_seconds"]
    if spec is not None and not joint:
        options = {"act_order": True} if args.act_order and args.quant_method == "gptq" else {}
        report, quantized = quantize_model(model, calibration, spec=spec, method=args.quant_method,
                                           batch_size=args.batch_size, device=args.device, quiet=args.quiet, **options)
        record["quantize_seconds"] = report["quantize_seconds"]
    if args.compact is not None:
        round_to_float16(model, quantized)  # evaluate exactly what the file holds
    ppl = perplexity(model, eval_tokens, seqlen=args.eval_seqlen, max_windows=args.max_windows, quiet=args.quiet)
    record.update(summary(model, ppl, eval_source, args))
    if args.compact is not None:
        saved = save_compact(model.cpu(), args.compact, quantized=quantized, layout=layout, nm=str(nm) if nm else None,
                             bits=spec.bits if spec else None, verify=True)
        tokenizer.save_pretrained(args.compact)
        record["compact"] = {**saved, "layout": layout}
    if args.save is not None:
        save_model(model, tokenizer, args.save, args.overwrite)
        record["saved_to"] = str(args.save)
    return record


def run_eval(args) -> dict:
    if args.zero_shot_limit is not None and args.zero_shot_limit < 1:
        raise PrunelibError("--zero-shot-limit must be positive")
    check_outputs(args)
    _check_data(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, quiet=args.quiet)
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, args.split)
    ppl = perplexity(model, eval_tokens, seqlen=args.eval_seqlen, max_windows=args.max_windows, quiet=args.quiet)
    record = {"command": "eval", "model": model_record(args.model, model), **summary(model, ppl, eval_source, args)}
    if args.zero_shot:
        from ..eval.zero_shot import markdown_table, zero_shot

        record["zero_shot"] = zero_shot(model, tokenizer, args.zero_shot, limit=args.zero_shot_limit,
                                        batch_size=args.zero_shot_batch_size, quiet=args.quiet)
        record["versions"]["lm_eval"] = record["zero_shot"]["lm_eval"]
        print(markdown_table(record["zero_shot"]), file=sys.stderr)
    return record


