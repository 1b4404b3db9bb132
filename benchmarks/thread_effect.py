"""How far do the CPU thread count and the machine move the core table's numbers? (issue 29)

A float32 sum depends on how it is split between threads, and on which kernel the math library
picks for the processor at hand. The walk prunes block after block on the outputs of the blocks
already pruned, so a last-digit change can choose another mask entry in a later block, and the
change grows. This script computes each run of the core table (seed 0, the cpu protocol;
:func:`prunelib.experiments.suites.core_suite`) on this machine with 1 and with 2 threads, and
keeps the stored record's number beside them. Every suite computes its records with
:data:`~prunelib.experiments.executors.RUN_THREADS` (1) thread, possibly on another machine:

- 2 threads against 1 thread, both here: the thread count alone;
- 1 thread here against the stored record (1 thread): the machine and library versions alone
  (the record's ``versions`` name them).

The runs are diagnostics, not records of the run cache (the thread count and the machine are not
part of a run's definition), so they are kept in their own file. A measurement already in the
file is skipped, so a stopped invocation resumes.

    python benchmarks/thread_effect.py                          # SmolLM2-135M
    python benchmarks/thread_effect.py --model gemma3-270m
    python benchmarks/thread_effect.py --only sparsegpt-2of4,wanda-2of4   # these first
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "diagnostics"
THREADS = (1, 2)


def main() -> None:
    from prunelib.experiments.runs import compute, profile_root, stored
    from prunelib.experiments.executors import run_threads
    from prunelib.experiments.suites import core_suite
    from prunelib.model.provenance import now, versions, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default=None, help="comma-separated run names, in the order to compute them")
    args = parser.parse_args()
    out = args.out or OUT / f"thread_effect-{args.model}.json"
    record = json.loads(out.read_text()) if out.exists() else {
        "what": "core-table runs (seed 0, cpu protocol) computed here with 1 and 2 threads, beside the stored records",
        "runs": {}}
    root = profile_root("cpu")
    specs = {spec.name: spec for spec in core_suite("cpu", model=args.model, seeds=(0,))}
    if args.only:
        unknown = set(args.only.split(",")) - set(specs)
        if unknown:
            raise SystemExit(f"unknown runs {sorted(unknown)}; the core table has {', '.join(specs)}")
        specs = {name: specs[name] for name in args.only.split(",")}
    for spec in specs.values():
        reference = stored(spec, root=root)
        if reference is None or "stale" in reference:
            print(f"skip {spec.name}: its stored record is {'stale' if reference else 'missing'}")
            continue
        entry = record["runs"].setdefault(spec.name, {
            "run": spec.definition(), "key": spec.key, "code": spec.code,
            "stored": {"ppl": reference["ppl"], "threads": reference["threads"], "code": reference["code"],
                       "versions": reference["versions"], "finished": reference["finished"]},
            "threads": {}})
        for threads in THREADS:
            if str(threads) in entry["threads"]:
                continue
            print(f"run {spec.name} with {threads} thread(s)", flush=True)
            with run_threads(threads):
                result = compute(spec, quiet=True)
            entry["threads"][str(threads)] = {
                "ppl": result["ppl"], "sparsity": result["sparsity"], "threads": result["threads"],
                "prune_seconds": result["prune"]["prune_seconds"], "seconds": result["seconds"],
                "versions": versions(), "finished": now()}
            write_json(out, record)
            print(f"  {spec.name}: stored {reference['ppl']:.6f}, here with {threads}: {result['ppl']:.6f}", flush=True)


if __name__ == "__main__":
    main()
