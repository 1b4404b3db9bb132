"""``prunelib gpu-check``: the book's GPU measurements in one command (under 8 minutes on one GPU).

    prunelib gpu-check                  # on an NVIDIA GPU (sm80+): results/speed/gpu_check.json and .md
    prunelib gpu-check --dry-run        # anywhere: every step but the kernels, into a scratch folder

Without a usable GPU it runs the dry run and says what it skipped
(:mod:`prunelib.experiments.gpu_check`). Needs no network: the embedded models and the data
are local (``$PRUNELIB_DATA_DIR``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ..experiments.gpu_check import PLAN, gpu_check
from ..model.provenance import now, versions, write_json
from ..report.speed import gpu_check_markdown, gpu_environment

OUT = Path("results/speed/gpu_check.json")


def register(verbs) -> None:
    parser = verbs.add_parser("gpu-check", help="2:4 speed and the core perplexity table on one GPU (or a dry run)",
                              description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="skip the kernels even on a GPU")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON file, the .md next to it (default {OUT}; a dry run: a scratch folder)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results root of the perplexity runs (default the run cache; a dry run: next to --out)")
    parser.add_argument("--budget-s", type=float, default=PLAN["budget_s"],
                        help="stop starting measurements after this many seconds")
    parser.set_defaults(handler=run_gpu_check)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_gpu_check(args, argv: list[str]) -> int:
    from ..eval.speed.semi import cuda_problem

    dry = args.dry_run or cuda_problem() is not None
    out = args.out or (Path(tempfile.mkdtemp(prefix="prunelib-gpu-check-")) / "gpu_check.json" if dry else OUT)
    results = args.results or (out.parent / "runs" if dry else None)
    record = {"command": " ".join(["prunelib", *argv]), "created": now(), "versions": versions()}
    if not dry:
        record["environment"] = gpu_environment()
    record.update(gpu_check(dry_run=dry, root=results, budget_s=args.budget_s, progress=_say))
    write_json(out, record)
    out.with_suffix(".md").write_text(gpu_check_markdown(record))
    print(f"wrote {out} and {out.with_suffix('.md')} in {record['seconds']:.0f} s"
          + (f"; dry run, not measured: {len(record['skipped'])} item(s), listed there" if dry else ""))
    return 0
