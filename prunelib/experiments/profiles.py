"""Run profiles shared by the notebooks, the benchmarks and CI.

``PRUNEBOOK_PROFILE`` picks one: ``ci`` proves that every cell runs (seconds per step),
``cpu`` produces the numbers the book shows (the embedded model, 64 x 1024 calibration),
``gpu`` reproduces the papers' protocol on a large model (``PRUNEBOOK_MODEL``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import torch

from ..errors import PrunelibError

ENV_VAR = "PRUNEBOOK_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    model: str
    nsamples: int  #: calibration sequences
    calib_seqlen: int
    eval_seqlen: int
    max_windows: int | None  #: first N WikiText-2 windows, None = all
    device: str
    seed: int = 0
    #: documents per zero-shot task in the sweep's 50% and 2:4 runs (None = every document)
    zero_shot_limit: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "ci": Profile("ci", "smollm2-135m", nsamples=4, calib_seqlen=128, eval_seqlen=256, max_windows=2, device="cpu",
                  zero_shot_limit=4),
    "cpu": Profile("cpu", "smollm2-135m", nsamples=64, calib_seqlen=1024, eval_seqlen=2048, max_windows=16, device="cpu",
                   zero_shot_limit=100),
    "gpu": Profile("gpu", "meta-llama/Llama-2-7b-hf", nsamples=128, calib_seqlen=2048, eval_seqlen=2048,
                   max_windows=None, device="cuda"),
}


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else ``$PRUNEBOOK_PROFILE``, else ``cpu``; ``$PRUNEBOOK_MODEL`` overrides the model."""
    name = name or os.environ.get(ENV_VAR, "cpu")
    if name not in PROFILES:
        raise PrunelibError(f"unknown profile '{name}'; use one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if os.environ.get("PRUNEBOOK_MODEL"):
        profile = replace(profile, model=os.environ["PRUNEBOOK_MODEL"])
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise PrunelibError(f"profile '{name}' needs a CUDA GPU; use PRUNEBOOK_PROFILE=cpu or ci")
    return profile
