"""Storage of the embedded model's pruned linear weights in dense, CSR, bitmask and 2:4 formats.

Every prunable linear of SmolLM2-135M (the 210 matrices inside the 30 decoder blocks) is
pruned by magnitude at 0%, 30%, 50%, 70% and 90% with ``group="row"``, so that every row of a
matrix has exactly ``floor(cols * sparsity)`` zeros, and at 2:4. Values are cast to float16
after pruning, every matrix is encoded in every format that applies (the N:M format only for
2:4), decoded and compared with ``torch.equal``, and the measured bytes are checked against
the closed forms of :mod:`prunelib.storage.formats`. Writes ``results/formats/storage.json`` and
``storage.md``; an existing JSON is reused (only the table is rebuilt) unless ``--force``.

    python benchmarks/formats_table.py          # about a minute on one CPU core
    python benchmarks/formats_table.py --force  # measure again
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "formats"
MODEL = "smollm2-135m"
#: pattern label -> options of prunelib.core.magnitude
PATTERNS = {
    "0%": {"sparsity": 0.0},
    "30%": {"sparsity": 0.3},
    "50%": {"sparsity": 0.5},
    "70%": {"sparsity": 0.7},
    "90%": {"sparsity": 0.9},
    "2:4": {"nm": "2:4"},
}


def measure() -> dict:
    import torch

    from prunelib.core.magnitude import magnitude
    from prunelib.core.masks import NM
    from prunelib.model.architecture import prunable_linears, weight_matrix
    from prunelib.model.loading import load_model
    from prunelib.model.provenance import model_record, now, versions
    from prunelib.storage import formats

    start = time.perf_counter()
    model, _ = load_model(MODEL, quiet=True)
    originals = {name: weight_matrix(module).detach() for name, module in prunable_linears(model).items()}
    zeros = {  # the dequantized GGUF weights hold exact zeros of their own, before any pruning
        "float32": sum(int((w == 0).sum()) for w in originals.values()),
        "float16": sum(int((w.to(torch.float16) == 0).sum()) for w in originals.values()),
    }
    rows = []
    for label, options in PATTERNS.items():
        print(f"pattern {label}", file=sys.stderr)
        nm = NM.parse(options["nm"]) if "nm" in options else None
        group = {} if nm else {"group": "row"}
        pruned = {
            name: magnitude(weight, sparsity=options.get("sparsity", 0.0), nm=nm, **group).weight.to(torch.float16)
            for name, weight in originals.items()
        }
        names = ["dense", "csr", "bitmask"] + (["nm"] if nm else [])
        # verify=True decodes every matrix and raises unless it equals the input exactly
        for row in formats.storage_report(pruned, names, torch.float16, nm=nm, verify=True):
            assert row["bytes"] == row["formula_bytes"], row
            rows.append({"pattern": label, **row, "sparsity": 1 - row["nnz"] / row["numel"]})
        del pruned
    shapes = sorted({tuple(w.shape) for w in originals.values()})
    break_even = [
        {"shape": list(shape), "csr_break_even_sparsity_fp16": formats.csr_break_even_sparsity(*shape, 2),
         "index_dtype": str(formats.index_dtype(shape[1])).removeprefix("torch."),
         "matrices": sum(tuple(w.shape) == shape for w in originals.values())}
        for shape in shapes
    ]
    return {
        "description": "bytes of the prunable linear weights in each storage format, values in float16",
        "pruning": "prunelib.core.magnitude on the float32 weights, group='row' for the unstructured "
        "sparsities (exactly floor(cols * s) zeros per row), N:M for 2:4; then cast to float16",
        "value_dtype": "float16",
        "zeros_before_pruning": zeros,
        "rows": rows,
        "csr_break_even": break_even,
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "model": model_record(MODEL, model),
        "versions": versions(),
        "time": now(),
        "command": shlex.join(["python", *sys.argv]),
    }


def table(record: dict) -> str:
    lines = [
        "| pattern | format | sparsity | bytes (measured) | bytes (formula) | bits / weight | vs dense fp16 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        name = f"nm {r['nm']}" if r["format"] == "nm" else r["format"]
        lines.append(
            f"| {r['pattern']} | {name} | {r['sparsity']:.4f} | {r['bytes']:,} | {r['formula_bytes']:,} | "
            f"{r['bits_per_weight']:.2f} | {r['compression']:.3f}x |"
        )
    first, m, zeros = record["rows"][0], record["model"], record["zeros_before_pruning"]
    even = ", ".join(
        f"{b['shape'][0]}x{b['shape'][1]} ({b['matrices']} matrices, {b['index_dtype']} indices): "
        f"{b['csr_break_even_sparsity_fp16']:.4f}"
        for b in record["csr_break_even"]
    )
    lines += [
        "",
        f"{first['matrices']} prunable linear matrices of {m['name']} ({first['numel']:,} weights), "
        f"pruned by magnitude ({record['pruning']}). Sparsity is the measured fraction of zeros in float16: "
        f"the dequantized weights already hold {zeros['float32']:,} exact zeros ({zeros['float16']:,} after the cast "
        "to float16), and floor(cols * s) zeros per row is slightly under s. Every matrix decodes exactly "
        "(torch.equal) and the measured bytes equal the closed-form bytes.",
        "",
        f"Sparsity above which CSR is smaller than dense float16, per matrix shape: {even}.",
        "",
        f"Measured {record['time']} in {record['seconds']:.0f} s ({record['threads']} threads), "
        f"torch {record['versions']['torch']}, prunelib {record['versions']['prunelib']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="measure again even if storage.json exists")
    args = parser.parse_args()
    target = OUT / "storage.json"
    if args.force or not target.exists():
        record = measure()
        OUT.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=2) + "\n")
    else:
        print(f"{target.relative_to(ROOT)} exists; rebuilding the table only (--force to measure again)", file=sys.stderr)
        record = json.loads(target.read_text())
    text = table(record)
    (OUT / "storage.md").write_text("# Sparse storage formats (generated by benchmarks/formats_table.py)\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
