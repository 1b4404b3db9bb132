"""The book's suites: the runs and measurements each chapter renders."""

from __future__ import annotations

from dataclasses import replace

from ..core.allocate import inverse_sensitivity, owl
from ..core.methods import METHODS
from ..eval.zero_shot import ZERO_SHOT_TASKS
from .measurements import outlier_result, sensitivity_result
from .profiles import Profile, get_profile
from .runs import Run

SWEEP_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 9))


def sweep_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 8: dense, then 10% ... 80% unstructured, 2:4 and 4:8 for every method. The dense,
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


def allocation_suite(profile: Profile | str | None = None, *, quiet: bool = False,
                     only_stored: bool = False) -> list[Run]:
    """Chapter 9: uniform, inverse-sensitivity and OWL per-block sparsity for Wanda and SparseGPT
    at 50%, 60% and 70%, perplexity only. Computes (or reads) the block sensitivities and outlier ratios first;
    with ``only_stored`` it reads them as stored (stale ones too) and computes nothing."""
    outliers = outlier_result(profile, m=OWL_M, quiet=quiet, only_stored=only_stored)
    # perplexity only: the sweep's runs at 60% and 70%, the core table's (seed 0) at 50%, on either model
    uniform = {(spec.method, spec.sparsity): replace(spec, zero_shot=(), zero_shot_limit=None)
               for spec in sweep_suite(profile) if spec.nm is None}
    runs = []
    for method in ("wanda", "sparsegpt"):
        sensitivity = sensitivity_result(profile, method=method, units="block", quiet=quiet, only_stored=only_stored)
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


#: chapter 9's measurements besides runs: (method, units) of the sensitivities, and OWL's outlier ratios
SENSITIVITIES = (("wanda", "block"), ("sparsegpt", "block"), ("wanda", "type"), ("wanda", "linear"))


def sensitivity_suite(profile: Profile | str | None = None, *, only_stored: bool = False,
                      quiet: bool = False) -> dict[str, dict | None]:
    """Chapter 9's sensitivities (:data:`SENSITIVITIES`) and outlier ratios, computed where missing
    (or None with ``only_stored``), keyed ``"sensitivity-<method>-<units>"`` and ``"outliers"``."""
    # the outlier ratios first: one walk over the calibration data, and with the block sensitivities
    # the allocation suite's inputs, so they exist before the long per-linear measurement
    outliers = outlier_result(profile, m=OWL_M, quiet=quiet, only_stored=only_stored)
    results = {f"sensitivity-{method}-{units}": sensitivity_result(profile, method=method, units=units, quiet=quiet,
                                                                  only_stored=only_stored)
               for method, units in SENSITIVITIES}
    return {**results, "outliers": outliers}


#: chapter 10's group size: divides SmolLM2's 576 and 1536 inputs and every 7B model's
QUANT_GROUP = 64


def quantization_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 10: float16 storage, INT8 and INT4 (RTN and GPTQ), and quantization stacked on 50%
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


#: calibration seeds of the core table; seed 0 is every other suite's draw
SEEDS = (0, 1, 2)
#: the second model each embedded model's core table is repeated on (does a finding transfer?)
TRANSFER = {"smollm2-135m": "gemma3-270m"}
#: the core table's pruned columns: (method, unstructured sparsity or None, N:M or None)
CORE = (("magnitude", 0.5, None), ("magnitude", None, "2:4"), ("wanda", 0.5, None), ("wanda", None, "2:4"),
        ("sparsegpt", 0.5, None), ("sparsegpt", None, "2:4"))


def core_suite(profile: Profile | str | None = None, *, model: str | None = None,
               seeds: tuple[int, ...] = SEEDS) -> list[Run]:
    """Chapters 8 and 12's core table on one model (default the profile's): dense, then magnitude,
    Wanda and SparseGPT at 50% and 2:4, each calibrated method once per seed. Perplexity only;
    a run that uses no calibration (dense, magnitude) has no seed in its definition, so it is one
    run whatever ``seeds`` says: its spread over calibration draws is exactly zero."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    model = model or profile.model
    runs = [Run.from_profile(profile, model=model)]
    for position, seed in enumerate(seeds):  # a whole table per seed: a partial suite is still a table
        for method, sparsity, nm in CORE:
            if position and not METHODS[method].uses_calibration:
                continue
            pattern = {"nm": nm} if nm else {"sparsity": sparsity}
            runs.append(Run.from_profile(profile, model=model, method=method, seed=seed, **pattern))
    return runs


def seeds_suite(profile: Profile | str | None = None) -> list[Run]:
    """:func:`core_suite` on the profile's model and on its :data:`TRANSFER` model, the first model's
    runs first. The ``ci`` profile proves the cells run and keeps to its own model."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    second = TRANSFER.get(profile.model) if profile.name != "ci" else None
    return [spec for model in (profile.model, *([second] if second else [])) for spec in core_suite(profile, model=model)]


#: chapter 8's zero-shot comparison: the tasks on which the dense model's 95% interval lies above
#: chance in the sweep's 100-document pilot, and the documents per task that give 80% power to the
#: pilot's gap of mean accuracy between dense and both 50% runs (tests/test_core_suites.py)
ZERO_SHOT_KEPT = ("arc_easy", "hellaswag", "piqa")
ZERO_SHOT_DOCUMENTS = 500


def zero_shot_suite(profile: Profile | str | None = None) -> list[Run]:
    """The core table's runs (seed 0) scored on :data:`ZERO_SHOT_KEPT` with
    :data:`ZERO_SHOT_DOCUMENTS` documents each (the ``ci`` profile: its own few)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    limit = profile.zero_shot_limit if profile.name == "ci" else ZERO_SHOT_DOCUMENTS
    return [replace(spec, zero_shot=ZERO_SHOT_KEPT, zero_shot_limit=limit)
            for spec in core_suite(profile, seeds=(profile.seed,))]


#: the transfer sweep's sparsities: the sweep's up to 70%, where every method still tells something
TRANSFER_SPARSITIES = tuple(s for s in SWEEP_SPARSITIES if s <= 0.7)


def transfer_suite(profile: Profile | str | None = None) -> list[Run]:
    """Chapter 8's sweep on the profile's :data:`TRANSFER` model: dense, then
    :data:`TRANSFER_SPARSITIES` unstructured for every method, seed 0, perplexity only, so that the
    dense and 50% runs are the seeds suite's. Empty for a model without a transfer model (and for
    ``ci``, which keeps to its own model). Its block sensitivities and allocation runs:
    ``PRUNEBOOK_MODEL=<transfer model> prunelib experiments --suite allocation``."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    model = TRANSFER.get(profile.model) if profile.name != "ci" else None
    if model is None:
        return []
    # sparsity by sparsity, every method at each: a partial suite already settles the low-sparsity findings
    return [Run.from_profile(profile, model=model)] + [
        Run.from_profile(profile, model=model, method=method, sparsity=s) for s in TRANSFER_SPARSITIES for method in METHODS]


SUITES = {"sweep": sweep_suite, "seeds": seeds_suite, "zero-shot": zero_shot_suite, "transfer": transfer_suite,
          "sensitivity": sensitivity_suite, "allocation": allocation_suite, "quantization": quantization_suite}
