"""Shared fixtures: tiny random models of every supported family, and the embedded model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILIES, VOCAB


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def tokens():
    return torch.randint(0, VOCAB, (6, 32), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M (about 15 s to load, so once per session)."""
    from prunelib.model.loading import load_model

    return load_model("smollm2-135m")
