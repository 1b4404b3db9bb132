"""Timing helpers: ``torch.utils.benchmark`` medians, device synchronisation, error records."""

from __future__ import annotations

import time

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work (kernel launches return before the kernel ends)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_us(stmt: str, globals: dict, *, min_run_time: float = 0.2, threads: int | None = None) -> float:
    """Median microseconds of one execution of ``stmt``, by ``Timer.blocked_autorange``.

    ``blocked_autorange`` runs ``stmt`` in blocks long enough to hide the timer's overhead until
    ``min_run_time`` seconds are spent, synchronising CUDA around each block. ``Timer`` runs with
    one thread unless told, so ``threads`` defaults to ``torch.get_num_threads()``.
    """
    from torch.utils.benchmark import Timer

    timer = Timer(stmt=stmt, globals=globals, num_threads=threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


def error_text(error: BaseException, limit: int = 400) -> str:
    """``ExceptionType: first line of the message``, cut to ``limit`` characters, for a results file."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cuda_unusable(device: torch.device | str) -> str | None:
    """None while the CUDA context still runs work; else why not (a sticky error poisons it)."""
    try:
        synchronize(device)
        torch.ones(1, device=device).add_(1).item()
    except Exception as error:  # noqa: BLE001 - any failure means the context is gone
        return error_text(error)
    return None


def past(deadline: float | None) -> bool:
    """True once ``time.monotonic()`` has passed ``deadline`` (None: no deadline)."""
    return deadline is not None and time.monotonic() > deadline
