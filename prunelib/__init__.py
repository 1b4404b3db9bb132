"""prunelib: one-shot pruning of Hugging Face causal language models.

The math lives in pure functions (:mod:`prunelib.masks`, :mod:`prunelib.methods`,
:mod:`prunelib.stats`); the machinery that walks a model block by block lives in
:mod:`prunelib.walk` and :mod:`prunelib.prune`.
"""

__version__ = "0.1.0"

from .errors import PrunelibError  # noqa: E402

__all__ = ["PrunelibError", "__version__"]
