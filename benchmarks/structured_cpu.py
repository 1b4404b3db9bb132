"""Structured pruning and N:M permutation on the embedded model, CPU profile (chapters 5 and 6).

Quality phase: every run prunes a fresh model with the ``cpu`` profile's calibration
(64 x 1024 C4 tokens, seed 0), evaluates WikiText-2 test perplexity (first 16 windows of
2048) and writes ``results/structured/<run>.json`` with its provenance. Runs that remove
channels or heads also save the smaller model with ``save_pretrained`` under
``.cache/structured/<run>/`` (not in git) and record the file size; the speed phase later
reloads them with ``from_pretrained``. Existing result files are reused, so the script resumes.

    python benchmarks/structured_cpu.py                 # all missing quality runs, one process each
    python benchmarks/structured_cpu.py --only mlp-25   # one run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "structured"
MODELS = ROOT / ".cache" / "structured"

#: run name -> what it does. "channels": physical removal; "mask": zero structures in place;
#: "prune": prunelib.model.prune.prune_model (unstructured / N:M, optionally permuted).
RUNS = {
    "dense": {"kind": "dense"},
    "mlp-25": {"kind": "channels", "mlp": 0.25},
    "mlp-50": {"kind": "channels", "mlp": 0.5},
    "mlp-25-refit": {"kind": "channels", "mlp": 0.25, "refit": True},
    "mlp-50-refit": {"kind": "channels", "mlp": 0.5, "refit": True},
    "heads-33-refit": {"kind": "channels", "heads": 1 / 3, "refit": True},
    "rows-50": {"kind": "mask", "structure": "row", "sparsity": 0.5},
    "columns-50": {"kind": "mask", "structure": "column", "sparsity": 0.5},
    "blocks64-50": {"kind": "mask", "structure": "block", "sparsity": 0.5},
    "wanda-50": {"kind": "prune", "method": "wanda", "sparsity": 0.5},
    "magnitude-2of4": {"kind": "prune", "method": "magnitude", "nm": "2:4"},
    "magnitude-2of4-permuted": {"kind": "prune", "method": "magnitude", "nm": "2:4", "permute": True},
    "wanda-2of4": {"kind": "prune", "method": "wanda", "nm": "2:4"},
    "wanda-2of4-permuted": {"kind": "prune", "method": "wanda", "nm": "2:4", "permute": True},
    "sparsegpt-2of4": {"kind": "prune", "method": "sparsegpt", "nm": "2:4"},
    "sparsegpt-2of4-permuted": {"kind": "prune", "method": "sparsegpt", "nm": "2:4", "permute": True},
}


def directory_bytes(path: Path) -> int:
    """Bytes of the weight files (``*.safetensors``) in a saved model directory."""
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def run_one(name: str) -> dict:
    import torch

    from prunelib import data
    from prunelib.eval.perplexity import perplexity
    from prunelib.experiments.profiles import get_profile
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, now, versions
    from prunelib.model.prune import prune_model
    from prunelib.model.structured import count_parameters, prune_structured, prune_structured_masks

    spec = RUNS[name]
    profile = get_profile("cpu")
    torch.manual_seed(profile.seed)
    model, tokenizer = load_model(profile.model, quiet=True)
    record = {"run": name, "spec": spec, "profile": profile.as_dict(), "model": model_record(profile.model, model),
              "parameters_dense": count_parameters(model)}
    calibration = None
    if spec["kind"] != "dense" and spec.get("method") != "magnitude":
        calibration, record["calibration"] = data.c4_calibration(
            tokenizer, profile.nsamples, profile.calib_seqlen, profile.seed)
    if spec["kind"] == "channels":
        options = {k: spec[k] for k in ("mlp", "heads", "refit") if k in spec}
        record["prune"] = prune_structured(model, calibration, **options)
    elif spec["kind"] == "mask":
        report = prune_structured_masks(model, calibration, kind=spec["structure"], sparsity=spec["sparsity"])
        record["prune"] = {k: v for k, v in report.items() if k != "layers"}
    elif spec["kind"] == "prune":
        options = {k: spec[k] for k in ("method", "sparsity", "nm", "permute") if k in spec}
        report = prune_model(model, calibration, **options)
        record["prune"] = {k: v for k, v in report.items() if k != "layers"}
    record["parameters"] = count_parameters(model)
    if spec["kind"] in ("dense", "channels"):
        target = MODELS / name
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        record["saved_to"] = str(target.relative_to(ROOT))
        record["file_bytes"] = directory_bytes(target)
    tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, "test")
    record["eval"] = perplexity(model, tokens, seqlen=profile.eval_seqlen, max_windows=profile.max_windows)
    record.update(versions=versions(), finished=now(), threads=torch.get_num_threads(),
                  command=f"python benchmarks/structured_cpu.py --only {name}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="these runs only (default: all missing)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.only or list(RUNS)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = OUT / f"{name}.json"
        if target.exists():
            continue
        if args.in_process:
            record = run_one(name)
            partial = target.with_suffix(".json.partial")
            partial.write_text(json.dumps(record, indent=2) + "\n")
            partial.replace(target)
        else:
            print(f"run {name}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--in-process", "--only", name], check=True)


if __name__ == "__main__":
    main()
