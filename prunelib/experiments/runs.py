"""Named, cached experiment runs: what the notebooks call and the result files they render.

A :class:`Run` is everything that defines a result: model, method, sparsity (one value, one
per block, or N:M), calibration source, size and seed, the evaluation protocol, and the
prunelib version. Its result is ``<root>/<name>-<key>.json`` where ``key`` hashes that
definition, and the record names the code that computed it (:mod:`prunelib.experiments.cache`).
:func:`run` reuses a current record; a changed definition gives a new key, and changed code of
what the run executes makes the record stale, so both are computed afresh.

    prunelib experiments --profile cpu --suite sweep        # regenerate one suite
    prunelib experiments --profile cpu --suite all --list   # cached, stale, running or missing

Starting the same command again in a second shell adds a worker: each run is claimed while it
is computed (:func:`~prunelib.experiments.cache.claim`), and a worker skips the runs another
one holds; ``--executor ray`` spreads them over a Ray cluster (:mod:`prunelib.experiments.executors`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .._version import __version__
from ..core.masks import NM, check_sparsity
from ..core.methods import METHODS, get_method
from ..core.quantize import QuantSpec
from ..errors import PrunelibError
from ..eval.zero_shot import ZERO_SHOT_TASKS
from ..model.quantize import QUANT_METHODS, check_quant_method
from .cache import cached, definition_key, results_root
from .code import code_hash, reached
from .profiles import Profile, get_profile

#: lm-eval batch size of the runs: 1.3x faster than 1 on a CPU thread, same answers (padding is masked)
ZERO_SHOT_BATCH = 16
#: modules a run executes only when it uses the feature (left out of the code hash otherwise)
OPTIONAL_CODE = {
    "zero_shot": ("prunelib.eval.zero_shot",),
    "quantize": ("prunelib.model.quantize", "prunelib.core.gptq"),
    "compact": ("prunelib.storage.compact", "prunelib.storage.packing", "prunelib.storage.formats"),
}


def method_code(methods: tuple[str, ...], *entries: str, optional: tuple[str, ...] = ()) -> str:
    """The code hash of what ``entries`` reach, without the modules of pruning methods other than
    ``methods`` and of the :data:`OPTIONAL_CODE` parts other than ``optional``."""
    others = {METHODS[name].module for name in METHODS if name not in methods}
    unused = {module for part, modules in OPTIONAL_CODE.items() if part not in optional for module in modules}
    needed = {METHODS[name].module for name in methods} | {m for part in optional for m in OPTIONAL_CODE[part]}
    return code_hash(reached(entries, exclude=(others | unused) - needed))


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
            object.__setattr__(self, "quantize", str(QuantSpec.parse(self.quantize)))
            object.__setattr__(self, "quant_method", self.quant_method or "gptq")
            object.__setattr__(self, "compact", True)
            check_quant_method(self.quant_method, self.method)
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
        pruning = self.method != "dense" and get_method(self.method).uses_calibration
        return pruning or (self.quant_method is not None and QUANT_METHODS[self.quant_method].uses_calibration)

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
        return definition_key(self.definition())

    @property
    def code(self) -> str:
        """The hash of the code this run executes (:func:`method_code`)."""
        optional = tuple(part for part, used in (("zero_shot", self.zero_shot), ("quantize", self.quantize),
                                                   ("compact", self.compact)) if used)
        return method_code(() if self.method == "dense" else (self.method,), __name__, optional=optional)

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
        return results_root(root) / f"{self.name}-{self.key}.json"


class _Models:
    """Keeps one loaded model and its dense weights, restored before every run (no reload)."""

    def __init__(self):
        self.name = self.model = self.tokenizer = self.dense = None

    def get(self, name: str, device: str):
        from ..model.loading import load_model

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
    from .. import data
    from ..eval.perplexity import perplexity
    from ..model.provenance import model_record, now, versions
    from ..model.prune import measure_sparsity, prune_model

    start = time.perf_counter()
    model, tokenizer = _MODELS.get(spec.model, spec.device)
    record = {"name": spec.name, "key": spec.key, "run": spec.definition(), "model": model_record(spec.model, model)}
    calibration = None
    if spec.uses_calibration:
        calibration, record["calibration"] = data.c4_calibration(tokenizer, spec.nsamples, spec.calib_seqlen, spec.seed)
    quantized: dict = {}
    joint = ({"quantize": spec.quantize, "quantized": quantized}
             if spec.quant_method and QUANT_METHODS[spec.quant_method].joint else {})
    if spec.method != "dense":
        sparsity = list(spec.block_sparsity) if spec.block_sparsity is not None else spec.sparsity
        report = prune_model(model, calibration, method=spec.method, sparsity=sparsity, nm=spec.nm, group=spec.group,
                             permute=spec.permute, device=spec.device, quiet=quiet, **joint)
        record["prune"] = report
    else:
        record["prune"] = {"prune_seconds": 0.0, **measure_sparsity(model)}
    if spec.quantize and not QUANT_METHODS[spec.quant_method].joint:
        from ..model.quantize import quantize_model

        record["quantize"], quantized = quantize_model(model, calibration, spec=spec.quantize, method=spec.quant_method,
                                                       device=spec.device, quiet=quiet)
    if spec.compact:
        from ..storage.compact import round_to_float16

        round_to_float16(model, quantized)  # evaluate exactly what the compact file stores
        record["prune"].update(measure_sparsity(model))  # quantization may round kept weights to zero
    record["sparsity"] = record["prune"]["sparsity"]
    tokens, record["eval_data"] = data.wikitext2_tokens(tokenizer, "test")
    record["eval"] = perplexity(model, tokens, seqlen=spec.eval_seqlen, max_windows=spec.max_windows, quiet=quiet)
    record["ppl"] = record["eval"]["ppl"]
    if spec.zero_shot:
        from ..eval.zero_shot import zero_shot

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

    from ..model.architecture import prunable_linears, weight_matrix
    from ..storage.compact import save_compact
    from ..storage.formats import formula_bytes
    from ..storage.packing import packed_bytes

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


def run(spec: Run, *, root: Path | str | None = None, force: bool = False, quiet: bool = False) -> dict:
    """The result of ``spec``: read from its file when current (and ``force`` is off), else
    computed and written."""
    return cached(spec.path(root), spec.definition(), spec.code, lambda: compute(spec, quiet=quiet), force=force)


def stored(spec: Run, *, root: Path | str | None = None) -> dict | None:
    """The stored result of ``spec`` (marked ``"stale"`` when older code computed it), or None when
    it has not been computed. Never computes."""
    return cached(spec.path(root), spec.definition(), spec.code, None, only_stored=True)


def profile_root(profile: Profile | str | None = None, root: Path | str | None = None) -> Path:
    """Where a profile's results live: ``<results root>/<profile>/``."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    return results_root(root) / profile.name


