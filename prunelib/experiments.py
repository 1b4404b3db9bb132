"""Named, cached experiment runs: what the notebooks call and the result files they render.

A :class:`Run` is everything that defines a result: model, method, sparsity (one value, one
per block, or N:M), calibration source, size and seed, the evaluation protocol, and the
prunelib version. Its result is ``results/experiments/<profile>/<name>-<key>.json`` where
``key`` hashes that definition. :func:`run` reuses an existing file; any change to the
definition (an option, the library version) gives a new key and a fresh computation.

    python -m prunelib.experiments --profile cpu --suite sweep     # regenerate one suite
    python -m prunelib.experiments --profile cpu --suite sensitivity  # chapter 7's sensitivities
    python -m prunelib.experiments --profile cpu --suite all --list

Starting the same command again in a second shell adds a worker: each run is claimed while it
is computed (:func:`claim`), and a worker skips the runs another one holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
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
from .provenance import write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "experiments"
#: lm-eval batch size of the runs: 1.3x faster than 1 on a CPU thread, same answers (padding is masked)
ZERO_SHOT_BATCH = 16
ZERO_SHOT_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq", "rte", "openbookqa")


@dataclass(frozen=True)
class Run:
    """The full definition of one result. ``block_sparsity`` (one value per block) overrides
    ``sparsity``; ``nm`` overrides both; ``label`` only names how per-block values were chosen.

    ``compact`` evaluates the model as a compact file stores it (float16, or packed integer codes
    for ``quantize``, e.g. ``"int4-g64"``, by ``quant_method`` ``"rtn"``, ``"gptq"`` or SparseGPT's
    ``"joint"`` mode) and records the file's bytes; quantized runs are always compact. These three
    fields enter the definition only when set, so runs without them keep their keys."""

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
    quantize: str | None = None
    quant_method: str | None = None
    compact: bool = False

    def __post_init__(self):
        if self.method not in ("dense", *METHODS):
            raise PrunelibError(f"unknown method '{self.method}'; use dense or one of {', '.join(METHODS)}")
        check_sparsity(self.sparsity)
        if self.nm is not None:
            object.__setattr__(self, "nm", str(NM.parse(self.nm)))
        if self.block_sparsity is not None:
            object.__setattr__(self, "block_sparsity", tuple(check_sparsity(float(s)) for s in self.block_sparsity))
        if self.quantize is not None:
            from .quantize import QuantSpec

            object.__setattr__(self, "quantize", str(QuantSpec.parse(self.quantize)))
            object.__setattr__(self, "quant_method", self.quant_method or "gptq")
            object.__setattr__(self, "compact", True)
            if self.quant_method not in ("rtn", "gptq", "joint"):
                raise PrunelibError(f"unknown quant_method '{self.quant_method}'; use rtn, gptq or joint")
            if self.quant_method == "joint" and self.method != "sparsegpt":
                raise PrunelibError("quant_method 'joint' is SparseGPT's joint mode; use method='sparsegpt'")
        elif self.quant_method is not None:
            raise PrunelibError("quant_method needs quantize")
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
        pruning = self.method != "dense" and STATISTIC[self.method] is not None
        return pruning or self.quant_method in ("gptq", "joint")

    def definition(self) -> dict:
        """What the key hashes: every field, with calibration fields dropped when unused."""
        values = asdict(self)
        values["block_sparsity"] = list(self.block_sparsity) if self.block_sparsity else None
        values["zero_shot"] = list(self.zero_shot)
        if not self.uses_calibration:
            for unused in ("nsamples", "calib_seqlen", "seed"):
                values.pop(unused)
        for optional in ("quantize", "quant_method", "compact"):
            if not values[optional]:
                values.pop(optional)
        return values

    @property
    def key(self) -> str:
        text = json.dumps(self.definition(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        if self.method == "dense":
            return "-".join(["dense", *([self.quantize, self.quant_method] if self.quantize else
                                         ["fp16"] if self.compact else [])])
        pattern = self.nm.replace(":", "of") if self.nm else f"{round(100 * self.sparsity)}"
        parts = [self.method, pattern]
        if self.permute:
            parts.append("permuted")
        if self.block_sparsity is not None:
            parts.append(self.label or "per-block")
        if self.quantize:
            parts += [self.quantize, self.quant_method]
        elif self.compact:
            parts.append("fp16")
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
    from .prune import measure_sparsity, prune_model

    start = time.perf_counter()
    model, tokenizer = _MODELS.get(spec.model, spec.device)
    record = {"name": spec.name, "key": spec.key, "run": spec.definition(), "model": model_record(spec.model, model)}
    calibration = None
    if spec.uses_calibration:
        calibration, record["calibration"] = data.c4_calibration(tokenizer, spec.nsamples, spec.calib_seqlen, spec.seed)
    quantized: dict = {}
    joint = {"quantize": spec.quantize, "quantized": quantized} if spec.quant_method == "joint" else {}
    if spec.method != "dense":
        sparsity = list(spec.block_sparsity) if spec.block_sparsity is not None else spec.sparsity
        report = prune_model(model, calibration, method=spec.method, sparsity=sparsity, nm=spec.nm, group=spec.group,
                             permute=spec.permute, device=spec.device, quiet=quiet, **joint)
        record["prune"] = report
    else:
        record["prune"] = {"prune_seconds": 0.0, **measure_sparsity(model)}
    if spec.quantize and spec.quant_method != "joint":
        from .quantize_model import quantize_model

        record["quantize"], quantized = quantize_model(model, calibration, spec=spec.quantize, method=spec.quant_method,
                                                       device=spec.device, quiet=quiet)
    if spec.compact:
        from .compact import round_to_float16

        round_to_float16(model, quantized)  # evaluate exactly what the compact file stores
        record["prune"].update(measure_sparsity(model))  # quantization may round kept weights to zero
    record["sparsity"] = record["prune"]["sparsity"]
    tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, "test")
    record["eval"] = perplexity(model, tokens, seqlen=spec.eval_seqlen, max_windows=spec.max_windows, quiet=quiet)
    record["ppl"] = record["eval"]["ppl"]
    if spec.zero_shot:
        from .zero_shot import zero_shot

        record["zero_shot"] = zero_shot(model, tokenizer, spec.zero_shot, limit=spec.zero_shot_limit,
                                        batch_size=ZERO_SHOT_BATCH, quiet=quiet)
    if spec.compact:
        record["storage"] = compact_storage(model, quantized, spec)
    record.update(versions=versions(), threads=torch.get_num_threads(), finished=now(),
                  seconds=time.perf_counter() - start)
    return record


def compact_storage(model, quantized: dict, spec: Run) -> dict:
    """Save ``model`` as a compact file in a temporary folder, check it reloads bit for bit, and
    return its bytes, next to the float16 dense size and the closed-form bits per linear weight."""
    import tempfile

    from .compact import save_compact
    from .formats import formula_bytes
    from .models import prunable_linears, weight_matrix
    from .packing import packed_bytes
    from .quantize import QuantSpec

    layout = "nm" if spec.nm else ("bitmask" if spec.method != "dense" else "dense")
    bits = QuantSpec.parse(spec.quantize).bits if spec.quantize else None
    formula, weights = 0, 0
    for name, module in prunable_linears(model).items():
        rows, cols = weight_matrix(module).shape
        nnz = int(torch.count_nonzero(weight_matrix(module)))
        options = {"nm": spec.nm} if layout == "nm" else {}
        if bits:
            groups = quantized[name].scales.shape[1]
            formula += packed_bytes(rows, cols, nnz, bits, groups, layout, **options)
        else:
            formula += formula_bytes(layout, rows, cols, nnz, 2, **options)
        weights += rows * cols
    with tempfile.TemporaryDirectory(prefix="prunelib-compact-") as folder:
        saved = save_compact(model, folder, quantized=quantized, layout=layout, nm=spec.nm, bits=bits, verify=True)
    parameters = sum(p.numel() for p in model.parameters())
    return {**{k: v for k, v in saved.items() if k != "path"}, "layout": layout,
            "formula_linear_bytes": formula, "float16_dense_bytes": 2 * parameters,
            "formula_bits_per_linear_weight": 8 * formula / weights}


def cached(path: Path, definition: dict, compute_record, *, force: bool = False, only_stored: bool = False) -> dict | None:
    """The record stored at ``path`` if it was made from ``definition``, else ``compute_record()``
    (which must include ``"run": definition``), written atomically first; with ``only_stored``,
    None instead of computing."""
    if path.exists() and not force:
        return _read(path, definition)
    if only_stored:
        return None
    with claim(path):
        if path.exists() and not force:  # another worker finished it between the check above and the claim
            return _read(path, definition)
        record = compute_record()
        write_json(path, record)
    return {**record, "cached": False}


def _read(path: Path, definition: dict) -> dict:
    record = json.loads(path.read_text())
    if record.get("run") != definition:  # a hash collision or a hand-edited file
        raise PrunelibError(f"{path} holds a different run; delete it or pass force=True")
    return {**record, "cached": True}


class Busy(PrunelibError):
    """Another live process is computing this result right now."""


@contextmanager
def claim(path: Path):
    """Hold ``<path>.lock`` (created exclusively, holding this process id) while a result is
    computed, so several workers can run one suite side by side: a worker that meets a claim held
    by a live process raises :class:`Busy` (which :func:`run_all` skips); a claim left by a
    process that died is taken over."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _live_owner(lock)
            if owner is not None:
                raise Busy(f"{path.name} is being computed by process {owner} (claim {lock})") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise Busy(f"could not claim {lock}")
    with os.fdopen(handle, "w") as out:
        out.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _state(path: Path) -> str:
    """``cached``, ``running`` (claimed by a live process) or ``missing``, padded for a listing."""
    if path.exists():
        return "cached "
    return "running" if _live_owner(Path(f"{path}.lock")) is not None else "missing"


