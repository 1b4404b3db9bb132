"""Recovering quality after pruning by training with the masks fixed (chapter 11), on the CPU.

Every run prunes a fresh embedded model with the ``cpu`` profile's calibration (64 x 1024 C4
tokens, seed 0), measures WikiText-2 test perplexity (the profile's 16 windows of 2048; the dense
value is read from the experiment suite's dense run when stored), trains
on C4 windows drawn with another seed (``--train-seed``, never the evaluation text) with the
sparsity kept, and measures again. Runs:

- ``<method>-<pattern>-full``: every weight of the model trains; :class:`prunelib.model.finetune.SparsityKeeper`
  keeps the pruned ones at zero;
- ``<method>-<pattern>-lora``: masked LoRA adapters on every linear, merged sparse at the end;
- ``magnitude-50-oneshot`` and ``magnitude-50-iterative``: the same training budget spent after
  one-shot pruning, or spread over the four steps of :func:`prunelib.model.iterative.iterative_prune`;
- ``dense-full``: the control, the same full training on the unpruned model, which tells how much
  of a "recovery" is the model adapting to the training text rather than to its pruning.

Results (loss curve, perplexity before and after, the budget, time, provenance) go to
``results/finetune/<run>.json``; existing files are reused, so the script resumes.

    python benchmarks/sparse_finetune.py                      # every missing run
    python benchmarks/sparse_finetune.py --only wanda-50-lora --steps 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "finetune"

RUNS = {
    "wanda-50-full": {"method": "wanda", "sparsity": 0.5, "train": "full"},
    "wanda-50-lora": {"method": "wanda", "sparsity": 0.5, "train": "lora"},
    "wanda-2of4-full": {"method": "wanda", "nm": "2:4", "train": "full"},
    "wanda-2of4-lora": {"method": "wanda", "nm": "2:4", "train": "lora"},
    "magnitude-50-oneshot": {"method": "magnitude", "sparsity": 0.5, "train": "full"},
    "magnitude-50-iterative": {"method": "magnitude", "sparsity": 0.5, "train": "iterative"},
    "dense-full": {"method": "dense", "train": "full"},
}


def run_one(name: str, args) -> dict:
    import torch

    from prunelib import data
    from prunelib.eval.perplexity import perplexity
    from prunelib.experiments.profiles import get_profile
    from prunelib.model.finetune import SparsityKeeper, add_lora, merge_lora, train
    from prunelib.model.iterative import iterative_prune
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, now, versions
    from prunelib.model.prune import measure_sparsity, prune_model

    spec = RUNS[name]
    profile = get_profile(args.profile)
    torch.manual_seed(profile.seed)
    model, tokenizer = load_model(profile.model, quiet=True)
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, "test")

    def ppl():
        model.eval()
        return perplexity(model, eval_tokens, seqlen=profile.eval_seqlen, max_windows=profile.max_windows, quiet=True)

    record = {"run": name, "spec": spec, "profile": profile.as_dict(), "model": model_record(profile.model, model),
              "eval_data": eval_source, "dense": dense_perplexity(profile) or ppl()}
    train_tokens, record["train_data"] = data.c4_calibration(tokenizer, args.steps * args.batch_size, args.seqlen,
                                                             args.train_seed)
    calibration = None
    if spec["method"] not in ("magnitude", "dense"):
        calibration, record["calibration"] = data.c4_calibration(tokenizer, profile.nsamples, profile.calib_seqlen,
                                                                 profile.seed)
    budget = {"steps": args.steps, "batch_size": args.batch_size, "seqlen": args.seqlen, "lr": args.lr,
              "train_seed": args.train_seed}
    if spec["train"] == "iterative":
        schedule_steps = 4
        budget["recover_steps"] = max(1, args.steps // schedule_steps)
        result = iterative_prune(model, train_tokens, sparsity=spec["sparsity"], steps=schedule_steps,
                                 recover_steps=budget["recover_steps"], lr=args.lr, batch_size=args.batch_size)
        record["schedule"] = result["schedule"]
        record["losses"] = [loss for step in result["losses"] for loss in step]
        record["train_seconds"], record["train_tokens"] = result["seconds"], result["train_tokens"]
    else:
        if spec["method"] == "dense":
            record["before"] = record["dense"]
        else:
            prune_model(model, calibration, method=spec["method"], sparsity=spec.get("sparsity", 0.0),
                        nm=spec.get("nm"), quiet=True)
            record["before"] = ppl()
        if spec["train"] == "lora":
            budget.update(rank=args.rank, alpha=2 * args.rank)
            add_lora(model, rank=args.rank, alpha=2 * args.rank, masked=True)
            result = train(model, train_tokens, steps=args.steps, lr=args.lora_lr, batch_size=args.batch_size)
            record["merged"] = merge_lora(model)
            budget["lr"] = args.lora_lr
        else:
            keeper = SparsityKeeper(model)
            result = train(model, train_tokens, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                           keeper=keeper)
            record["revived"] = keeper.revived()
            keeper.remove()
        record["losses"], record["train_seconds"] = result["losses"], result["seconds"]
        record["train_tokens"] = result["tokens_seen"]
    record["budget"] = budget
    record["after"] = ppl()
    record["sparsity"] = measure_sparsity(model)["sparsity"]
    record.update(versions=versions(), finished=now(), threads=torch.get_num_threads(),
                  command=f"python benchmarks/sparse_finetune.py --only {name} --steps {args.steps}")
    return record


def dense_perplexity(profile) -> dict | None:
    """The dense model's perplexity under the profile's protocol, read from the experiment suite's
    stored dense run (the same model and evaluation windows), so each run need not measure it again;
    None when that run is not stored."""
    from prunelib.experiments.runs import profile_root, stored, sweep_suite

    dense, root = sweep_suite(profile)[0], profile_root(profile)
    record = stored(dense, root=root)
    if record is None:
        return None
    return {"ppl": record["ppl"], "from": f"results/experiments/{profile.name}/{dense.path(root).name}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="these runs only (default: all missing)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seqlen", type=int, default=256, help="training sequence length (default 256)")
    parser.add_argument("--lr", type=float, default=2e-5, help="full fine-tuning learning rate")
    parser.add_argument("--lora-lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--train-seed", type=int, default=1, help="seed of the training windows (calibration uses 0)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(RUNS):
        target = args.out / f"{name}.json"
        if target.exists():
            continue
        if args.in_process:
            record = run_one(name, args)
            partial = target.with_suffix(".json.partial")
            partial.write_text(json.dumps(record, indent=2) + "\n")
            partial.replace(target)
        else:
            print(f"run {name}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--in-process", *_without_only(sys.argv[1:]), "--only", name],
                           check=True)


def _without_only(argv: list[str]) -> list[str]:
    """The command line minus ``--only`` and its values (each child gets exactly one run)."""
    kept, skipping = [], False
    for item in argv:
        if item == "--only":
            skipping = True
            continue
        if skipping and not item.startswith("--"):
            continue
        skipping = False
        kept.append(item)
    return kept


if __name__ == "__main__":
    main()
