"""Named, cached experiment runs: what the notebooks call and the result files they render.

A :class:`Run` is everything that defines a result: model, method, sparsity (one value, one
per block, or N:M), calibration source, size and seed, the evaluation protocol, and the
prunelib version. Its result is ``results/experiments/<profile>/<name>-<key>.json`` where
``key`` hashes that definition. :func:`run` reuses an existing file; any change to the
definition (an option, the library version) gives a new key and a fresh computation.

    python -m prunelib.experiments --profile cpu --suite sweep     # regenerate one suite
    python -m prunelib.experiments --profile cpu --suite all --list
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from tqdm.auto import tqdm

from . import __version__
from .errors import PrunelibError
from .masks import NM, check_sparsity
from .methods import METHODS, STATISTIC
from .profiles import Profile, get_profile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "experiments"
ZERO_SHOT_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq", "rte", "openbookqa")


@dataclass(frozen=True)
class Run:
    """The full definition of one result. ``block_sparsity`` (one value per block) overrides
    ``sparsity``; ``nm`` overrides both; ``label`` only names how per-block values were chosen."""

    method: str = "dense"
    sparsity: float = 0.0
    nm: str | None = None
    group: str | None = None
    permute: bool = False
    block_sparsity: tuple[float, ...] | None = None
    label: str | None = None
    model: str = "smollm2-135m"
    nsamples: int = 64
    calib_seqlen: int = 1024
    seed: int = 0
    eval_seqlen: int = 2048
    max_windows: int | None = 16
    zero_shot: tuple[str, ...] = ()
    zero_shot_limit: int | None = None
    device: str = "cpu"
    version: str = field(default=__version__)

    def __post_init__(self):
        if self.method not in ("dense", *METHODS):
            raise PrunelibError(f"unknown method '{self.method}'; use dense or one of {', '.join(METHODS)}")
        check_sparsity(self.sparsity)
        if self.nm is not None:
            object.__setattr__(self, "nm", str(NM.parse(self.nm)))
        if self.block_sparsity is not None:
            object.__setattr__(self, "block_sparsity", tuple(check_sparsity(float(s)) for s in self.block_sparsity))
        unknown = set(self.zero_shot) - set(ZERO_SHOT_TASKS)
        if unknown:
            raise PrunelibError(f"unknown zero-shot tasks {sorted(unknown)}; use {', '.join(ZERO_SHOT_TASKS)}")

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **options) -> "Run":
        """A run with the calibration and evaluation protocol of a profile (default ``$PRUNEBOOK_PROFILE``)."""
        profile = profile if isinstance(profile, Profile) else get_profile(profile)
        protocol = dict(model=profile.model, nsamples=profile.nsamples, calib_seqlen=profile.calib_seqlen,
                        seed=profile.seed, eval_seqlen=profile.eval_seqlen, max_windows=profile.max_windows,
                        device=profile.device)
        return cls(**{**protocol, **options})

    @property
    def uses_calibration(self) -> bool:
        return self.method != "dense" and STATISTIC[self.method] is not None

    def definition(self) -> dict:
        """What the key hashes: every field, with calibration fields dropped when unused."""
        values = asdict(self)
        values["block_sparsity"] = list(self.block_sparsity) if self.block_sparsity else None
        values["zero_shot"] = list(self.zero_shot)
        if not self.uses_calibration:
            for unused in ("nsamples", "calib_seqlen", "seed"):
                values.pop(unused)
        return values

    @property
    def key(self) -> str:
        text = json.dumps(self.definition(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        if self.method == "dense":
            return "dense"
        pattern = self.nm.replace(":", "of") if self.nm else f"{round(100 * self.sparsity)}"
        parts = [self.method, pattern]
        if self.permute:
            parts.append("permuted")
        if self.block_sparsity is not None:
            parts.append(self.label or "per-block")
        return "-".join(parts)

    def path(self, root: Path | str | None = None) -> Path:
        return Path(root or RESULTS) / f"{self.name}-{self.key}.json"


class _Models:
    """Keeps one loaded model and its dense weights, restored before every run (no reload)."""

    def __init__(self):
        self.name = self.model = self.tokenizer = self.dense = None

    def get(self, name: str, device: str):
        from .models import load_model

        if self.name != (name, device):
            self.model, self.tokenizer = load_model(name, device=device, quiet=True)
            self.dense = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.name = (name, device)
        else:
            self.model.load_state_dict(self.dense)
        return self.model, self.tokenizer


_MODELS = _Models()


def compute(spec: Run, *, quiet: bool = False) -> dict:
    """Run ``spec`` now (no cache): prune, evaluate, and return the record with provenance."""
    from . import data
    from .evaluate import perplexity
    from .provenance import model_record, now, versions
    from .prune import prune_model

    start = time.perf_counter()
    model, tokenizer = _MODELS.get(spec.model, spec.device)
    record = {"name": spec.name, "key": spec.key, "run": spec.definition(), "model": model_record(spec.model, model)}
    calibration = None
    if spec.uses_calibration:
        calibration, record["calibration"] = data.c4_calibration(tokenizer, spec.nsamples, spec.calib_seqlen, spec.seed)
    if spec.method != "dense":
        sparsity = list(spec.block_sparsity) if spec.block_sparsity is not None else spec.sparsity
        report = prune_model(model, calibration, method=spec.method, sparsity=sparsity, nm=spec.nm, group=spec.group,
                             permute=spec.permute, device=spec.device, quiet=quiet)
        record["prune"] = report
    else:
        from .prune import measure_sparsity

        record["prune"] = {"prune_seconds": 0.0, **measure_sparsity(model)}
    record["sparsity"] = record["prune"]["sparsity"]
    tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, "test")
    record["eval"] = perplexity(model, tokens, seqlen=spec.eval_seqlen, max_windows=spec.max_windows, quiet=quiet)
    record["ppl"] = record["eval"]["ppl"]
    if spec.zero_shot:
        from .zero_shot import zero_shot

        record["zero_shot"] = zero_shot(model, tokenizer, spec.zero_shot, limit=spec.zero_shot_limit, quiet=quiet)
    record.update(versions=versions(), threads=torch.get_num_threads(), finished=now(),
                  seconds=time.perf_counter() - start)
    return record


def _write_atomic(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(record, out, indent=2)
        out.write("\n")
    os.replace(temporary, path)


def run(spec: Run, *, root: Path | str | None = None, force: bool = False, quiet: bool = False) -> dict:
    """The result of ``spec``: read from its file when present (and ``force`` is off), else computed and written."""
    path = spec.path(root)
    if path.exists() and not force:
        record = json.loads(path.read_text())
        if record.get("run") != spec.definition():  # a hash collision or a hand-edited file
            raise PrunelibError(f"{path} holds a different run; delete it or pass force=True")
        return {**record, "cached": True}
    record = compute(spec, quiet=quiet)
    _write_atomic(path, record)
    return {**record, "cached": False}


def run_all(specs: Iterable[Run], *, root: Path | str | None = None, force: bool = False, quiet: bool = False) -> list[dict]:
    """:func:`run` for many runs, with a progress bar that names the current run."""
    specs = list(specs)
    records = []
    with tqdm(specs, desc="runs", unit="run", disable=quiet) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            records.append(run(spec, root=root, force=force, quiet=quiet))
    return records


def profile_root(profile: Profile | str | None = None) -> Path:
    """Where a profile's results live: ``results/experiments/<profile>/``."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    return RESULTS / profile.name