def _live_owner(lock: Path) -> int | None:
    """The id of the live process holding ``lock``; None when there is no claim or its process is gone."""
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:  # it exists, under another user
        pass
    return pid


def run(spec: Run, *, root: Path | str | None = None, force: bool = False, quiet: bool = False) -> dict:
    """The result of ``spec``: read from its file when present (and ``force`` is off), else computed and written."""
    return cached(spec.path(root), spec.definition(), lambda: compute(spec, quiet=quiet), force=force)


def stored(spec: Run, *, root: Path | str | None = None) -> dict | None:
    """The stored result of ``spec``, or None when it has not been computed (never computes)."""
    return cached(spec.path(root), spec.definition(), None, only_stored=True)


def _key(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]


UNITS = ("block", "type", "linear")


def sensitivity_result(
    profile: Profile | str | None = None, *, method: str = "wanda", units: str = "block", sparsity: float = 0.5,
    eval_seqlen: int = 1024, eval_windows: int = 2, split: str = "validation", root: Path | str | None = None,
    force: bool = False, quiet: bool = False, only_stored: bool = False,
) -> dict | None:
    """Cached :func:`prunelib.sensitivity.sensitivity` of every unit (``"block"``, ``"type"`` or
    ``"linear"``) with the profile's calibration, on the first ``eval_windows`` windows of
    ``eval_seqlen`` tokens of WikiText-2 ``split``, plus the blocks' parameter counts. The default
    is the validation split: an allocation derived from sensitivities must not be tuned on the
    test text its runs are evaluated on. With ``only_stored``,
    None when it has not been computed yet."""
    from . import data, sensitivity as sens
    from .provenance import model_record, now, versions

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    if units not in UNITS:
        raise PrunelibError(f"unknown units '{units}'; use one of {', '.join(UNITS)}")
    if method not in METHODS:
        raise PrunelibError(f"unknown method '{method}'; use one of {', '.join(METHODS)}")
    definition = {"kind": "sensitivity", "model": profile.model, "method": method, "units": units,
                  "sparsity": check_sparsity(sparsity), "nsamples": profile.nsamples,
                  "calib_seqlen": profile.calib_seqlen, "seed": profile.seed, "eval_seqlen": eval_seqlen,
                  "eval_windows": eval_windows, "split": split, "device": profile.device, "version": __version__}
    path = Path(root or profile_root(profile)) / f"sensitivity-{method}-{units}-{_key(definition)}.json"

    def compute_record() -> dict:
        start = time.perf_counter()
        model, tokenizer = _MODELS.get(profile.model, profile.device)
        record = {"run": definition, "model": model_record(profile.model, model)}
        statistics = None
        if STATISTIC[method] is not None:
            calibration, record["calibration"] = data.c4_calibration(
                tokenizer, profile.nsamples, profile.calib_seqlen, profile.seed)
            statistics = sens.collect_statistics(model, calibration, STATISTIC[method], device=profile.device,
                                                 quiet=quiet)
        tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, split)
        grouping = {"block": sens.units_by_block, "type": sens.units_by_type, "linear": sens.units_by_linear}[units]
        record.update(sens.sensitivity(model, tokens, grouping(model), statistics, method=method, sparsity=sparsity,
                                       seqlen=eval_seqlen, max_windows=eval_windows, quiet=quiet))
        record.update(block_parameters=sens.block_parameters(model), versions=versions(), finished=now(),
                      seconds=time.perf_counter() - start)
        return record

    return cached(path, definition, compute_record, force=force, only_stored=only_stored)


