"""What the verbs that work on one model share: the common options, output checks, the record's
summary, saving, and the handler that prints one JSON line."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from .. import data
from ..errors import PrunelibError
from ..model.embedded import DEFAULT_MODEL
from ..model.loading import quiet_transformers
from ..model.provenance import now, versions, write_json
from ..model.prune import measure_sparsity


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"short name, HF id, local directory or .gguf file (default {DEFAULT_MODEL})")
    parser.add_argument("--eval-seqlen", type=int, default=2048, help="perplexity window length (default 2048)")
    parser.add_argument("--max-windows", type=int, default=None, help="evaluate only the first N windows")
    parser.add_argument("--split", default="test", choices=sorted(data.WIKITEXT_FILES), help="WikiText-2 split")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU, float16 on GPU), float32, float16, bfloat16")
    parser.add_argument("--json", type=Path, default=None, help="write the result record here")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json/--save outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def check_positive(args, *options: str) -> None:
    """Refuse a zero or negative value of any of the integer ``options`` (argparse names)."""
    for option in options:
        if getattr(args, option) < 1:
            raise PrunelibError(f"--{option.replace('_', '-')} must be positive")


def check_data(args, calibration: bool) -> None:
    """Read the data files before the model loads, so a missing file fails in a second (cached)."""
    data.wikitext2(args.split)
    if calibration:
        data.c4_documents()


def check_outputs(args) -> None:
    for path in (args.json, getattr(args, "save", None), getattr(args, "compact", None)):
        if path is not None and path.exists() and not args.overwrite:
            raise PrunelibError(f"{path} already exists; pass --overwrite to replace it")


def save_model(model, tokenizer, directory: Path, overwrite: bool = False) -> None:
    """``save_pretrained`` (safetensors) into a temporary sibling, then move it into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if directory.exists() and overwrite:
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def summary(model, ppl: dict, eval_source: dict, args) -> dict:
    measured = measure_sparsity(model)
    return {
        "ppl": ppl["ppl"],
        "sparsity": measured["sparsity"],
        "eval_seconds": ppl["eval_seconds"],
        "eval": {**eval_source, **{k: ppl[k] for k in ("seqlen", "windows", "available_windows")},
                 "max_windows": args.max_windows},
        "versions": versions(),
        "created": now(),
        "layers": {name: layer["sparsity"] for name, layer in measured["layers"].items()},
    }


def handle(run):
    """The handler of a verb: run it, write ``--json``, print the one-line summary; exit status."""

    def run_verb(args, argv) -> int:
        with quiet_transformers(args.quiet):
            record = run(args)
        if args.json is not None:
            write_json(args.json, record)
        line = {k: record[k] for k in ("ppl", "sparsity", "eval_seconds", "parameters_after") if k in record}
        if "compact" in record:
            line["compact_bytes"] = record["compact"]["file_bytes"]
        if "zero_shot" in record:
            line["zero_shot_average"] = record["zero_shot"]["average"]
        line["prune_seconds"] = record.get("prune_seconds")
        print(json.dumps({"model": args.model, "method": record.get("method", args.command), **line}))
        return 0

    return run_verb
