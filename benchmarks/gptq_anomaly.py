"""Why does INT4 GPTQ lose to round-to-nearest on the whole embedded model? (chapter 10, issue 16)

On SmolLM2-135M, INT4-g64 GPTQ ends with a *higher* WikiText-2 perplexity than round-to-nearest
(RTN), although it lowers every layer's output error, on calibration and on held-out inputs
(``benchmarks/gptq_heldout.py``). This script quantizes the whole model under variants that each
switch one candidate cause off, and measures the model's perplexity:

- ``grid``: the embedded weights already sit on a 4-bit grid (Q4_1, groups of 32). ``noise``
  variants move them off it by Gaussian noise of ``0.1`` of their own grid step first; the
  second model (Gemma-3-270M, Q4_K_M) is a second grid.
- ``damping``: ``percdamp`` 0.1 and 1.0 instead of 0.01 (more damping = closer to RTN).
- ``act-order``: columns by decreasing ``H_jj``, static groups.
- ``group size``: 32 and 192 besides 64.
- ``accumulation``: each block's Hessians from the *dense* model's inputs instead of the
  already-quantized blocks before it; and ``mix`` variants that keep GPTQ's weights in some
  linears and RTN's in the others (which layers carry the loss).
- ``outlier tokens``: ``H`` with each token's input scaled to unit norm, or without each
  window's first token, so a few massive activations cannot dominate the fit; or with the first
  token counted once per position that attends to it (``first-weighted``): the first position is
  the attention sink, whose value every later token reads.

Every variant reports the perplexity and the geometric mean over linears of the relative output
error ``||WX - W'X||^2 / ||WX||^2`` on the calibration inputs (:func:`prunelib.core.hessian.relative_error`)
that the variant's own walk saw, also per linear type, over all tokens and on each window's first
token alone. Results are written per variant as they finish, so a stopped run
resumes; the protocol is recorded once.

    python benchmarks/gptq_anomaly.py                          # SmolLM2, every variant
    python benchmarks/gptq_anomaly.py --model gemma3-270m --variants rtn,gptq
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "diagnostics"
#: the rtn and gptq variants' weights, kept for the mix variants of a later invocation (not committed)
CACHE = Path.home() / ".cache" / "prunebook" / "gptq_anomaly"

#: name -> what differs from the baseline GPTQ (int4-g64, percdamp 0.01, sequential inputs, all tokens)
VARIANTS = {
    "rtn": {"method": "rtn"},
    "gptq": {},
    "gptq-dense-inputs": {"inputs": "dense"},
    "gptq-token-norm": {"hessian": "token-norm"},
    "gptq-after-first-token": {"hessian": "after-first"},
    "gptq-first-token-weighted": {"hessian": "first-weighted"},
    "gptq-damp-0.1": {"percdamp": 0.1},
    "gptq-damp-1": {"percdamp": 1.0},
    "gptq-act-order": {"act_order": True},
    "gptq-act-order-first-token-weighted": {"act_order": True, "hessian": "first-weighted"},
    "rtn-g32": {"method": "rtn", "quantize": "int4-g32"},
    "gptq-g32": {"quantize": "int4-g32"},
    "rtn-g192": {"method": "rtn", "quantize": "int4-g192"},
    "gptq-g192": {"quantize": "int4-g192"},
    "dense-noise": {"method": "none", "noise": 0.1},
    "rtn-noise": {"method": "rtn", "noise": 0.1},
    "gptq-noise": {"noise": 0.1},
    # GPTQ's weights (from "gptq") in the named linears, RTN's (from "rtn") everywhere else
    "mix-gptq-attention": {"method": "mix", "gptq_in": ["self_attn"]},
    "mix-gptq-mlp": {"method": "mix", "gptq_in": ["mlp"]},
    "mix-gptq-qk": {"method": "mix", "gptq_in": ["q_proj", "k_proj"]},
    "mix-gptq-v-o": {"method": "mix", "gptq_in": ["v_proj", "o_proj"]},
    "mix-gptq-v": {"method": "mix", "gptq_in": ["v_proj"]},
    "mix-gptq-o": {"method": "mix", "gptq_in": ["o_proj"]},
    "mix-gptq-gate-up": {"method": "mix", "gptq_in": ["gate_proj", "up_proj"]},
    "mix-gptq-down": {"method": "mix", "gptq_in": ["down_proj"]},
    "mix-gptq-first-half": {"method": "mix", "gptq_blocks": "first-half"},
    "mix-gptq-second-half": {"method": "mix", "gptq_blocks": "second-half"},
}
BASELINE = {"method": "gptq", "quantize": "int4-g64", "percdamp": 0.01, "act_order": False, "inputs": "quantized",
            "hessian": "all", "noise": 0.0}


class PlainAndFirst:
    """The library's ``H`` over all tokens, and ``H_first`` of each window's first position alone
    (where attention sinks sit: every later token reads that position's value)."""

    def __init__(self, columns: int, device="cpu"):
        from prunelib.core.stats import HessianStat

        self.all, self.first = HessianStat(columns, device), HessianStat(columns, device)

    def update(self, x: torch.Tensor) -> None:
        self.all.update(x)
        self.first.update(x[:, :1])  # one window (1, seqlen, d) per call

    @property
    def H(self) -> torch.Tensor:
        return self.all.H


def hessian_stat(kind: str):
    """The input statistic GPTQ fits: ``all`` tokens (the library's), ``token-norm`` (each token's
    input scaled to unit norm), ``after-first`` (each window's first position left out) or
    ``first-weighted`` (the first position counted once per position that attends to it)."""
    from prunelib.core.stats import HessianStat

    class TokenNorm(HessianStat):
        def update(self, x: torch.Tensor) -> None:
            x = x.reshape(-1, x.shape[-1]).float()
            super().update(x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    class AfterFirst(HessianStat):
        def update(self, x: torch.Tensor) -> None:
            super().update(x[:, 1:])  # one window (1, seqlen, d) per call

    class FirstWeighted(HessianStat):
        def update(self, x: torch.Tensor) -> None:
            x = x.clone()
            x[:, 0] *= math.sqrt(x.shape[1])  # weight seqlen in x x^T
            super().update(x)

    return {"all": HessianStat, "token-norm": TokenNorm, "after-first": AfterFirst,
            "first-weighted": FirstWeighted}[kind]


def off_grid(model, sigma: float, seed: int = 0) -> None:
    """Move every decoder linear's weights off their 4-bit grid: add Gaussian noise of ``sigma``
    times each group-of-32's step ``(max - min) / 15`` (the Q4_1 step of that group)."""
    from prunelib.model.architecture import block_linears, decoder_blocks, set_weight_matrix, weight_matrix

    generator = torch.Generator().manual_seed(seed)
    for block in decoder_blocks(model):
        for module in block_linears(block).values():
            W = weight_matrix(module).detach().float()
            groups = W.reshape(W.shape[0], -1, 32)
            step = (groups.amax(-1, keepdim=True) - groups.amin(-1, keepdim=True)) / 15
            noise = torch.randn(groups.shape, generator=generator) * step * sigma
            set_weight_matrix(module, (groups + noise).reshape_as(W))


@torch.no_grad()
def quantize_walk(model, calibration: torch.Tensor, config: dict,
                  quiet: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """Quantize every decoder linear of ``model`` in place, block by block, as
    :func:`prunelib.model.quantize.quantize_model` does, with ``config``'s switches; returns each
    linear's relative output error on the calibration inputs it saw, over all tokens and on each
    window's first token alone."""
    from tqdm import tqdm

    from prunelib.core.gptq import gptq
    from prunelib.core.hessian import relative_error
    from prunelib.core.quantize import rtn
    from prunelib.model.architecture import block_linears, decoder_blocks, set_weight_matrix, weight_matrix
    from prunelib.model.walk import InputStatistics, capture_block_inputs

    calls = capture_block_inputs(model, calibration.split(1), torch.device("cpu"))
    fitted = hessian_stat(config["hessian"])
    errors, first = {}, {}
    for index, block in enumerate(tqdm(decoder_blocks(model), desc=config["method"], disable=quiet, unit="block")):
        linears = block_linears(block)
        with InputStatistics(linears, PlainAndFirst, where=f"block {index}") as plain:
            for call in calls:
                call.run(block, index)
        fit = plain
        if config["hessian"] != "all":
            with InputStatistics(linears, fitted, where=f"block {index}") as fit:
                for call in calls:
                    call.run(block, index)
        dense_outputs = [call.run(block, index) for call in calls] if config["inputs"] == "dense" else None
        for name, module in linears.items():
            W = weight_matrix(module).detach().float()
            if config["method"] == "rtn":
                new = rtn(W, config["quantize"]).weight
            else:
                new = gptq(W, fit[name].H, config["quantize"], mask=W != 0, percdamp=config["percdamp"],
                           act_order=config["act_order"], name=f"{index}.{name}").weight
            errors[f"{index}.{name}"] = relative_error(W, new, plain[name].H)
            first[f"{index}.{name}"] = relative_error(W, new, plain[name].first.H)
            set_weight_matrix(module, new)
        for position, call in enumerate(calls):
            call.hidden = dense_outputs[position] if dense_outputs else call.run(block, index)
    return errors, first


def mix(model, config: dict, weights: dict[str, dict[str, torch.Tensor]]) -> None:
    """Set GPTQ's weights where ``config`` says (linear names containing one of ``gptq_in``, or a
    half of the blocks), RTN's elsewhere."""
    from prunelib.model.architecture import block_linears, decoder_blocks, set_weight_matrix

    blocks = decoder_blocks(model)
    for index, block in enumerate(blocks):
        for name, module in block_linears(block).items():
            where = f"{index}.{name}"
            if "gptq_in" in config:
                chosen = any(part in name for part in config["gptq_in"])
            else:
                chosen = (index < len(blocks) // 2) == (config["gptq_blocks"] == "first-half")
            set_weight_matrix(module, weights["gptq" if chosen else "rtn"][where])


def kind_geomeans(errors: dict[str, float]) -> dict[str, float]:
    """Geometric mean of the errors per linear type (``self_attn.v_proj``, ...)."""
    kinds: dict[str, list[float]] = {}
    for where, value in errors.items():
        kinds.setdefault(where.split(".", 1)[1], []).append(value)
    return {kind: geomean(values) for kind, values in kinds.items()}


@torch.no_grad()
def attention_to_first(model, windows: torch.Tensor) -> list[float]:
    """Per block, the mean attention probability that a query at position ``>= 1`` puts on key 0
    (heads and queries averaged) over ``windows`` ``(n, seqlen)``: how much of every token's
    attention output is the first position's value."""
    from prunelib.model.architecture import decoder_blocks

    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # the only implementation that returns the probabilities
    try:
        sums = [0.0] * len(decoder_blocks(model))
        for window in windows.split(1):
            attentions = model(window, output_attentions=True, use_cache=False).attentions
            for index, probabilities in enumerate(attentions):  # (1, heads, seqlen, seqlen)
                sums[index] += probabilities[0, :, 1:, 0].mean().item()
    finally:
        model.set_attn_implementation(previous)
    return [total / windows.shape[0] for total in sums]


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(map(math.log, values)) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, in order")
    parser.add_argument("--calibration", type=int, default=32, help="C4 windows of 1024 tokens (seed 0)")
    parser.add_argument("--windows", type=int, default=8, help="WikiText-2 test windows of 2048 tokens")
    parser.add_argument("--out", type=Path, default=None, help="default results/diagnostics/gptq_anomaly-<model>.json")
    parser.add_argument("--sink-windows", type=int, default=4,
                        help="WikiText-2 test windows of the calibration length for the attention on the first position")
    args = parser.parse_args()

    from prunelib import data
    from prunelib.eval.perplexity import perplexity
    from prunelib.experiments.profiles import get_profile
    from prunelib.model.architecture import block_linears, decoder_blocks, weight_matrix
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, now, versions

    torch.set_grad_enabled(False)
    profile = get_profile("cpu")
    out = args.out or OUT / f"gptq_anomaly-{args.model}.json"
    model, tokenizer = load_model(args.model, quiet=True)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    calibration, calibration_source = data.c4_calibration(tokenizer, args.calibration, profile.calib_seqlen, profile.seed)
    tokens, eval_source = data.wikitext2_tokens(tokenizer, "test")
    linears = [(f"{i}.{n}", m) for i, b in enumerate(decoder_blocks(model)) for n, m in block_linears(b).items()]
    protocol = {"model": model_record(args.model, model), "calibration": calibration_source,
                "eval_data": {**eval_source, "windows": args.windows, "seqlen": profile.eval_seqlen},
                "exact_zero_weights": sum(int((weight_matrix(m) == 0).sum()) for _, m in linears),
                "linear_weights": sum(weight_matrix(m).numel() for _, m in linears), "baseline": BASELINE}
    record = json.loads(out.read_text()) if out.exists() else {}
    if record.get("protocol", {}).get("calibration") != protocol["calibration"] or \
            record["protocol"].get("eval_data") != protocol["eval_data"]:
        record = {"question": "why does INT4 GPTQ lose to round-to-nearest on the whole model?",
                  "protocol": protocol, "variants": {}}
    if "versions" in record and any("versions" not in v for n, v in record["variants"].items() if n != "dense"):
        # variants stored before each kept its own versions: keep the last code that wrote them
        record.setdefault("earlier", {"versions": record["versions"], "finished": record["finished"]})
    weights: dict[str, dict[str, torch.Tensor]] = {}
    if record.get("attention_to_first", {}).get("windows") != args.sink_windows:
        seqlen = profile.calib_seqlen  # eager attention keeps every block's (heads, seqlen, seqlen) probabilities
        shares = attention_to_first(model, tokens[0, : args.sink_windows * seqlen].reshape(-1, seqlen))
        record["attention_to_first"] = {"windows": args.sink_windows, "seqlen": seqlen, "per_block": shares,
                                        "mean": sum(shares) / len(shares)}
        print(f"attention on the first position: {record['attention_to_first']['mean']:.3f} (mean over blocks)")

    def evaluate() -> float:
        return perplexity(model, tokens, seqlen=profile.eval_seqlen, max_windows=args.windows, quiet=True)["ppl"]

    if "dense" not in record["variants"]:
        record["variants"]["dense"] = {"config": {"method": "none"}, "ppl": evaluate()}
    for name in args.variants.split(","):
        config = {**BASELINE, **VARIANTS[name]}
        done = record["variants"].get(name)
        if done and done["config"] == config:
            print(f"{name:24s} ppl {done['ppl']:8.3f} (stored)")
            continue
        model.load_state_dict(dense)
        start = time.perf_counter()
        if config["noise"]:
            off_grid(model, config["noise"])
        errors = first = None
        if config["method"] == "mix":
            for source in ("rtn", "gptq"):
                cache = CACHE / f"{args.model}-{args.calibration}-{source}.pt"
                if source not in weights and cache.is_file():
                    weights[source] = torch.load(cache)
                if source not in weights:  # the full variants' weights, recomputed when not kept
                    model.load_state_dict(dense)
                    quantize_walk(model, calibration, {**BASELINE, **VARIANTS[source]}, quiet=True)
                    weights[source] = {where: weight_matrix(m).detach().clone() for where, m in linears}
                    CACHE.mkdir(parents=True, exist_ok=True)
                    torch.save(weights[source], cache)
            model.load_state_dict(dense)
            mix(model, config, weights)
        elif config["method"] != "none":
            errors, first = quantize_walk(model, calibration, config)
            if name in ("rtn", "gptq"):
                weights[name] = {where: weight_matrix(m).detach().clone() for where, m in linears}
        result = {"config": config, "ppl": evaluate(), "seconds": time.perf_counter() - start,
                  # the record's top-level versions say which code wrote it last; each variant keeps its own
                  "versions": versions(), "threads": torch.get_num_threads(), "finished": now()}
        if errors:
            result["layer_error_geomean"] = geomean(errors.values())
            result["layer_error_by_type"] = kind_geomeans(errors)
            result["first_token_error_by_type"] = kind_geomeans(first)
            result["layer_errors"] = errors
        record["variants"][name] = result
        record.update(versions=versions(), threads=torch.get_num_threads(), finished=now(),
                      command=f"python benchmarks/gptq_anomaly.py --model {args.model} --calibration "
                              f"{args.calibration} --windows {args.windows}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        error = f"  layer error {result['layer_error_geomean']:.4f}" if errors else ""
        print(f"{name:24s} ppl {result['ppl']:8.3f}{error}  ({result['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