def outlier_result(
    profile: Profile | str | None = None, *, m: float = 5.0, root: Path | str | None = None, force: bool = False,
    quiet: bool = False, only_stored: bool = False,
) -> dict | None:
    """Cached OWL outlier ratio of every block (Wanda scores of the dense model, threshold ``m`` x mean);
    with ``only_stored``, None when it has not been computed yet."""
    from . import data, sensitivity as sens
    from .provenance import model_record, now, versions

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    definition = {"kind": "outliers", "model": profile.model, "m": m, "nsamples": profile.nsamples,
                  "calib_seqlen": profile.calib_seqlen, "seed": profile.seed, "device": profile.device,
                  "version": __version__}
    path = Path(root or profile_root(profile)) / f"outliers-m{m:g}-{_key(definition)}.json"

    def compute_record() -> dict:
        model, tokenizer = _MODELS.get(profile.model, profile.device)
        calibration, source = data.c4_calibration(tokenizer, profile.nsamples, profile.calib_seqlen, profile.seed)
        norms = sens.collect_statistics(model, calibration, "norms", device=profile.device, quiet=quiet)
        return {"run": definition, "model": model_record(profile.model, model), "calibration": source,
                "ratios": sens.block_outlier_ratios(model, norms, m), "block_parameters": sens.block_parameters(model),
                "versions": versions(), "finished": now()}

    return cached(path, definition, compute_record, force=force, only_stored=only_stored)


