"""What produced a number: library versions, model identity, peak memory, time stamp."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import resource
import sys
from pathlib import Path

import torch

from . import __version__
from .data import sha256
from .models import EMBEDDED, decoder_blocks, model_source

PACKAGES = ("torch", "transformers", "gguf", "accelerate", "datasets", "numpy")


def versions() -> dict:
    found = {"python": sys.version.split()[0], "prunelib": __version__, "platform": platform.platform()}
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
        "name": name,
        "source": source,
        "model_type": model.config.model_type,
        "blocks": len(decoder_blocks(model)),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(model.parameters()).device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if name in EMBEDDED:
        record["description"] = EMBEDDED[name].description
    if gguf_file:
        record["gguf_file"] = gguf_file
        record["gguf_sha256"] = sha256(Path(source) / gguf_file)
    revision = getattr(model.config, "_commit_hash", None)
    if revision:
        record["revision"] = revision
    return record


def peak_memory_bytes(device: torch.device | str = "cpu") -> int:
    """Peak resident memory of this process (CPU) or peak allocated memory (CUDA)."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
