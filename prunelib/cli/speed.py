"""``prunelib speed``: speed of sparse inference, written as JSON (with provenance) plus a Markdown table.

    prunelib speed gpu --out results/speed/gpu_24.json [--quick]
    prunelib speed cpu-csr [--out results/speed/cpu_csr.json]

``gpu`` times one linear layer dense versus 2:4 over Llama-2-7B and SmolLM2 shapes, token
counts, float16/bfloat16 and both backends, then a random-weight Llama-2-7B end to end; it is
sized for under 8 minutes on an H200 (``--quick``: under 2). Without a CUDA GPU of compute
capability 8.0 or more it says so and exits 0, writing nothing. ``cpu-csr`` times dense versus
CSR matmuls on this CPU across sparsities. Bad inputs exit 2 with one line on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..core.masks import check_sparsity
from ..errors import PrunelibError
from ..eval.speed.csr import CSR_SHAPES, CSR_TOKENS, SPARSITIES, csr_break_even, csr_sweep, group_rows
from ..eval.speed.linear import DECODE_TOKENS, PREFILL_TOKENS, SWEEP_DTYPES, linear_sweep
from ..eval.speed.llama import LLAMA2_7B, RANDOM_WEIGHTS, end_to_end
from ..eval.speed.semi import BACKENDS, cuda_problem
from ..eval.speed.timing import error_text
from ..model.provenance import now, versions, write_json
from ..report.speed import cpu_environment, csr_table, end_to_end_table, gpu_environment, linear_table

#: what one ``gpu`` run does; seconds are a budget from the start, checked between measurements
GPU_PLANS = {
    "full": {"tokens": PREFILL_TOKENS + DECODE_TOKENS, "dtypes": SWEEP_DTYPES, "backends": BACKENDS,
             "min_run_time": 0.2, "sweep_budget_s": 180, "layers": None, "prompts": (512, 2048),
             "new_tokens": 128, "repeats": 3, "e2e_backends": BACKENDS, "budget_s": 390},
    "quick": {"tokens": (1, 2048), "dtypes": ("float16",), "backends": BACKENDS,
              "min_run_time": 0.05, "sweep_budget_s": 40, "layers": 8, "prompts": (512,),
              "new_tokens": 32, "repeats": 2, "e2e_backends": ("cusparselt",), "budget_s": 90},
}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise PrunelibError(f"expected comma-separated integers, got '{text}'") from None
    if min(values) < 1:
        raise PrunelibError(f"expected positive integers, got '{text}'")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise PrunelibError(f"expected comma-separated numbers, got '{text}'") from None


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    shapes = []
    for part in text.split(","):
        try:
            out_features, in_features = (int(side) for side in part.lower().split("x"))
        except ValueError:
            raise PrunelibError(f"shape must look like 576x1536 (out x in), got '{part}'") from None
        shapes.append((out_features, in_features))
    return tuple(shapes)


def register(verbs) -> None:
    """Add ``speed gpu`` and ``speed cpu-csr`` to the ``prunelib`` command."""
    parser = verbs.add_parser("speed", help="2:4 speed on a GPU, or CSR speed on this CPU",
                              description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="speed_command", required=True)

    gpu = commands.add_parser("gpu", help="2:4 semi-structured speed on an NVIDIA GPU (sm80+)")
    gpu.add_argument("--out", type=Path, default=Path("results/speed/gpu_24.json"), help="JSON file; the .md goes next to it")
    gpu.add_argument("--quick", action="store_true", help="fewer combinations and an 8-layer model (under 2 minutes)")
    gpu.add_argument("--layers", type=int, default=None, help="decoder layers of the end-to-end model (default: 32, quick: 8)")
    gpu.add_argument("--budget-s", type=float, default=None, help="stop starting measurements after this many seconds")
    gpu.add_argument("--skip-e2e", action="store_true", help="only the linear-layer sweep")
    gpu.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    csr = commands.add_parser("cpu-csr", help="dense versus CSR matmul on this CPU across sparsities")
    csr.add_argument("--out", type=Path, default=Path("results/speed/cpu_csr.json"), help="JSON file; the .md goes next to it")
    csr.add_argument("--shapes", default=",".join(f"{o}x{i}" for o, i in CSR_SHAPES), help="out x in, comma-separated")
    csr.add_argument("--tokens", default=",".join(map(str, CSR_TOKENS)), help="activation rows, comma-separated")
    csr.add_argument("--sparsities", default=",".join(map(str, SPARSITIES)), help="comma-separated, each in [0, 1)")
    csr.add_argument("--threads", type=int, default=None, help="torch threads (default torch.get_num_threads())")
    csr.add_argument("--min-run-time", type=float, default=0.2, help="seconds per timing (blocked_autorange)")
    csr.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(handler=lambda args, argv: run_gpu(args, argv) if args.speed_command == "gpu"
                        else run_cpu_csr(args, argv))


def _check_out(path: Path, overwrite: bool) -> None:
    if path.suffix != ".json":
        raise PrunelibError(f"--out must be a .json file, got {path}")
    if path.exists() and not overwrite:
        raise PrunelibError(f"{path} already exists; pass --overwrite to replace it")


def _write(path: Path, record: dict, markdown: str) -> None:
    write_json(path, record)
    path.with_suffix(".md").write_text(markdown)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sweep_progress(row: dict) -> None:
    what = f"{row['model']} {row['layer']} {row['out_features']}x{row['in_features']} tokens={row['tokens']} {row['dtype']} {row['backend']}"
    _say(f"{what}: " + (row["error"] if "error" in row else
                        f"dense {row['dense_us']:.1f} µs, 2:4 {row['sparse_us']:.1f} µs, {row['speedup']:.2f}x"))


def _gpu_markdown(record: dict) -> str:
    gpu = record["environment"]
    parts = [f"# 2:4 semi-structured sparsity on {gpu['gpu']} ({gpu['capability']})", "",
             f"torch {record['versions'].get('torch')}, CUDA {gpu['torch_cuda']}, driver {gpu['driver']}, "
             f"cuSPARSELt {gpu['cusparselt_version']}; {record['created']}; `{record['command']}`", "",
             "## One linear layer, y = x @ W.T (median µs, speedup = dense / 2:4)", "", linear_table(record["linear_sweep"])]
    e2e = record.get("end_to_end")
    if isinstance(e2e, dict) and ("dense" in e2e or "error" in e2e):
        parts += ["", f"## Random-weight Llama-2-7B shape ({record['layers']} layers), "
                  "float16, batch 1, greedy decode with KV cache", "", f"Note: {RANDOM_WEIGHTS}.", ""]
        parts.append(end_to_end_table(e2e) if "dense" in e2e else f"error: {e2e['error']}")
    return "\n".join(parts) + "\n"


def run_gpu(args, argv: list[str]) -> int:
    problem = cuda_problem()
    if problem:
        print(problem)
        return 0
    _check_out(args.out, args.overwrite)
    plan = GPU_PLANS["quick" if args.quick else "full"]
    budget = args.budget_s if args.budget_s is not None else plan["budget_s"]
    layers = args.layers if args.layers is not None else plan["layers"]
    start = time.monotonic()
    record = {"command": " ".join(["prunelib", *argv]), "created": now(), "versions": versions(),
              "environment": gpu_environment(), "quick": args.quick, "budget_s": budget,
              "layers": layers or LLAMA2_7B["num_hidden_layers"],
              "plan": {key: value for key, value in plan.items() if key != "budget_s"}}
    _say(f"{record['environment']['gpu']}: linear sweep")
    record["linear_sweep"] = linear_sweep(tokens=plan["tokens"], dtypes=plan["dtypes"], backends=plan["backends"],
                                          min_run_time=plan["min_run_time"], progress=_sweep_progress,
                                          deadline=start + min(plan["sweep_budget_s"], budget))
    record["end_to_end"] = {"status": "skipped (--skip-e2e)" if args.skip_e2e else "pending"}
    _write(args.out, record, _gpu_markdown(record))  # the sweep survives a crash in what follows
    if not args.skip_e2e:
        _say("end to end: random-weight Llama-2-7B shape")
        try:
            record["end_to_end"] = end_to_end(layers, prompts=plan["prompts"], new_tokens=plan["new_tokens"],
                                              repeats=plan["repeats"], backends=plan["e2e_backends"],
                                              deadline=start + budget, progress=_say)
        except Exception as error:  # noqa: BLE001 - keep the sweep's results and say what failed
            record["end_to_end"] = {"error": error_text(error)}
            _say(f"end to end failed: {record['end_to_end']['error']}")
    record["seconds"] = time.monotonic() - start
    _write(args.out, record, _gpu_markdown(record))
    failed = sum("error" in row for row in record["linear_sweep"])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}: {len(record['linear_sweep'])} linear combinations "
          f"({failed} with errors), {record['seconds']:.0f} s")
    return 0


def run_cpu_csr(args, argv: list[str]) -> int:
    shapes, tokens, sparsities = _shapes(args.shapes), _ints(args.tokens), _floats(args.sparsities)
    for sparsity in sparsities:
        check_sparsity(sparsity)
    if min(side for shape in shapes for side in shape) < 1:
        raise PrunelibError(f"shapes must be positive, got {args.shapes}")
    _check_out(args.out, args.overwrite)
    if args.threads is not None:
        if args.threads < 1:
            raise PrunelibError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    start = time.monotonic()
    rows = []
    for out_features, in_features in shapes:
        for count in tokens:
            group = csr_sweep(out_features, in_features, count, sparsities, min_run_time=args.min_run_time)
            for row in group:
                _say(f"{out_features}x{in_features} tokens={count} sparsity={row['sparsity']:.2f}: dense "
                     f"{row['dense_us']:,.1f} µs, CSR {row['csr_us']:,.1f} µs")
            rows += group
    break_even = {f"{o}x{i}, {t} tokens": csr_break_even(group) for (o, i, t), group in group_rows(rows).items()}
    record = {"command": " ".join(["prunelib", *argv]), "created": now(), "versions": versions(),
              "environment": cpu_environment(), "dtype": "float32", "rows": rows, "break_even": break_even,
              "seconds": time.monotonic() - start}
    environment = record["environment"]
    markdown = (f"# Dense versus CSR matmul on CPU (float32, y = x @ W.T)\n\n{environment['cpu']}, "
                f"{environment['threads']} threads, torch {record['versions'].get('torch')}; {record['created']}; "
                f"`{record['command']}`\n\n{csr_table(rows)}\n")
    _write(args.out, record, markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}; break-even sparsity: "
          + ", ".join(f"{key}: {value}" for key, value in break_even.items()))
    return 0
