"""The book's own code: what the chapters render, not what a user of prunelib needs.

The notebooks import it as ``prunebook``; it imports prunelib, never the other way round, so
that the library people copy holds no chapter's names or sentences.
"""

#: how the book names the models it measures (prunelib and the run records use the ids)
MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M", "gemma3-270m": "Gemma-3-270M"}


def model_name(model: str) -> str:
    """The book's name of a model id (``"smollm2-135m"`` -> ``"SmolLM2-135M"``); another id as given."""
    return MODEL_NAMES.get(model, model)


#: what two records' ``versions`` must share for one definition to give one number to the last digit
ENVIRONMENT = ("python", "platform", "torch", "transformers", "accelerate", "gguf", "datasets", "numpy")


def environment(record: dict | None = None) -> tuple:
    """The :data:`ENVIRONMENT` entries of a record's ``versions``, or of this machine's without one."""
    from prunelib.model.provenance import versions

    found = versions() if record is None else record.get("versions", {})
    return tuple(found.get(key) for key in ENVIRONMENT)


def same_environment(record: dict, other: dict | None = None) -> bool:
    """Whether ``record`` was computed on the platform and with the library versions of ``other``
    (default: this machine). Only then must a run of the same definition, with the same thread
    count, land on its number to the last digit: the math libraries choose their kernels by
    processor, and the walk carries a last-digit change on to other masks."""
    return environment(record) == environment(other)
