import math

import pytest
import torch
from tiny_models import tiny_model

from prunelib.errors import PrunelibError
from prunelib.eval.perplexity import perplexity


def test_perplexity_equals_exp_of_models_own_mean_loss(family):
    model = tiny_model(family)
    stream = torch.randint(0, 128, (1, 16 * 5 + 7), generator=torch.Generator().manual_seed(3))
    result = perplexity(model, stream, seqlen=16, quiet=True)
    assert result["windows"] == 5 and result["available_windows"] == 5  # remainder of 7 dropped
    with torch.no_grad():
        losses = [model(w, labels=w).loss for w in stream[:, : 80].view(5, 16).unsqueeze(1)]
    assert result["ppl"] == pytest.approx(math.exp(torch.stack(losses).mean().item()), rel=1e-5)


def test_max_windows_uses_the_first_windows():
    model = tiny_model("llama")
    stream = torch.randint(0, 128, (1, 100), generator=torch.Generator().manual_seed(4))
    first_two = perplexity(model, stream, seqlen=20, max_windows=2, quiet=True)
    assert first_two["windows"] == 2 and first_two["available_windows"] == 5
    assert first_two["ppl"] == pytest.approx(perplexity(model, stream[:, :40], seqlen=20, quiet=True)["ppl"])


def test_too_few_tokens():
    with pytest.raises(PrunelibError, match="window"):
        perplexity(tiny_model("llama"), torch.zeros(1, 10, dtype=torch.long), seqlen=16, quiet=True)
