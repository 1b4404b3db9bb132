"""Repository-wide pytest hooks.

nbval collection: skip notebooks that declare they need a GPU when none is present.

A notebook opts in with the metadata ``{"prunebook": {"requires_gpu": true}}``.
"""

import json

import pytest


def _requires_gpu(path) -> bool:
    try:
        return bool(json.loads(open(path, encoding="utf-8").read())["metadata"].get("prunebook", {}).get("requires_gpu"))
    except (OSError, ValueError, KeyError):
        return False


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="notebook metadata prunebook.requires_gpu: no CUDA GPU here")
    for item in items:
        if str(item.fspath).endswith(".ipynb") and _requires_gpu(item.fspath):
            item.add_marker(skip)
