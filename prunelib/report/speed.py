"""Provenance of the machine a speed number came from, and Markdown tables of the results."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import torch

from ..eval.speed.csr import csr_break_even, group_rows


def driver_version() -> tuple[str | None, str]:
    """``(NVIDIA driver version, where it came from)``: nvidia-smi, else NVML through pynvml."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip().splitlines()[0], "nvidia-smi"
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return (version.decode() if isinstance(version, bytes) else str(version)), "pynvml"
    except Exception:  # noqa: BLE001 - pynvml missing or NVML not loadable
        return None, "unavailable (no nvidia-smi, no pynvml)"


def gpu_environment() -> dict:
    """GPU name and capability, driver, CUDA runtime of torch, cuSPARSELt version and availability."""
    properties = torch.cuda.get_device_properties(0)
    driver, source = driver_version()
    cusparselt = getattr(torch.backends, "cusparselt", None)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "capability": "sm{}{}".format(*torch.cuda.get_device_capability(0)),
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "multiprocessors": properties.multi_processor_count,
        "gpu_count": torch.cuda.device_count(),
        "driver": driver, "driver_source": source,
        "torch_cuda": torch.version.cuda,
        "cusparselt_available": bool(cusparselt and cusparselt.is_available()),
        "cusparselt_version": cusparselt.version() if cusparselt and hasattr(cusparselt, "version") else None,
    }


def cpu_environment() -> dict:
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "mkl": torch.backends.mkl.is_available(), "openmp_threads_env": os.environ.get("OMP_NUM_THREADS")}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def linear_table(rows: list[dict]) -> str:
    """One line per sweep combination: times in microseconds, speedup = dense / 2:4."""
    header = ["model", "layer", "out x in", "tokens", "dtype", "backend", "dense µs", "2:4 µs", "speedup", "max rel diff"]
    lines = []
    for row in rows:
        cells = [row["model"], row["layer"], f"{row['out_features']}x{row['in_features']}", row["tokens"],
                 row["dtype"], row["backend"]]
        if "error" in row:
            cells += ["-", "-", "-", row["error"].replace("|", "/")[:120]]
        else:
            cells += [f"{row['dense_us']:.1f}", f"{row['sparse_us']:.1f}", f"{row['speedup']:.2f}x",
                      f"{row['max_rel_diff']:.1e}" + ("" if row["agrees"] else " (!)")]
        lines.append(cells)
    return _table(header, lines)


def end_to_end_table(record: dict) -> str:
    """Prefill and decode tokens/s, dense and per backend, with speedups over dense."""
    header = ["weights", "prompt", "prefill tok/s", "prefill speedup", "decode tok/s", "decode speedup"]
    lines = []
    for tokens, run in record.get("dense", {}).items():
        if "error" in run:
            lines.append(["dense", tokens, run["error"], "", "", ""])
        else:
            lines.append(["dense", tokens, f"{run['prefill_tokens_per_s']:,.0f}", "1.00x",
                          f"{run['decode_tokens_per_s']:,.1f}", "1.00x"])
    for backend, entry in record.get("sparse", {}).items():
        if "error" in entry:
            lines.append([f"2:4 {backend}", "-", entry["error"].replace("|", "/")[:120], "", "", ""])
        for tokens in map(str, record.get("prompts", [])):
            run = entry.get(tokens)
            if run is None:
                continue
            if "error" in run:
                lines.append([f"2:4 {backend}", tokens, run["error"], "", "", ""])
            else:
                lines.append([f"2:4 {backend}", tokens, f"{run['prefill_tokens_per_s']:,.0f}",
                              f"{run.get('prefill_speedup', float('nan')):.2f}x", f"{run['decode_tokens_per_s']:,.1f}",
                              f"{run.get('decode_speedup', float('nan')):.2f}x"])
    return _table(header, lines)


def csr_table(rows: list[dict]) -> str:
    """Dense and CSR microseconds per shape, token count and sparsity, then the break-even sparsities."""
    header = ["out x in", "tokens", "sparsity", "dense µs", "CSR µs", "dense / CSR"]
    lines, notes = [], []
    for (out_features, in_features, tokens), group in group_rows(rows).items():
        for row in group:
            lines.append([f"{out_features}x{in_features}", tokens, f"{row['sparsity']:.2f}", f"{row['dense_us']:,.1f}",
                          f"{row['csr_us']:,.1f}", f"{row['speedup']:.2f}x"])
        even = csr_break_even(group)
        where = f"- {out_features}x{in_features}, {tokens} token{'s' if tokens != 1 else ''}: CSR "
        notes.append(where + (f"first faster at sparsity {even:.2f}" if even is not None else "never faster in the measured range"))
    return _table(header, lines) + "\n\n" + "\n".join(notes)


def gpu_check_markdown(record: dict) -> str:
    """``prunelib gpu-check``'s record as Markdown: what was skipped, then its three parts."""
    where = record.get("environment", {})
    title = "GPU check" + (" (dry run)" if record["dry_run"] else f" on {where.get('gpu')} ({where.get('capability')})")
    parts = [f"# {title}", "", f"`{record['command']}`, {record['created']}, {record['seconds']:.0f} s; "
             f"torch {record['versions'].get('torch')}, prunelib {record['versions'].get('prunelib')}", ""]
    if record["skipped"]:
        parts += ["## Not measured", "", *[f"- {line}" for line in record["skipped"]], ""]
    parts += ["## One linear, y = x @ W.T (median µs, speedup = dense / 2:4)", "", linear_table(record["linear"]), ""]
    for model, found in record["end_to_end"].items():
        parts += [f"## End to end: {model}, every block linear 2:4, batch 1, greedy decode with KV cache", ""]
        parts.append(f"error: {found['error']}" if "error" in found else
                     f"{found['dtype']} on {found['device']}; linears each backend converts: "
                     + ", ".join(f"{b} {n}" for b, n in found["convertible"].items()) + "\n\n" + end_to_end_table(found))
        parts.append("")
    header = ["model", "run", "perplexity", "sparsity", "seconds"]
    rows = [[row["model"], row["run"], *(["-", "-", row["error"]] if "error" in row else
                                          [f"{row['ppl']:.2f}", f"{row['sparsity']:.3f}", f"{row['seconds']:.0f}"])]
            for row in record["perplexity"]]
    parts += ["## Core perplexity table (seed 0)", "", _table(header, rows)]
    return "\n".join(parts) + "\n"
