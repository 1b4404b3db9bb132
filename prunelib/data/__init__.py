"""Layer 2: evaluation and calibration data, local files first, the Hugging Face hub second.

The local directory is ``$PRUNELIB_DATA_DIR``, else ``../shared/data`` next to the
repository when it exists. Its layout is the one documented in that directory's README:
``wikitext-2-raw/wiki.{test,valid}.raw`` and ``c4/c4-sample.00000-of-00001.json.gz``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataNotFoundError, PrunelibError

ENV_VAR = "PRUNELIB_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]  # prunelib/data/__init__.py -> the checkout
WIKITEXT_FILES = {"test": "wikitext-2-raw/wiki.test.raw", "validation": "wikitext-2-raw/wiki.valid.raw"}
C4_FILE = "c4/c4-sample.00000-of-00001.json.gz"
#: The C4 shard the reference implementations calibrate on, used when no local copy exists.
C4_HUB_SHARD = "en/c4-train.00000-of-01024.json.gz"


def data_dir() -> Path | None:
    """The local data directory, or None when there is none."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"{ENV_VAR}={configured} is not a directory")
        return path
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


def local_file(relative: str) -> Path | None:
    root = data_dir()
    if root is not None and (root / relative).is_file():
        return root / relative
    return None


def _offline_error(what: str, relative: str, cause: Exception) -> DataNotFoundError:
    root = data_dir()
    where = f"{root / relative} does not exist" if root else "no local data directory was found"
    return DataNotFoundError(
        f"cannot load {what}: {where}, and the Hugging Face hub failed ({type(cause).__name__}: {cause}). "
        f"Point {ENV_VAR} at a directory holding '{relative}' (see shared/data/README.md)."
    )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=None)
def sha256(path: Path) -> str:
    """:func:`sha256_file`, computed once per path and process (for data files, which do not change)."""
    return sha256_file(path)


def _source(path: Path | None, hub: str) -> dict:
    """Where data came from: a local file by its path *relative to the data root* (so records name no
    machine's directories; :func:`local_file` finds it again) and its sha256, else the hub dataset."""
    if path is None:
        return {"hub": hub}
    return {"path": path.relative_to(data_dir()).as_posix(), "sha256": sha256(path)}


# ---------------------------------------------------------------- WikiText-2


def wikitext2_rows(raw: str) -> list[str]:
    """Rows of the HF ``wikitext-2-raw-v1`` dataset rebuilt from a ``.raw`` file.

    HF yields every line with its newline kept and whitespace-only lines as ``""``.
    """
    return [line if line.strip() else "" for line in raw.splitlines(keepends=True)]


@lru_cache(maxsize=None)
def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def wikitext2(split: str = "test") -> tuple[str, dict]:
    """WikiText-2 raw text joined the GPTQ way (``"\\n\\n".join(rows)``) and its source record."""
    if split not in WIKITEXT_FILES:
        raise PrunelibError(f"unknown WikiText-2 split '{split}'; use one of {sorted(WIKITEXT_FILES)}")
    path = local_file(WIKITEXT_FILES[split])
    if path is not None:
        rows = wikitext2_rows(_read_text(path))
    else:
        try:
            from datasets import load_dataset

            rows = load_dataset("wikitext", "wikitext-2-raw-v1", split=split)["text"]
        except Exception as error:  # noqa: BLE001 - any hub failure becomes one clear message
            raise _offline_error(f"WikiText-2 {split}", WIKITEXT_FILES[split], error) from error
    return "\n\n".join(rows), _source(path, f"wikitext/wikitext-2-raw-v1:{split}")


def wikitext2_tokens(tokenizer, split: str = "test") -> tuple[torch.Tensor, dict]:
    """The whole split tokenized once: a ``(1, n_tokens)`` LongTensor, and its source record."""
    text, source = wikitext2(split)
    ids = tokenizer(text, return_tensors="pt", verbose=False).input_ids
    return ids, {**source, "split": split, "tokens": ids.numel()}


# ---------------------------------------------------------------- C4 calibration


@lru_cache(maxsize=None)
def _read_jsonl_texts(path: Path) -> tuple[str, ...]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return tuple(json.loads(line)["text"] for line in handle if line.strip())


def c4_documents() -> tuple[tuple[str, ...], dict]:
    """C4 calibration documents in file order, and their source record (a file is read once)."""
    path = local_file(C4_FILE)
    if path is not None:
        return _read_jsonl_texts(path), _source(path, "")
    try:
        from datasets import load_dataset

        docs = load_dataset("allenai/c4", data_files={"train": C4_HUB_SHARD}, split="train")["text"]
    except Exception as error:  # noqa: BLE001
        raise _offline_error("C4 calibration data", C4_FILE, error) from error
    return tuple(docs), _source(None, f"allenai/c4:{C4_HUB_SHARD}")


def sample_windows(documents: Sequence[str], tokenizer, nsamples: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    """``(nsamples, seqlen)`` token windows, drawn exactly as the SparseGPT/Wanda repositories do.

    With ``random`` seeded by ``seed``: draw a document index; redraw while the document has
    ``<= seqlen`` tokens; then draw ``start`` in ``[0, n_tokens - seqlen - 1]`` and keep
    ``tokens[start:start + seqlen]``. A private ``random.Random`` gives the same draws as
    seeding the global generator without touching it.
    """
    if nsamples < 1 or seqlen < 1:
        raise PrunelibError(f"need nsamples >= 1 and seqlen >= 1, got {nsamples} and {seqlen}")
    lengths = {}
    rng = random.Random(seed)
    windows = []
    while len(windows) < nsamples:
        index = rng.randint(0, len(documents) - 1)
        ids = tokenizer(documents[index], return_tensors="pt", verbose=False).input_ids[0]
        lengths[index] = ids.numel()
        if ids.numel() <= seqlen:
            if len(lengths) == len(documents) and max(lengths.values()) <= seqlen:
                raise PrunelibError(f"no calibration document is longer than seqlen={seqlen} tokens")
            continue
        start = rng.randint(0, ids.numel() - seqlen - 1)
        windows.append(ids[start : start + seqlen])
    return torch.stack(windows)


def c4_calibration(tokenizer, nsamples: int = 128, seqlen: int = 2048, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Seeded C4 calibration windows ``(nsamples, seqlen)`` and their provenance record."""
    documents, source = c4_documents()
    windows = sample_windows(documents, tokenizer, nsamples, seqlen, seed)
    return windows, {**source, "nsamples": nsamples, "seqlen": seqlen, "seed": seed}
