"""The ``prunelib`` command: one verb per job, ``prunelib <verb> --help`` for each.

    prunelib prune        prune a model one-shot (magnitude, Wanda, SparseGPT; unstructured or N:M)
    prunelib shrink       remove MLP channels and attention heads (a smaller dense model)
    prunelib pipeline     prune, quantize, evaluate and save a compact file in one go
    prunelib eval         WikiText-2 perplexity (and zero-shot accuracy) of a model
    prunelib finetune     fine-tune a pruned model, keeping its zeros
    prunelib experiments  compute or list the book's suites of cached runs (here or on Ray)
    prunelib speed        2:4 speed on a GPU, CSR speed on a CPU
    prunelib gpu-check    the book's GPU measurements in one command (a dry run without a GPU)

Every bad input is refused before work starts, with one line on stderr and exit status 2;
output files are written atomically, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import PrunelibError
from . import experiments, finetune, gpucheck, models, speed

VERBS = (models, finetune, experiments, speed, gpucheck)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunelib", description="One-shot pruning of large language models: "
                                     "one verb per job, 'prunelib <verb> --help' for each.")
    parser.add_argument("--version", action="version", version=f"prunelib {__version__}")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="<verb>")
    for module in VERBS:
        module.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``prunelib <verb> ...``; returns the exit status (2 for a refused input)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args, argv)
    except PrunelibError as error:
        print(f"prunelib: error: {error}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main"]
