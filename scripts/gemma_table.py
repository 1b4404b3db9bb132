"""Print the Gemma-3-270M core table (markdown) from the run records of scripts/gemma_core.sh.

Usage: python scripts/gemma_table.py [results dir] > results/gemma3-270m/table.md
Every number comes from the JSON records; runs not yet computed are listed as missing.
"""

import json
import sys
from pathlib import Path

RUNS = ("dense", "magnitude-50", "wanda-50", "sparsegpt-50", "magnitude-2of4", "wanda-2of4", "sparsegpt-2of4")


def main(root: Path) -> None:
    records = {name: json.loads((root / f"{name}.json").read_text()) for name in RUNS if (root / f"{name}.json").is_file()}
    if not records:
        sys.exit(f"no run records in {root}")
    first = next(iter(records.values()))
    model, evaluation = first["model"], first["eval"]
    calibration = next((r["calibration"] for r in records.values() if "calibration" in r), None)
    print(f"# {model['name']}: the core table (cpu protocol)\n")
    print(f"- Model: {model['description']} (`{model.get('gguf_file')}`, sha256 `{model.get('gguf_sha256', '-')}`)")
    print(f"- Perplexity on WikiText-2: {json.dumps(evaluation)}")
    if calibration:
        print(f"- Calibration: {json.dumps(calibration)}")
    print(f"- Versions: {json.dumps(first['versions'])}\n")
    print("| run | ppl | sparsity | prune s | eval s |")
    print("|---|---:|---:|---:|---:|")
    for name in RUNS:
        r = records.get(name)
        if r is None:
            print(f"| {name} | missing | | | |")
        else:
            print(f"| {name} | {r['ppl']:.2f} | {r['sparsity']:.4f} | {r['prune_seconds']:.0f} | {r['eval_seconds']:.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/gemma3-270m"))
