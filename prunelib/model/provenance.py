"""What produced a number: library versions, model identity, peak memory, time stamp."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import sys
import tempfile
from pathlib import Path

import torch

from .._version import __version__
from ..data import sha256
from .architecture import decoder_blocks
from .embedded import EMBEDDED
from .loading import model_source

PACKAGES = ("torch", "transformers", "gguf", "accelerate", "datasets", "numpy")
#: an absolute path of some machine (POSIX home, work, temp or system folders, or a Windows drive)
#: inside a string: what records must never hold (data are named relative to the data root)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:/(?:home|root|work|tmp|Users|mnt|opt|var|usr|srv|scratch|private)/"
                           r"|[A-Z]:\\)[^\s'\"]*")


def absolute_paths(text: str) -> list[str]:
    """The absolute paths of a machine found in ``text`` (see :data:`ABSOLUTE_PATH`)."""
    return ABSOLUTE_PATH.findall(text)


def git_commit() -> str | None:
    """The commit of the checkout prunelib runs from (``+dirty`` when its code has uncommitted
    changes), or None outside git."""
    import subprocess

    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=package, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def versions() -> dict:
    """Python, prunelib (and its git commit when run from a checkout), the platform and library versions."""
    found = {"python": sys.version.split()[0], "prunelib": __version__, "platform": platform.platform()}
    commit = git_commit()
    if commit:
        found["commit"] = commit
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    if torch.cuda.is_available():
        found["cuda"] = torch.version.cuda
        found["gpu"] = torch.cuda.get_device_name()
    return found


def model_record(name: str, model) -> dict:
    """The model as named, where its weights came from (with a checksum for GGUF files), and its shape."""
    source, gguf_file = model_source(name)
    record = {
        "name": name if not Path(name).expanduser().exists() else Path(name).name,
        "source": source,
        "model_type": model.config.model_type,
        "blocks": len(decoder_blocks(model)),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(model.parameters()).device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if Path(source).expanduser().exists():  # a local directory: named by its folder, never by this machine's path
        record["source"] = f"local: {Path(source).name}"
    if name in EMBEDDED:  # named by its wheel, not by where this machine keeps it
        record["source"] = f"embedded: {EMBEDDED[name].distribution}"
        record["description"] = EMBEDDED[name].description
        record["license"] = EMBEDDED[name].license
    if gguf_file:
        record["gguf_file"] = gguf_file
        record["gguf_sha256"] = sha256(Path(source) / gguf_file)
    revision = getattr(model.config, "_commit_hash", None)
    if revision:
        record["revision"] = revision
    return record


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        pass
    return None


def reset_peak_memory(device: torch.device | str = "cpu") -> None:
    """Start a new peak-memory measurement (CUDA allocator stats, or Linux's VmHWM)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the peak resident set size of this process
    except OSError:
        pass


def peak_memory_bytes(device: torch.device | str = "cpu") -> int:
    """Peak allocated memory (CUDA) or peak resident memory since the last reset (CPU)."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = _proc_status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resident_memory_bytes() -> int | None:
    """Current resident memory of this process (Linux), or None."""
    return _proc_status_bytes("VmRSS")


def model_bytes(model) -> int:
    """Bytes held by the model's parameters and buffers (tied weights counted once)."""
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` atomically: a temporary file in the same directory, then a rename, so a
    run that fails leaves no half-written result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(record, out, indent=2)
        out.write("\n")
    os.replace(temporary, path)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
