"""Speed of structured pruning on CPU: whole models and single matrices (chapter 5).

1. Models: reload each physically pruned model saved by ``benchmarks/structured_cpu.py``
   (``.cache/structured/<run>/``) with ``from_pretrained`` and measure prefill and decode
   tokens/s (:func:`prunelib.eval.speed.generation.throughput`, batch 1, greedy, KV cache).
2. Matrices: ``y = W x`` at the embedded model's MLP shapes for one token (decode) and 512
   tokens (prefill), for each way 50% of a matrix can be removed: half the rows or half the
   columns (a smaller dense matrix), half the 64 x 64 blocks (``torch`` BSR kernel), and
   unstructured 50% (the dense kernel on a matrix that is half zeros, and ``torch`` CSR).

Run it on a quiet machine: timings share the CPU with anything else running. Writes
``results/structured/speed.json`` and ``speed.md``.

    python benchmarks/structured_speed.py [--runs dense mlp-25 ...] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "structured"
MODELS = ROOT / ".cache" / "structured"
DEFAULT_RUNS = ("dense", "mlp-25", "mlp-50", "heads-33-refit")
SHAPES = ((1536, 576), (576, 1536))  # up/gate projection and down projection of SmolLM2-135M
TOKENS = (1, 512)


def model_speed(runs, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelib.eval.speed.generation import throughput
    from prunelib.model.structured import count_parameters

    results = {}
    for run in runs:
        path = MODELS / run
        if not path.is_dir():
            raise SystemExit(f"{path} is missing: run `python benchmarks/structured_cpu.py --only {run}` first")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        print(f"throughput {run}", file=sys.stderr, flush=True)
        measured = throughput(model, tokenizer, prompt_tokens=prompt_tokens, new_tokens=new_tokens, repeats=repeats)
        results[run] = {**measured, "parameters": count_parameters(model)}
    return results


def _time(stmt: str, values: dict, min_run_time: float) -> float:
    """Median microseconds of ``stmt``."""
    timer = benchmark.Timer(stmt, globals=values, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


@torch.no_grad()
def matmul_speed(min_run_time: float) -> list[dict]:
    from prunelib.core.structured import structured_mask

    gen = torch.Generator().manual_seed(0)
    rows = []
    for out_features, in_features in SHAPES:
        W = torch.randn(out_features, in_features, generator=gen)
        blocks = W * structured_mask(W, torch.rand(in_features, generator=gen), 0.5, "block", 64)
        # exactly half of every row zero, at random positions
        unstructured = W * (torch.rand(W.shape, generator=gen).argsort(1).argsort(1) >= in_features // 2)
        operands = {  # pattern -> (matrix, how many input rows it reads)
            "dense": (W, in_features),
            "rows-50": (W[: out_features // 2].contiguous(), in_features),
            "columns-50": (W[:, : in_features // 2].contiguous(), in_features // 2),
            "blocks64-50 (BSR)": (blocks.to_sparse_bsr((64, 64)), in_features),
            "unstructured-50 (dense kernel)": (unstructured, in_features),
            "unstructured-50 (CSR)": (unstructured.to_sparse_csr(), in_features),
        }
        for tokens in TOKENS:
            x = torch.randn(in_features, tokens, generator=gen)
            dense_us = None
            for pattern, (matrix, reads) in operands.items():
                us = _time("W @ x", {"W": matrix, "x": x[:reads].contiguous()}, min_run_time)
                dense_us = dense_us or us  # "dense" comes first
                rows.append({"pattern": pattern, "shape": [out_features, in_features], "tokens": tokens,
                             "microseconds": us, "speedup": dense_us / us})
                print(f"{pattern:32s} {out_features}x{in_features} tokens={tokens:4d} {us:10.1f} us", file=sys.stderr)
    return rows


def markdown(result: dict) -> str:
    lines = ["| model | parameters | prefill tokens/s | decode tokens/s |", "|---|---|---|---|"]
    for run, r in result["models"].items():
        lines.append(f"| {run} | {r['parameters']:,} | {r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.1f} |")
    lines += ["", "| pattern | shape | tokens | microseconds | speedup vs dense |", "|---|---|---|---|---|"]
    for r in result["matmul"]:
        lines.append(f"| {r['pattern']} | {r['shape'][0]}x{r['shape'][1]} | {r['tokens']} | "
                     f"{r['microseconds']:.1f} | {r['speedup']:.2f}x |")
    lines += ["", f"{result['threads']} threads, torch {result['versions']['torch']}, {result['finished']}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="*", default=list(DEFAULT_RUNS))
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--force", action="store_true", help="measure again although speed.json exists")
    args = parser.parse_args()

    from prunelib.model.provenance import now, versions

    target = OUT / "speed.json"
    if target.exists() and not args.force:
        print(f"{target} exists; --force measures again", file=sys.stderr)
        return
    result = {
        "models": model_speed(args.runs, args.prompt_tokens, args.new_tokens, args.repeats),
        "matmul": matmul_speed(args.min_run_time),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "finished": now(),
        "command": "python benchmarks/structured_speed.py " + " ".join(sys.argv[1:]),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "speed.md").write_text("# Structured pruning speed on CPU (benchmarks/structured_speed.py)\n\n"
                                  + markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
