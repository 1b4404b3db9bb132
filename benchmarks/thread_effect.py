"""How far does the CPU thread count move the core table's numbers? (issue 29)

A float32 sum depends on how it is split between threads. The walk prunes block after block on
the outputs of the blocks already pruned, so a last-digit change can pick another mask entry in a
later block, and the change grows. This script computes each run of the core table (seed 0, the
cpu protocol; :func:`prunelib.experiments.suites.core_suite`) with 2 threads and sets it beside
the stored record, which every suite computes with
:data:`~prunelib.experiments.executors.RUN_THREADS` (1). The runs with 2 threads are diagnostics,
not records of the run cache: the thread count is not part of a run's definition, so they are kept
in their own file. A run already in the file is skipped, so a stopped invocation resumes.

    python benchmarks/thread_effect.py                          # SmolLM2-135M
    python benchmarks/thread_effect.py --model gemma3-270m
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "diagnostics"


def main() -> None:
    from prunelib.experiments.executors import RUN_THREADS, run_threads
    from prunelib.experiments.runs import compute, profile_root, stored
    from prunelib.experiments.suites import core_suite
    from prunelib.model.provenance import now, versions, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2, help="the thread count set beside the stored records")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or OUT / f"thread_effect-{args.model}.json"
    record = json.loads(out.read_text()) if out.exists() else {
        "what": "core-table runs (seed 0, cpu protocol) with another thread count, beside the stored records",
        "stored_threads": RUN_THREADS, "threads": args.threads, "runs": {}}
    if record["threads"] != args.threads:
        raise SystemExit(f"{out} holds runs with {record['threads']} threads; pass --out for another count")
    root = profile_root("cpu")
    specs = core_suite("cpu", model=args.model, seeds=(0,))
    for spec in specs:
        if spec.name in record["runs"]:
            print(f"skip {spec.name} (done)")
            continue
        reference = stored(spec, root=root)
        if reference is None or "stale" in reference:
            print(f"skip {spec.name}: its stored record is {'stale' if reference else 'missing'}")
            continue
        print(f"run {spec.name} with {args.threads} threads", flush=True)
        with run_threads(args.threads):
            result = compute(spec, quiet=True)
        record["runs"][spec.name] = {
            "run": spec.definition(), "key": spec.key, "code": spec.code,
            "stored": {"ppl": reference["ppl"], "threads": reference["threads"], "code": reference["code"]},
            "ppl": result["ppl"], "sparsity": result["sparsity"], "threads": result["threads"],
            "prune_seconds": result["prune"]["prune_seconds"], "seconds": result["seconds"],
            "versions": versions(), "finished": now()}
        write_json(out, record)
        print(f"  {spec.name}: {reference['ppl']:.4f} ({reference['threads']} thread) -> "
              f"{result['ppl']:.4f} ({args.threads} threads)", flush=True)


if __name__ == "__main__":
    main()
