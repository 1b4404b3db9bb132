"""prunelib: one-shot pruning of large language models, layered so that a part can be copied.

The names a user needs, one import away::

    import prunelib as pl

    model, tokenizer = pl.load_model("smollm2-135m")                # embedded, HF id, directory or .gguf
    calibration, _ = pl.calibration(tokenizer, nsamples=16, seqlen=256)   # C4 windows
    report = pl.prune_model(model, calibration, method="wanda", sparsity=0.5)   # or nm="2:4"
    tokens, _ = pl.wikitext2_tokens(tokenizer)
    print(pl.perplexity(model, tokens, seqlen=256, max_windows=4)["ppl"], report["sparsity"])
    pl.save(model, "smollm2-wanda50")                                 # compact sparse file
    model = pl.load("smollm2-wanda50")

The layers, each importing only those before it (``errors`` and ``_version`` are shared by all):

* :mod:`prunelib.core`: pure math on tensors (masks, OBS, SparseGPT, Wanda, magnitude, GPTQ,
  structured scores, permutation, allocation); needs torch only;
* :mod:`prunelib.data`: WikiText-2 and C4 windows from local files or the hub;
* :mod:`prunelib.model`: loading, architecture facts, the block walk, prune / shrink / quantize /
  fine-tune a model, provenance;
* :mod:`prunelib.storage`: sparse formats, packing, compact save / load;
* :mod:`prunelib.eval`: perplexity, zero-shot accuracy, sensitivity, speed;
* :mod:`prunelib.experiments`: run definitions, the cache, suites, executors;
* :mod:`prunelib.report`: the tables and figures the book renders;
* :mod:`prunelib.cli`: the ``prunelib`` command.

The names below are loaded on first use, so ``import prunelib`` stays cheap.
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .errors import PrunelibError

#: public name -> (module, attribute)
_API = {
    "load_model": ("prunelib.model.loading", "load_model"),
    "calibration": ("prunelib.data", "c4_calibration"),
    "wikitext2_tokens": ("prunelib.data", "wikitext2_tokens"),
    "METHODS": ("prunelib.core.methods", "METHODS"),
    "prune_model": ("prunelib.model.prune", "prune_model"),
    "measure_sparsity": ("prunelib.model.prune", "measure_sparsity"),
    "shrink": ("prunelib.model.structured", "prune_structured"),
    "quantize_model": ("prunelib.model.quantize", "quantize_model"),
    "SparsityKeeper": ("prunelib.model.finetune", "SparsityKeeper"),
    "finetune": ("prunelib.model.finetune", "train"),
    "perplexity": ("prunelib.eval.perplexity", "perplexity"),
    "zero_shot": ("prunelib.eval.zero_shot", "zero_shot"),
    "save": ("prunelib.storage.compact", "save_compact"),
    "load": ("prunelib.storage.compact", "load_compact"),
    "Run": ("prunelib.experiments.runs", "Run"),
    "run": ("prunelib.experiments.runs", "run"),
}

__all__ = ["PrunelibError", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'prunelib' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
