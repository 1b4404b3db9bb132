"""Chapter 9's measurements besides runs, cached like runs: the sensitivity of every block (or
linear type, or linear) to pruning, and OWL's outlier ratio of every block."""

from __future__ import annotations

import time
from pathlib import Path

from .._version import __version__
from ..core.masks import check_sparsity
from ..core.methods import get_method
from ..errors import PrunelibError
from .cache import cached, definition_key
from .profiles import Profile, get_profile
from .runs import _MODELS, method_code, profile_root

UNITS = ("block", "type", "linear")


def sensitivity_result(
    profile: Profile | str | None = None, *, method: str = "wanda", units: str = "block", sparsity: float = 0.5,
    eval_seqlen: int = 1024, eval_windows: int = 2, split: str = "validation", root: Path | str | None = None,
    force: bool = False, quiet: bool = False, only_stored: bool = False,
) -> dict | None:
    """Cached :func:`prunelib.eval.sensitivity.sensitivity` of every unit (``"block"``, ``"type"`` or
    ``"linear"``) with the profile's calibration, on the first ``eval_windows`` windows of
    ``eval_seqlen`` tokens of WikiText-2 ``split``, plus the blocks' parameter counts. The default
    is the validation split: an allocation derived from sensitivities must not be tuned on the
    test text its runs are evaluated on. With ``only_stored``,
    None when it has not been computed yet."""
    from .. import data
    from ..eval import sensitivity as sens
    from ..model.provenance import model_record, now, versions

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    if units not in UNITS:
        raise PrunelibError(f"unknown units '{units}'; use one of {', '.join(UNITS)}")
    get_method(method)
    definition = {"kind": "sensitivity", "model": profile.model, "method": method, "units": units,
                  "sparsity": check_sparsity(sparsity), "nsamples": profile.nsamples,
                  "calib_seqlen": profile.calib_seqlen, "seed": profile.seed, "eval_seqlen": eval_seqlen,
                  "eval_windows": eval_windows, "split": split, "device": profile.device, "version": __version__}
    path = Path(root or profile_root(profile)) / f"sensitivity-{method}-{units}-{definition_key(definition)}.json"
    code = method_code((method,), __name__)

    def compute_record() -> dict:
        start = time.perf_counter()
        model, tokenizer = _MODELS.get(profile.model, profile.device)
        record = {"run": definition, "model": model_record(profile.model, model)}
        statistics = None
        if get_method(method).uses_calibration:
            calibration, record["calibration"] = data.c4_calibration(
                tokenizer, profile.nsamples, profile.calib_seqlen, profile.seed)
            statistics = sens.collect_statistics(model, calibration, get_method(method).statistic, device=profile.device,
                                                 quiet=quiet)
        tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, split)
        grouping = {"block": sens.units_by_block, "type": sens.units_by_type, "linear": sens.units_by_linear}[units]
        record.update(sens.sensitivity(model, tokens, grouping(model), statistics, method=method, sparsity=sparsity,
                                       seqlen=eval_seqlen, max_windows=eval_windows, quiet=quiet))
        record.update(block_parameters=sens.block_parameters(model), versions=versions(), finished=now(),
                      seconds=time.perf_counter() - start)
        return record

    return cached(path, definition, code, compute_record, force=force, only_stored=only_stored)


def outlier_result(
    profile: Profile | str | None = None, *, m: float = 5.0, root: Path | str | None = None, force: bool = False,
    quiet: bool = False, only_stored: bool = False,
) -> dict | None:
    """Cached OWL outlier ratio of every block (Wanda scores of the dense model, threshold ``m`` x mean);
    with ``only_stored``, None when it has not been computed yet."""
    from .. import data
    from ..eval import sensitivity as sens
    from ..model.provenance import model_record, now, versions

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    definition = {"kind": "outliers", "model": profile.model, "m": m, "nsamples": profile.nsamples,
                  "calib_seqlen": profile.calib_seqlen, "seed": profile.seed, "device": profile.device,
                  "version": __version__}
    path = Path(root or profile_root(profile)) / f"outliers-m{m:g}-{definition_key(definition)}.json"
    code = method_code(("wanda",), __name__)  # Wanda's scores

    def compute_record() -> dict:
        model, tokenizer = _MODELS.get(profile.model, profile.device)
        calibration, source = data.c4_calibration(tokenizer, profile.nsamples, profile.calib_seqlen, profile.seed)
        norms = sens.collect_statistics(model, calibration, "norms", device=profile.device, quiet=quiet)
        return {"run": definition, "model": model_record(profile.model, model), "calibration": source,
                "ratios": sens.block_outlier_ratios(model, norms, m), "block_parameters": sens.block_parameters(model),
                "versions": versions(), "finished": now()}

    return cached(path, definition, code, compute_record, force=force, only_stored=only_stored)
