"""Cost of the block-by-block calibration walk, before and after the capture rewrite.

Commit c33ea1b rewrote :func:`prunelib.model.walk.capture_block_inputs`. Before (a1b5076) it ran the
model until block 0 and recorded block 0's arguments, which were then replayed to every block;
after, every block is replaced by a stub that records that block's own arguments (shared tensors
by reference) and skips the block. This script measures, for each model and each source tree:

* ``forward``   one plain forward pass over the calibration set (``model(batch, use_cache=False)``
  per batch of 1, under ``torch.no_grad``), the yardstick;
* ``capture``   ``prunelib.model.walk.capture_block_inputs`` alone;
* ``walk``      ``prunelib.model.walk.sequential(model, batches, None)``, the walk with no visit;
* ``wanda``     ``prunelib.model.prune.prune_model(model, calib, method="wanda", sparsity=0.5)``;
* ``sparsegpt`` the same with ``method="sparsegpt"``.

Each measurement runs in a fresh subprocess with ``PYTHONPATH=<tree>`` (the tree's
``prunelib.__file__`` is recorded) and ``torch.set_num_threads(1)``. The subprocess loads the
model, draws the C4 calibration windows, runs a tiny untimed warm-up forward (1 x 16 tokens, so
lazy imports and kernel initialisation are not billed to the first measurement), then resets
the kernel's peak-RSS mark (``/proc/self/clear_refs``) and times the measurement with
``time.perf_counter`` (also CPU seconds, steadier than wall time on a loaded machine). Peak
memory is ``ru_maxrss`` at the end minus the resident set size just before the measurement, i.e.
what the measurement adds on top of the loaded model and calibration tokens; glibc's
``malloc_trim(0)`` first returns the heap that loading freed, which the process would otherwise
reuse without its RSS growing (gemma3-270m's loading frees ~1.4 GB).

Results accumulate in ``results/benchmarks/walk_cost.json``; a measurement already there for the
same model, tree commit and calibration is skipped, so the script resumes where it stopped.
``--figure`` only redraws ``results/benchmarks/walk_cost.png`` from the JSON.

    git worktree add /tmp/prunelib-old a1b5076
    .venv/bin/python benchmarks/walk_cost.py                          # both models, both trees
    .venv/bin/python benchmarks/walk_cost.py --model smollm2-135m --tree after=.
    git worktree remove /tmp/prunelib-old
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "results" / "benchmarks" / "walk_cost.json"
OUT_PNG = ROOT / "results" / "benchmarks" / "walk_cost.png"
MODELS = ("smollm2-135m", "gemma3-270m")
MEASUREMENTS = ("forward", "capture", "walk", "wanda", "sparsegpt")
DEFAULT_TREES = (("before", Path("/tmp/prunelib-old")), ("after", ROOT))
MARK = "WALK_COST_RESULT "
PROTOCOL = 2  #: 2: malloc_trim before the measurement (1 measured RSS deltas on an untrimmed heap)
LOAD_NOTE = (
    "The machine (2 CPU cores) was loaded during these measurements by another job running with 2 "
    "threads (scripts/gemma_core.sh: prunelib prune on gemma3-270m), so wall times are inflated and "
    "noisy; cpu_seconds (user + system time of the measuring process) are steadier. Compare before/after "
    "ratios, not absolute seconds."
)


# ---------------------------------------------------------------- the measuring subprocess


def _tensor_bytes(obj, seen: set, depth: int = 0) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` (tuples, lists, dicts,
    dataclass fields); a storage shared by several entries is counted once."""
    import torch

    if depth > 6:
        return 0
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        key = storage.data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(o, seen, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return sum(_tensor_bytes(o, seen, depth + 1) for o in obj.values())
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_tensor_bytes(getattr(obj, f), seen, depth + 1) for f in obj.__dataclass_fields__ if f != "index_of")
    return 0


