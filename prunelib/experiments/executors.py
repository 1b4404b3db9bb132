"""Run many cached runs: one after another here, or as Ray tasks over a node's GPUs or a cluster.

Both executors go through :func:`~prunelib.experiments.runs.run`, so they read and write the
same cache: a run already computed is read, a run another worker holds is skipped, and a serial
and a Ray execution of one suite leave the same files. Ray is an optional extra
(``pip install "prunelib[ray]"``); the cluster is ``$RAY_ADDRESS`` when set, else a local one.
On a cluster of several machines the results root must be a shared directory that supports
``flock`` (set ``$PRUNELIB_RESULTS_DIR``), and every node needs prunelib and the data.

Every run is computed with :data:`RUN_THREADS` CPU threads (:func:`run_threads`). A float32 sum
depends on how it is split between threads and on the kernels the processor offers, and a
sequential method carries a last-digit change in one block's inputs into another mask choice in
the next. A run is therefore reproduced to the last digit only with its definition, its thread
count and the machine fixed (the book's chapter 8 measures what the thread count and the machine
change, against the spread of calibration seeds).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator

import torch
from tqdm.auto import tqdm

from ..errors import PrunelibError
from .cache import Busy, results_root
from .runs import Run, run

EXECUTORS = ("local", "ray")
RAY_HINT = 'pip install "prunelib[ray]"'
#: CPU threads of every stored run (the two workers of a 2-core machine run one each)
RUN_THREADS = 1


@contextlib.contextmanager
def run_threads(threads: int = RUN_THREADS) -> Iterator[int]:
    """Compute with ``threads`` intra-op CPU threads inside the block (``torch.set_num_threads``),
    and restore the previous count after it. A live computation that is to land on a stored
    record's number runs inside ``run_threads()``."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise PrunelibError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def run_all(specs: Iterable[Run], *, root: Path | str | None = None, force: bool = False, quiet: bool = False,
            executor: str = "local", **options) -> list[dict]:
    """:func:`~prunelib.experiments.runs.run` for many runs, in order, with ``executor``
    ``"local"`` (this process, a progress bar naming the current run) or ``"ray"``
    (:func:`run_on_ray`, taking its ``options``), each run with :data:`RUN_THREADS` threads. A run
    another process is computing is skipped
    and left out of the records, so starting the same command twice uses two workers."""
    if executor not in EXECUTORS:
        raise PrunelibError(f"unknown executor '{executor}'; use one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        return run_on_ray(specs, root=root, force=force, **options)
    if options:
        raise PrunelibError(f"the local executor takes no options {sorted(options)}")
    specs = list(specs)
    records = []
    with run_threads(), tqdm(specs, desc="runs", unit="run", disable=quiet) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            try:
                records.append(run(spec, root=root, force=force, quiet=quiet))
            except Busy as busy:
                bar.write(f"skipped: {busy}")
    return records


def _run_or_skip(spec: Run, root: str, force: bool) -> dict | None:
    """One Ray task: the run's record, or None when another worker holds it. Ray points
    ``CUDA_VISIBLE_DEVICES`` at the task's GPU, so ``"cuda"`` is that GPU."""
    try:
        with run_threads():
            return run(spec, root=root, force=force, quiet=True)
    except Busy:
        return None


def run_on_ray(specs: Iterable[Run], *, root: Path | str | None = None, force: bool = False,
               address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
               quiet: bool = False) -> list[dict]:
    """Each run as one Ray task. ``num_gpus`` per task defaults to 1 when the runs use CUDA, else 0;
    ``num_cpus`` to 1. Connects to ``address`` (default ``$RAY_ADDRESS``, else starts a local
    cluster). Returns the records in the order of ``specs``, without the runs other workers held."""
    try:
        import ray
    except ImportError as error:
        raise PrunelibError(f"--executor ray needs Ray: {RAY_HINT}") from error
    specs = list(specs)
    root = str(results_root(root).resolve())  # workers may start in another directory
    if num_gpus is None:
        num_gpus = 1 if any(spec.device.startswith("cuda") for spec in specs) else 0
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False,
                 include_dashboard=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1 if num_cpus is None else num_cpus, num_gpus=num_gpus, max_retries=0)(_run_or_skip)
        pending = {task.remote(spec, root, force): index for index, spec in enumerate(specs)}
        found: dict[int, dict | None] = {}
        with tqdm(total=len(specs), desc="runs (ray)", unit="run", disable=quiet) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    found[pending.pop(ref)] = ray.get(ref)
                    bar.update()
    finally:
        if started_here:
            ray.shutdown()
    return [found[index] for index in range(len(specs)) if found[index] is not None]
