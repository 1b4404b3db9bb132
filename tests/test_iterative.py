"""Iterative pruning: the cubic schedule, nested masks, and the exact final sparsity."""

import pytest
import torch
from tiny_models import tiny_model

from prunelib.errors import PrunelibError
from prunelib.model.architecture import prunable_linears, weight_matrix
from prunelib.model.iterative import cubic_schedule, iterative_prune
from prunelib.model.prune import measure_sparsity, prune_model


def test_cubic_schedule_closed_form():
    schedule = cubic_schedule(0.8, 4)
    assert schedule == pytest.approx([0.8 * (1 - (1 - k / 4) ** 3) for k in (1, 2, 3, 4)])
    assert schedule[-1] == pytest.approx(0.8) and schedule == sorted(schedule)
    steps = [b - a for a, b in zip([0.0] + schedule, schedule)]
    assert steps == sorted(steps, reverse=True)  # fastest first
    with pytest.raises(PrunelibError):
        cubic_schedule(0.5, 0)


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_each_step_keeps_the_zeros_of_the_last(tokens, method):
    model = tiny_model("llama")
    previous = None
    for target in cubic_schedule(0.6, 3):
        prune_model(model, tokens, method=method, sparsity=target, quiet=True)
        zeros = {n: weight_matrix(m) == 0 for n, m in prunable_linears(model).items()}
        if previous:
            assert all(torch.all(zeros[n][previous[n]]) for n in zeros)
        previous = zeros


def test_iterative_prune_reaches_the_target_exactly(tokens):
    model = tiny_model("llama")
    result = iterative_prune(model, tokens, sparsity=0.5, steps=3, recover_steps=2, batch_size=2, quiet=True)
    assert measure_sparsity(model)["sparsity"] == pytest.approx(0.5)
    assert len(result["losses"]) == 3 and all(len(step) == 2 for step in result["losses"])
    assert result["train_tokens"] == 3 * 2 * 2 * tokens.shape[1]
    with pytest.raises(PrunelibError, match="magnitude and wanda"):
        iterative_prune(model, tokens, sparsity=0.5, method="sparsegpt", quiet=True)
    with pytest.raises(PrunelibError, match="a batch of 4"):
        iterative_prune(tiny_model("llama"), tokens, sparsity=0.5, steps=3, batch_size=4, quiet=True)


def test_each_step_trains_on_its_own_rows(tokens, monkeypatch):
    """The K recovery runs see disjoint rows that together are all of them, as one run over the rows would."""
    import prunelib.model.iterative as iterative

    seen = []
    real_train = iterative.train

    def spy(model, rows, **kwargs):
        seen.append(rows.clone())
        return real_train(model, rows, **kwargs)

    monkeypatch.setattr(iterative, "train", spy)
    iterative_prune(tiny_model("llama"), tokens, sparsity=0.5, steps=3, recover_steps=1, batch_size=2, quiet=True)
    assert len(seen) == 3
    assert torch.equal(torch.cat(seen), tokens)