def _count_tensor_refs(obj, depth: int = 0) -> int:
    """Tensor references reachable from ``obj`` (shared ones counted each time)."""
    import torch

    if depth > 6:
        return 0
    if isinstance(obj, torch.Tensor):
        return 1
    if isinstance(obj, (tuple, list)):
        return sum(_count_tensor_refs(o, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return sum(_count_tensor_refs(o, depth + 1) for o in obj.values())
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_count_tensor_refs(getattr(obj, f), depth + 1) for f in obj.__dataclass_fields__ if f != "index_of")
    return 0


#: where each name lives in the layered tree, and in trees from before the layers (the old trees
#: this script compares had flat modules)
_HOMES = {"load_model": ("prunelib.model.loading", "prunelib.models"),
          "decoder_blocks": ("prunelib.model.architecture", "prunelib.models"),
          "capture_block_inputs": ("prunelib.model.walk", "prunelib.walk"),
          "sequential": ("prunelib.model.walk", "prunelib.walk"),
          "prune_model": ("prunelib.model.prune", "prunelib.prune"),
          **{name: ("prunelib.model.provenance", "prunelib.provenance")
             for name in ("reset_peak_memory", "resident_memory_bytes", "versions", "peak_memory_bytes")}}


def _lib(name: str):
    """``name`` from the prunelib tree on the path, whichever layout it has."""
    import importlib

    new, old = _HOMES[name]
    try:
        return getattr(importlib.import_module(new), name)
    except ModuleNotFoundError:
        return getattr(importlib.import_module(old), name)


def _malloc_trim() -> bool:
    """Give freed heap pages back to the kernel (glibc), so that RSS counts live memory only."""
    import ctypes
    import ctypes.util

    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def child(spec: dict) -> dict:
    """Run one measurement in this (fresh) process and return its record."""
    import gc
    import resource

    import torch

    torch.set_num_threads(1)
    import prunelib

    result = {"prunelib_file": prunelib.__file__, "threads": torch.get_num_threads()}
    from prunelib import data
    load_model, versions = _lib("load_model"), _lib("versions")
    reset_peak_memory, resident_memory_bytes = _lib("reset_peak_memory"), _lib("resident_memory_bytes")

    result["versions"] = {k: v for k, v in versions().items() if k in ("python", "torch", "transformers", "gguf", "prunelib", "platform")}
    start = time.perf_counter()
    try:
        decoder_blocks = _lib("decoder_blocks")
        model, tokenizer = load_model(spec["model"], quiet=True)
        blocks = decoder_blocks(model)  # the old tree knows a fixed list of families
    except Exception as error:  # noqa: BLE001 - an unsupported model is a result, not a failure
        result.update(status="unsupported", error=f"{type(error).__name__}: {error}"[:500])
        return result
    result["load_seconds"] = time.perf_counter() - start
    result["model"] = {
        "model_type": model.config.model_type,
        "blocks": len(blocks),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.config.vocab_size,
        "hidden_size": model.config.hidden_size,
        "layer_types": sorted(set(getattr(model.config, "layer_types", None) or [])) or None,
    }
    calib, source = data.c4_calibration(tokenizer, spec["nsamples"], spec["seqlen"], spec["seed"])
    root = data.data_dir()
    if source.get("path") and root is not None and os.path.isabs(source["path"]):  # trees before records went relative
        source["path_relative_to_data_root"] = os.path.relpath(source["path"], root)
        source["data_root"] = str(root)
    result["calibration"] = {**source, "shape": list(calib.shape)}
    batches = list(calib.split(1))

    with torch.no_grad():  # untimed warm-up: lazy imports, kernel set-up
        model(calib[:1, :16], use_cache=False)
    gc.collect()
    # Loading (GGUF dequantisation) frees far more than it keeps, and glibc keeps the freed heap
    # resident: without a trim, later allocations reuse it and the RSS delta reads ~0.
    rss_untrimmed = resident_memory_bytes()
    _malloc_trim()

    what = spec["measurement"]
    rss_before = resident_memory_bytes()
    result["rss_before_trim_bytes"] = rss_untrimmed
    maxrss_before_reset = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reset_peak_memory("cpu")
    maxrss_after_reset = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    keep = None
    if what == "forward":
        with torch.no_grad():
            for batch in batches:
                model(batch, use_cache=False)
    elif what == "capture":
        capture_block_inputs = _lib("capture_block_inputs")

        with torch.no_grad():
            keep = capture_block_inputs(model, batches, torch.device("cpu"))
    elif what == "walk":
        sequential = _lib("sequential")

        keep = sequential(model, batches, None, quiet=True)
    elif what in ("wanda", "sparsegpt"):
        prune_model = _lib("prune_model")

        keep = prune_model(model, calib, method=what, sparsity=0.5, quiet=True)
    else:
        raise ValueError(what)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak_memory_bytes = _lib("peak_memory_bytes")

    vmhwm = peak_memory_bytes("cpu")
    result.update(
        status="ok",
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        rss_before_bytes=rss_before,
        maxrss_before_reset_bytes=maxrss_before_reset,
        maxrss_after_reset_bytes=maxrss_after_reset,
        maxrss_after_bytes=maxrss_after,
        vmhwm_after_bytes=vmhwm,
        peak_added_bytes=maxrss_after - rss_before,
        # ru_maxrss is only per measurement if clear_refs reset the process's peak mark:
        peak_reset_worked=maxrss_after_reset < maxrss_before_reset or maxrss_before_reset <= rss_before,
    )
    if what == "capture":
        result["capture"] = {
            "calls": len(keep),
            "retained_tensor_bytes": _tensor_bytes(keep, set()),
            "tensor_references": _count_tensor_refs(keep),
        }
    return result


# ---------------------------------------------------------------- the driver


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, check=True).stdout.strip()


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _portable(value):
    """The record without this machine's absolute paths: data files stay named relative to the
    data root (``path_relative_to_data_root``), trees by their commit, prunelib by its path in the tree."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("path", "data_root") and isinstance(item, str) and os.path.isabs(item):
                continue
            if key == "prunelib_file" and isinstance(item, str):
                item = "/".join(Path(item).parts[-2:])
            out[key] = _portable(item)
        return out
    if isinstance(value, list):
        return [_portable(item) for item in value]
    return value


def _save(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_portable(record), indent=2) + "\n")
    os.replace(temporary, path)


def _data_root() -> str | None:
    sys.path.insert(0, str(ROOT))
    from prunelib import data  # the checkout's own: only to find the data directory

    root = data.data_dir()
    return str(root) if root else None


def _key(model: str, label: str, measurement: str) -> str:
    return f"{model}/{label}/{measurement}"


def run_all(args) -> dict:
    record = _load(args.json)
    calibration = {"nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed}
    if record.get("settings", {}).get("protocol", PROTOCOL) != PROTOCOL:
        sys.exit(f"{args.json} was measured under protocol {record['settings'].get('protocol')}, not {PROTOCOL}; "
                 "use --json for another file")
    if record.get("settings", {}).get("calibration") not in (None, calibration):
        sys.exit(f"{args.json} holds results for calibration {record['settings']['calibration']}, not {calibration}; "
                 "use --json for another file")
    data_root = _data_root()
    record.setdefault("description", __doc__.split("\n\n")[0])
    record["settings"] = {
        "calibration": calibration,
        "batch_size": 1,
        "threads": 1,
        "dtype": "float32 (load_model's 'auto' on CPU)",
        "warm_up": "one untimed forward of 1 x 16 tokens before every measurement",
        "peak_memory": "ru_maxrss at the end of the measurement minus VmRSS just before it; before it, glibc's "
                       "malloc_trim(0) returns the heap freed by loading to the kernel (else RSS already holds it and "
                       "the delta reads ~0 on gemma3-270m) and /proc/self/clear_refs resets the process's peak-RSS "
                       "mark (checked: peak_reset_worked)",
        "protocol": PROTOCOL,
        "data_root": data_root,
        "machine": {"cpu_count": os.cpu_count(), "load_note": LOAD_NOTE},
    }
    trees = record.setdefault("trees", {})
    results = record.setdefault("results", {})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if data_root:
        env["PRUNELIB_DATA_DIR"] = data_root
    for label, tree in args.tree:
        tree = tree.resolve()
        if not any((tree / "prunelib" / where / "walk.py").is_file() for where in ("", "model")):
            print(f"skip tree {label}: {tree} has no prunelib/model/walk.py", file=sys.stderr)
            continue
        commit = _git(tree, "rev-parse", "HEAD")
        dirty = _git(tree, "status", "--porcelain", "--", "prunelib")
        if label in trees and trees[label]["commit"] != commit:
            sys.exit(f"tree '{label}' was measured at {trees[label]['commit'][:7]}, now {commit[:7]}: use another label")
        trees[label] = {"path": str(tree), "commit": commit, "subject": _git(tree, "log", "-1", "--format=%s")[:120],
                        "prunelib_dirty": bool(dirty)}
        for model in args.model:
            for measurement in args.measure:
                key = _key(model, label, measurement)
                if key in results and results[key].get("status") in ("ok", "unsupported"):
                    continue
                spec = {"model": model, "measurement": measurement, **calibration}
                print(f"[{time.strftime('%H:%M:%S')}] {key}", file=sys.stderr, flush=True)
                load_before = os.getloadavg()
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                    env={**env, "PYTHONPATH": str(tree)}, cwd=str(tree), capture_output=True, text=True,
                )
                lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
                if proc.returncode != 0 or not lines:
                    print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
                    results[key] = {"status": "failed", "returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:]}
                    _save(args.json, record)
                    continue
                result = json.loads(lines[-1][len(MARK):])
                result.update(model_name=model, tree=label, commit=commit, measurement=measurement,
                              subprocess_seconds=time.perf_counter() - start,
                              loadavg_1min_before=load_before[0], loadavg_1min_after=os.getloadavg()[0])
                if not Path(result["prunelib_file"]).resolve().is_relative_to(tree):
                    sys.exit(f"{key}: imported {result['prunelib_file']}, not the tree {tree}")
                results[key] = result
                if result["status"] == "ok":
                    print(f"    {result['seconds']:.2f} s wall, {result['cpu_seconds']:.2f} s cpu, "
                          f"+{result['peak_added_bytes'] / 2**20:.0f} MiB peak", file=sys.stderr)
                else:  # the tree cannot load this model: every measurement is unsupported
                    print(f"    unsupported: {result['error'][:200]}", file=sys.stderr)
                    for other in args.measure:
                        results.setdefault(_key(model, label, other), {**result, "measurement": other})
                _save(args.json, record)
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _save(args.json, record)
    return record


def table(record: dict) -> str:
    results = record.get("results", {})
    labels = list(record.get("trees", {}))
    lines = ["| model | measurement | " + " | ".join(f"{l} s (cpu s) | {l} peak MiB" for l in labels) + " |",
             "|---|---|" + "---|---|" * len(labels)]
    for model in MODELS:
        for m in MEASUREMENTS:
            cells = []
            for label in labels:
                r = results.get(_key(model, label, m))
                if r is None or r.get("status") == "failed":
                    cells += ["-", "-"]
                elif r["status"] == "unsupported":
                    cells += ["unsupported", "-"]
                else:
                    cells += [f"{r['seconds']:.2f} ({r['cpu_seconds']:.2f})", f"{r['peak_added_bytes'] / 2**20:.0f}"]
            if any(c != "-" for c in cells):
                lines.append(f"| {model} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results = record["results"]
    labels = list(record["trees"])
    series = [(model, label) for model in MODELS for label in labels
              if any(_key(model, label, m) in results for m in MEASUREMENTS)]
    colours = {("smollm2-135m", "before"): "#9ecae1", ("smollm2-135m", "after"): "#2171b5",
               ("gemma3-270m", "before"): "#fdae6b", ("gemma3-270m", "after"): "#d94801"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    x = np.arange(len(MEASUREMENTS))
    width = 0.8 / max(len(series), 1)
    for panel, (ax, field, ylabel) in enumerate(zip(
            axes, ("seconds", "peak_added_bytes"), ("wall seconds (log scale)", "peak RSS added, MiB (log scale)"))):
        for i, (model, label) in enumerate(series):
            offset = (i - (len(series) - 1) / 2) * width
            for j, m in enumerate(MEASUREMENTS):
                r = results.get(_key(model, label, m))
                xpos = x[j] + offset
                if r is None or r.get("status") == "failed":
                    continue
                if r["status"] == "unsupported":
                    ax.text(xpos, 0.02, "unsupported", rotation=90, ha="center", va="bottom", fontsize=7,
                            color="0.4", transform=ax.get_xaxis_transform())
                    continue
                value = r[field] if field == "seconds" else max(r[field], 0) / 2**20
                ax.bar(xpos, max(value, 1e-3), width, color=colours.get((model, label), f"C{i}"),
                       edgecolor="black", linewidth=0.4)
                text = f"{value:.2f}" if field == "seconds" and value < 10 else f"{value:.0f}"
                ax.text(xpos, max(value, 1e-3) * 1.08, text, ha="center", va="bottom", fontsize=6.5, rotation=90)
        ax.set_yscale("log")
        ax.set_xticks(x, MEASUREMENTS)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", which="major", alpha=0.3)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 4)
        ax.set_title(("Time" if panel == 0 else "Peak memory added") + " per measurement")
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours.get(s, f"C{i}"), edgecolor="black", linewidth=0.4,
                     label=f"{s[0]}, {s[1]} ({record['trees'][s[1]]['commit'][:7]})") for i, s in enumerate(series)]
    fig.legend(handles=handles, fontsize=8.5, loc="lower center", ncol=len(handles), frameon=False)
    cal = record["settings"]["calibration"]
    fig.suptitle(f"Calibration walk cost before/after the per-block capture (C4, {cal['nsamples']} x {cal['seqlen']} "
                 f"tokens, seed {cal['seed']}, batch 1, 1 thread, float32 CPU)\n"
                 "machine loaded by another 2-thread job during the runs: wall times are noisy", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _tree(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep:
        path = label
        label = _git(Path(path), "rev-parse", "--short", "HEAD")
    return label, Path(path)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(MARK + json.dumps(child(json.loads(sys.argv[2]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help=f"model name (repeatable; default {' and '.join(MODELS)})")
    parser.add_argument("--tree", action="append", type=_tree, metavar="[LABEL=]PATH",
                        help="a prunelib checkout (repeatable; default before=/tmp/prunelib-old after=this checkout)")
    parser.add_argument("--measure", action="append", choices=MEASUREMENTS, help="default: all")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=OUT_JSON)
    parser.add_argument("--png", type=Path, default=OUT_PNG)
    parser.add_argument("--figure", action="store_true", help="only redraw the figure and print the table")
    args = parser.parse_args()
    args.model = args.model or list(MODELS)
    args.tree = args.tree or list(DEFAULT_TREES)
    args.measure = args.measure or list(MEASUREMENTS)
    record = _load(args.json) if args.figure else run_all(args)
    figure(record, args.png)
    print(table(record))
    print(f"\n{args.json}\n{args.png}")


if __name__ == "__main__":
    main()