# --- the book's suites ------------------------------------------------------------------------

SWEEP_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 9))


def sweep_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 6: dense, then 10% ... 80% unstructured, 2:4 and 4:8 for every method."""
    runs = [Run.from_profile(profile)]
    for method in METHODS:
        runs += [Run.from_profile(profile, method=method, sparsity=s) for s in SWEEP_SPARSITIES]
        runs += [Run.from_profile(profile, method=method, nm=nm) for nm in ("2:4", "4:8")]
    return runs


SUITES = {"sweep": sweep_suite}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunelib.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="ci, cpu or gpu (default $PRUNEBOOK_PROFILE, else cpu)")
    parser.add_argument("--suite", default="all", choices=("all", *SUITES))
    parser.add_argument("--list", action="store_true", help="list the runs and whether each is cached")
    parser.add_argument("--force", action="store_true", help="recompute cached runs")
    args = parser.parse_args(argv)
    try:
        profile = get_profile(args.profile)
        suites = SUITES if args.suite == "all" else {args.suite: SUITES[args.suite]}
        specs = list(dict.fromkeys(spec for make in suites.values() for spec in make(profile)))
    except PrunelibError as error:
        print(f"prunelib: error: {error}", file=sys.stderr)
        return 2
    root = profile_root(profile)
    if args.list:
        for spec in specs:
            print(f"{'cached ' if spec.path(root).exists() else 'missing'}  {os.path.relpath(spec.path(root))}")
        return 0
    run_all(specs, root=root, force=args.force)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