def run_all(specs: Iterable[Run], *, root: Path | str | None = None, force: bool = False, quiet: bool = False) -> list[dict]:
    """:func:`run` for many runs, with a progress bar that names the current run. A run another
    process is computing (see :func:`claim`) is skipped and left out of the records, so starting
    the same command twice uses two workers."""
    specs = list(specs)
    records = []
    with tqdm(specs, desc="runs", unit="run", disable=quiet) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.name)
            try:
                records.append(run(spec, root=root, force=force, quiet=quiet))
            except Busy as busy:
                bar.write(f"skipped: {busy}")
    return records


def profile_root(profile: Profile | str | None = None) -> Path:
    """Where a profile's results live: ``results/experiments/<profile>/``."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    return RESULTS / profile.name


# --- the book's suites ------------------------------------------------------------------------

SWEEP_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 9))


def sweep_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 6: dense, then 10% ... 80% unstructured, 2:4 and 4:8 for every method. The dense,
    50% and 2:4 runs also measure zero-shot accuracy on every task (the profile's ``zero_shot_limit``)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    accuracy = dict(zero_shot=ZERO_SHOT_TASKS, zero_shot_limit=profile.zero_shot_limit)
    runs = [Run.from_profile(profile, **accuracy)]
    for method in METHODS:
        runs += [Run.from_profile(profile, method=method, sparsity=s, **(accuracy if s == 0.5 else {}))
                 for s in SWEEP_SPARSITIES]
        runs += [Run.from_profile(profile, method=method, nm=nm, **(accuracy if nm == "2:4" else {}))
                 for nm in ("2:4", "4:8")]
    return runs


ALLOCATION_TARGETS = (0.5, 0.6, 0.7)
#: clip range of the inverse-sensitivity rule around the target, and OWL's (M, lambda) (the OWL paper's defaults)
INVERSE_SPREAD = 0.1
OWL_M, OWL_LAMBDA = 5.0, 0.08


def allocation_suite(profile: Profile | str | None = None, *, quiet: bool = False) -> list[Run]:
    """Chapter 7: uniform, inverse-sensitivity and OWL per-block sparsity for Wanda and SparseGPT
    at 50%, 60% and 70%. Computes (or reads) the block sensitivities and outlier ratios first."""
    from .allocate import inverse_sensitivity, owl

    outliers = outlier_result(profile, m=OWL_M, quiet=quiet)
    uniform = {(spec.method, spec.sparsity): spec for spec in sweep_suite(profile) if spec.nm is None}
    runs = []
    for method in ("wanda", "sparsegpt"):
        sensitivity = sensitivity_result(profile, method=method, units="block", quiet=quiet)
        increase = [sensitivity["increase"][str(b)] for b in range(len(sensitivity["block_parameters"]))]
        weights = sensitivity["block_parameters"]
        for target in ALLOCATION_TARGETS:
            runs.append(uniform[method, target])  # the sweep's run, so its result is shared
            inverse = inverse_sensitivity(increase, target, weights, low=target - INVERSE_SPREAD,
                                          high=target + INVERSE_SPREAD)
            runs.append(Run.from_profile(profile, method=method, sparsity=target, block_sparsity=tuple(inverse),
                                         label="inverse-sensitivity"))
            runs.append(Run.from_profile(profile, method=method, sparsity=target,
                                         block_sparsity=tuple(owl(outliers["ratios"], target, weights, lam=OWL_LAMBDA)),
                                         label="owl"))
    return runs


#: chapter 7's measurements besides runs: (method, units) of the sensitivities, and OWL's outlier ratios
SENSITIVITIES = (("wanda", "block"), ("sparsegpt", "block"), ("wanda", "type"), ("wanda", "linear"))


def sensitivity_suite(profile: Profile | str | None = None, *, only_stored: bool = False,
                      quiet: bool = False) -> dict[str, dict | None]:
    """Chapter 7's sensitivities (:data:`SENSITIVITIES`) and outlier ratios, computed where missing
    (or None with ``only_stored``), keyed ``"sensitivity-<method>-<units>"`` and ``"outliers"``."""
    results = {f"sensitivity-{method}-{units}": sensitivity_result(profile, method=method, units=units, quiet=quiet,
                                                                  only_stored=only_stored)
               for method, units in SENSITIVITIES}
    results["outliers"] = outlier_result(profile, m=OWL_M, quiet=quiet, only_stored=only_stored)
    return results


#: chapter 8's group size: divides SmolLM2's 576 and 1536 inputs and every 7B model's
QUANT_GROUP = 64


def quantization_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 8: float16 storage, INT8 and INT4 (RTN and GPTQ), and quantization stacked on 50%
    and 2:4 pruning (GPTQ with the mask fixed, and SparseGPT's joint mode), every run stored as a
    compact file whose bytes are measured."""
    p, int4 = profile, f"int4-g{QUANT_GROUP}"
    return [
        Run.from_profile(p, compact=True),
        Run.from_profile(p, method="wanda", sparsity=0.5, compact=True),
        Run.from_profile(p, method="wanda", nm="2:4", compact=True),
        Run.from_profile(p, quantize="int8", quant_method="rtn"),
        Run.from_profile(p, quantize="int8", quant_method="gptq"),
        Run.from_profile(p, quantize=int4, quant_method="rtn"),
        Run.from_profile(p, quantize=int4, quant_method="gptq"),
        Run.from_profile(p, method="wanda", sparsity=0.5, quantize=int4, quant_method="rtn"),
        Run.from_profile(p, method="wanda", sparsity=0.5, quantize=int4, quant_method="gptq"),
        Run.from_profile(p, method="sparsegpt", sparsity=0.5, quantize=int4, quant_method="gptq"),
        Run.from_profile(p, method="sparsegpt", sparsity=0.5, quantize=int4, quant_method="joint"),
        Run.from_profile(p, method="wanda", nm="2:4", quantize="int8", quant_method="gptq"),
        Run.from_profile(p, method="sparsegpt", nm="2:4", quantize="int8", quant_method="gptq"),
    ]


