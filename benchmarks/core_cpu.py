"""Core benchmark on the embedded model, CPU profile: quality, prune time and peak memory.

Runs dense, magnitude, Wanda and SparseGPT at 50% unstructured and 2:4, each in its own
process (``prunelib prune``) so that peak memory is per run, plus one timed forward pass
of the whole model over the calibration set, the yardstick for prune time. Every run writes
``results/benchmarks/core_cpu/<run>.json``; existing files are reused, so the script
resumes where it stopped. ``--table`` only rebuilds the markdown table, ``table.md``, from the files.

    python benchmarks/core_cpu.py                 # run what is missing, then print the table
    python benchmarks/core_cpu.py --max-windows 0 # evaluate on all WikiText-2 windows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks" / "core_cpu"
RUNS = {
    "dense": ["--method", "dense"],
    "magnitude-50": ["--method", "magnitude", "--sparsity", "0.5"],
    "wanda-50": ["--method", "wanda", "--sparsity", "0.5"],
    "sparsegpt-50": ["--method", "sparsegpt", "--sparsity", "0.5"],
    "magnitude-2of4": ["--method", "magnitude", "--nm", "2:4"],
    "wanda-2of4": ["--method", "wanda", "--nm", "2:4"],
    "sparsegpt-2of4": ["--method", "sparsegpt", "--nm", "2:4"],
}


def forward_reference(args) -> dict:
    """Seconds for one forward pass of the whole model over the calibration set."""
    import torch

    from prunelib import data
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, versions

    model, tokenizer = load_model(args.model)
    calibration, source = data.c4_calibration(tokenizer, args.nsamples, args.calib_seqlen, args.seed)
    with torch.no_grad():
        model(calibration[: args.batch_size], use_cache=False)  # warm-up, not timed
        start = time.perf_counter()
        for batch in calibration.split(args.batch_size):
            model(batch, use_cache=False)
        seconds = time.perf_counter() - start
    return {"forward_seconds": seconds, "calibration": source, "batch_size": args.batch_size,
            "model": model_record(args.model, model), "versions": versions(), "threads": torch.get_num_threads()}


def run_all(args) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    forward_file = OUT / "forward.json"
    if not forward_file.exists():
        print("timing one forward pass over the calibration set", file=sys.stderr)
        forward_file.write_text(json.dumps(forward_reference(args), indent=2) + "\n")
    common = ["--model", args.model, "--nsamples", str(args.nsamples), "--calib-seqlen", str(args.calib_seqlen),
              "--eval-seqlen", str(args.eval_seqlen), "--seed", str(args.seed), "--batch-size", str(args.batch_size)]
    if args.max_windows:
        common += ["--max-windows", str(args.max_windows)]
    for name, options in RUNS.items():
        target = OUT / f"{name}.json"
        if target.exists():
            continue
        print(f"run {name}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "prunelib.cli", "prune", *options, *common, "--json", str(target)], check=True)


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def table() -> str:
    """Markdown table of every finished run.

    Memory: the target is a peak below 2x the float32 model plus the calibration activations
    of one block. The process also holds the Python runtime, the tokenized evaluation text and
    allocator slack from loading, so the table compares what pruning *adds* on top of the
    resident memory before pruning (which already holds one copy of the model) with the
    allowance ``model + activations``.
    """
    forward = json.loads((OUT / "forward.json").read_text())["forward_seconds"]
    lines = [
        f"One forward pass of the whole model over the calibration set: {forward:.1f} s.",
        "",
        "| run | WikiText-2 ppl | sparsity | prune s | prune / forward | RSS before prune MiB | "
        "added by pruning MiB | allowance (model + activations) MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    records = {name: json.loads((OUT / f"{name}.json").read_text()) for name in RUNS if (OUT / f"{name}.json").exists()}
    for name, r in records.items():
        memory = r["memory"]
        added = memory["prune_peak_bytes"] - memory["resident_before_prune_bytes"]
        allowance = memory["model_bytes"] + memory.get("calibration_activation_bytes", 0)
        lines.append(
            f"| {name} | {r['ppl']:.2f} | {r['sparsity']:.4f} | {r['prune_seconds']:.1f} | "
            f"{r['prune_seconds'] / forward:.2f} | {_mib(memory['resident_before_prune_bytes'])} | {_mib(added)} | "
            f"{_mib(allowance)} |"
        )
    calibrated = [r for r in records.values() if r.get("calibration")]
    if calibrated:
        r = calibrated[0]
        ev, cal = r["eval"], r["calibration"]
        lines += [
            "",
            f"Model: {r['model']['name']} ({r['model']['gguf_file']}, sha256 {r['model']['gguf_sha256'][:12]}...), "
            f"{r['model']['dtype']} on {r['model']['device']}. Eval: WikiText-2 {ev['split']} ({ev['tokens']} tokens), "
            f"seqlen {ev['seqlen']}, first {ev['windows']} of {ev['available_windows']} windows. Calibration: "
            f"{cal['nsamples']} x {cal['seqlen']} tokens of the C4 sample, seed {cal['seed']}. "
            f"torch {r['versions']['torch']}, transformers {r['versions']['transformers']}, prunelib {r['versions']['prunelib']}.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--nsamples", type=int, default=64)
    parser.add_argument("--calib-seqlen", type=int, default=1024)
    parser.add_argument("--eval-seqlen", type=int, default=2048)
    parser.add_argument("--max-windows", type=int, default=40, help="0 = all windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="only print the table from existing results")
    args = parser.parse_args()
    if not args.table:
        run_all(args)
    text = table()
    (OUT / "table.md").write_text("# Core CPU benchmark (generated by benchmarks/core_cpu.py)\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
