"""A results cache that cannot serve a stale result as current.

Every result is a JSON record at ``<root>/<name>-<key>.json``. ``key`` hashes the result's
*definition* (its options, model, data and protocol); the record also stores ``code``, the
:func:`~prunelib.experiments.code.code_hash` of the modules that computed it. Reading a record:

* its definition differs from the one asked for: an error (a hash collision or a hand edit);
* its code differs from the current code, or a data file or model file it names (by its path
  relative to the data root, or the model's GGUF file) now has another SHA-256: the record is
  **stale**. Computing (:func:`cached`) recomputes it; reading only (``only_stored``) returns it
  marked ``"stale": <why>``, so a table can show it as what it is. Records written before code
  hashes existed are stale too. An input that cannot be found here (no local data directory) is
  not held against a record.

While a result is computed, its worker holds an exclusive ``flock`` on ``<path>.lock``. The
operating system releases that lock when the process ends, however it ends, so a crashed worker
never blocks a run, and no worker can take over the claim of a live one (there is no stale-lock
guessing). ``flock`` needs a local file system (or one that forwards it); the lock file records
the owner's process id for people, not for the protocol.

The root is ``$PRUNELIB_RESULTS_DIR``, else ``results/experiments`` of the source checkout
prunelib is imported from, else ``results/experiments`` under the current directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from .. import data
from ..errors import PrunelibError
from ..model.loading import model_source
from ..model.provenance import write_json

ENV_VAR = "PRUNELIB_RESULTS_DIR"
_CHECKOUT = Path(__file__).resolve().parents[2]


def results_root(root: Path | str | None = None) -> Path:
    """Where results live: ``root`` if given, else ``$PRUNELIB_RESULTS_DIR``, else the checkout's
    ``results/experiments`` (when prunelib runs from a source checkout), else ``./results/experiments``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "prunelib").is_dir():
        return _CHECKOUT / "results" / "experiments"
    return Path.cwd() / "results" / "experiments"


def definition_key(definition: dict) -> str:
    """The first 12 hex digits of the sha256 of ``definition`` as sorted JSON."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]


class Busy(PrunelibError):
    """Another live process is computing this result right now."""


def _flock(handle, blocking: bool = False) -> bool:
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


@contextlib.contextmanager
def claim(path: Path):
    """Hold the claim on computing ``path`` (an exclusive lock on ``<path>.lock``), or raise
    :class:`Busy` when a live process holds it. The lock file is removed on release."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock, "a+")
        if not _flock(handle):
            owner = _owner_text(handle)
            handle.close()
            raise Busy(f"{path.name} is being computed by {owner} (claim {lock})")
        try:  # the file we locked may have been released and removed meanwhile: then lock the new one
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before the release: a newcomer then locks a fresh file
        handle.close()


def _owner_text(handle) -> str:
    handle.seek(0)
    text = handle.read().strip()
    return f"process {text}" if text else "another process"


def is_claimed(path: Path) -> bool:
    """Whether a live process holds the claim on ``path`` right now."""
    lock = Path(f"{path}.lock")
    try:
        handle = open(lock)
    except FileNotFoundError:
        return False
    with handle:
        if _flock(handle):
            return False  # nobody held it (our lock is released when the file closes)
        return True


def changed_inputs(record: dict) -> list[str]:
    """The data and model files ``record`` names whose SHA-256 differs from the file found here now."""
    changed = []
    for field, source in record.items():
        if isinstance(source, dict) and isinstance(source.get("path"), str) and source.get("sha256"):
            local = data.local_file(source["path"])
            if local is not None and data.sha256(local) != source["sha256"]:
                changed.append(f"{field} {source['path']}")
    model = record.get("model")
    if isinstance(model, dict) and model.get("gguf_sha256") and model.get("name"):
        try:
            folder, gguf_file = model_source(model["name"])
        except PrunelibError:
            gguf_file = None
        if gguf_file and (Path(folder) / gguf_file).is_file() and \
                data.sha256(Path(folder) / gguf_file) != model["gguf_sha256"]:
            changed.append(f"model {gguf_file}")
    return changed


def read(path: Path, definition: dict, code: str) -> dict:
    """The record at ``path``; ``"cached": True``, and ``"stale": <why>`` when ``code`` did not
    compute it or one of its inputs has changed since."""
    record = json.loads(path.read_text())
    if record.get("run") != definition:  # a hash collision or a hand-edited file
        raise PrunelibError(f"{path} holds a different run; delete it or pass force=True")
    record["cached"] = True
    made_by = record.get("code")
    reasons = []
    if made_by != code:
        reasons.append(f"computed by code {made_by}, the current code is {code}" if made_by else
                       f"computed before code hashes were recorded; the current code is {code}")
    changed = changed_inputs(record)
    if changed:
        reasons.append(f"its inputs changed since: {', '.join(changed)}")
    if reasons:
        record["stale"] = "; ".join(reasons)
    return record


def state(path: Path, definition: dict, code: str) -> str:
    """``"cached"``, ``"stale"``, ``"running"`` (claimed by a live process) or ``"missing"``."""
    if path.exists():
        return "stale" if "stale" in read(path, definition, code) else "cached"
    return "running" if is_claimed(path) else "missing"


def cached(path: Path, definition: dict, code: str, compute_record: Callable[[], dict] | None, *,
           force: bool = False, only_stored: bool = False) -> dict | None:
    """The current record at ``path``, else ``compute_record()`` (which must include ``"run":
    definition``) written atomically with ``"code": code`` under a claim. With ``only_stored``
    nothing is computed: the stored record (marked ``"stale"`` when it is), or None."""
    if path.exists() and not force:
        record = read(path, definition, code)
        if only_stored or "stale" not in record:
            return record
    if only_stored:
        return None
    with claim(path):
        if path.exists() and not force:  # another worker finished it between the check above and the claim
            record = read(path, definition, code)
            if "stale" not in record:
                return record
        record = {**compute_record(), "code": code}
        write_json(path, record)
    return {**record, "cached": False}
