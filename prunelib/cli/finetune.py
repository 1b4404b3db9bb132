"""``prunelib finetune``: fine-tune a pruned model on C4 text, keeping its zeros.

    prunelib prune --method wanda --sparsity 0.5 --save pruned
    prunelib finetune --model pruned --steps 200 --save pruned-tuned --json tuned.json
    prunelib finetune --model pruned --lora 16 --steps 200       # masked LoRA, merged sparse

Full fine-tuning keeps every pruned weight at zero (:class:`~prunelib.model.finetune.SparsityKeeper`);
``--lora`` trains a masked low-rank update instead and merges it without filling the zeros.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import data
from ..errors import PrunelibError
from ..eval.perplexity import perplexity
from ..model.finetune import SparsityKeeper, add_lora, merge_lora, train
from ..model.loading import load_model
from ..model.provenance import model_record
from .common import add_common, check_data, check_outputs, check_positive, handle, save_model, summary


def register(verbs) -> None:
    """Add ``finetune`` to the ``prunelib`` command."""
    parser = verbs.add_parser("finetune", help="fine-tune a pruned model on C4 text, keeping its zeros",
                              description=__doc__.split("\n\n")[0])
    add_common(parser)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-5, with --lora 1e-4)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step (default 4)")
    parser.add_argument("--seqlen", type=int, default=512, help="tokens per training sequence (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training text and its order")
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help="train a masked LoRA update of this rank (alpha = 2 x rank) and merge it")
    parser.add_argument("--save", type=Path, default=None, help="save the fine-tuned model as a HF directory")
    parser.set_defaults(handler=handle(run_finetune))


def run_finetune(args: argparse.Namespace) -> dict:
    check_positive(args, "steps", "batch_size", "seqlen", "eval_seqlen")
    if args.lora is not None and args.lora < 1:
        raise PrunelibError("--lora must be a positive rank")
    lr = args.lr if args.lr is not None else (1e-4 if args.lora else 1e-5)
    if lr <= 0:
        raise PrunelibError("--lr must be positive")
    check_outputs(args)
    check_data(args, calibration=True)  # C4 is the training text
    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device, quiet=args.quiet)
    if next(model.parameters()).dtype == torch.float16:
        raise PrunelibError("training in float16 is unstable; pass --dtype float32 or bfloat16")
    eval_tokens, eval_source = data.wikitext2_tokens(tokenizer, args.split)
    train_tokens, train_source = data.c4_calibration(tokenizer, args.steps * args.batch_size, args.seqlen, args.seed)

    def ppl() -> dict:
        model.eval()
        return perplexity(model, eval_tokens, seqlen=args.eval_seqlen, max_windows=args.max_windows, quiet=args.quiet)

    before = ppl()["ppl"]
    record = {"command": "finetune", "model": model_record(args.model, model), "train_data": train_source,
              "budget": {"steps": args.steps, "batch_size": args.batch_size, "seqlen": args.seqlen, "lr": lr,
                         "seed": args.seed, "lora_rank": args.lora},
              "ppl_before": before}
    if args.lora:
        add_lora(model, rank=args.lora, alpha=2.0 * args.lora, masked=True)
        result = train(model, train_tokens, steps=args.steps, lr=lr, batch_size=args.batch_size, seed=args.seed,
                       quiet=args.quiet)
        record["merged"] = merge_lora(model)
    else:
        keeper = SparsityKeeper(model)
        result = train(model, train_tokens, steps=args.steps, lr=lr, batch_size=args.batch_size, keeper=keeper,
                       seed=args.seed, quiet=args.quiet)
        record["revived"] = keeper.revived()
        keeper.remove()
    record.update(losses=result["losses"], train_seconds=result["seconds"], train_tokens=result["tokens_seen"])
    record.update(summary(model, ppl(), eval_source, args))
    if args.save is not None:
        save_model(model, tokenizer, args.save, args.overwrite)
        record["saved_to"] = str(args.save)
    return record