SUITES = {"sweep": sweep_suite, "sensitivity": sensitivity_suite, "allocation": allocation_suite,
          "quantization": quantization_suite}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunelib.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="ci, cpu or gpu (default $PRUNEBOOK_PROFILE, else cpu)")
    parser.add_argument("--suite", default="all", choices=("all", *SUITES))
    parser.add_argument("--list", action="store_true", help="list the runs and whether each is cached")
    parser.add_argument("--force", action="store_true", help="recompute cached runs")
    args = parser.parse_args(argv)
    try:
        profile = get_profile(args.profile)
        names = list(SUITES) if args.suite == "all" else [args.suite]
        root = profile_root(profile)
        if "sensitivity" in names:  # first: the allocation suite is derived from its results
            measured = sensitivity_suite(profile, only_stored=args.list)
            if args.list:
                for name, result in measured.items():
                    print(f"{'cached ' if result else 'missing'}  {name}")
        needed = ("sensitivity-wanda-block", "sensitivity-sparsegpt-block", "outliers")  # the allocation's inputs
        stored_now = sensitivity_suite(profile, only_stored=True) if args.list else {}
        if args.list and "allocation" in names and not all(stored_now[name] for name in needed):
            names.remove("allocation")  # listing must not start the sensitivity measurements
            print("(the allocation suite is listed once its sensitivities and outlier ratios exist)")
        specs = list(dict.fromkeys(spec for name in names if name != "sensitivity" for spec in SUITES[name](profile)))
    except PrunelibError as error:
        print(f"prunelib: error: {error}", file=sys.stderr)
        return 2
    if args.list:
        for spec in specs:
            print(f"{_state(spec.path(root))}  {os.path.relpath(spec.path(root))}")
        return 0
    run_all(specs, root=root, force=args.force)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

