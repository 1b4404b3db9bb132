"""The book's own code: what the chapters render, not what a user of prunelib needs.

The notebooks import it as ``prunebook``; it imports prunelib, never the other way round, so
that the library people copy holds no chapter's names or sentences.
"""

#: how the book names the models it measures (prunelib and the run records use the ids)
MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M", "gemma3-270m": "Gemma-3-270M"}


def model_name(model: str) -> str:
    """The book's name of a model id (``"smollm2-135m"`` -> ``"SmolLM2-135M"``); another id as given."""
    return MODEL_NAMES.get(model, model)
