"""Sensitivity: one value per unit, dense weights restored, and the same number as pruning that
unit alone with prune_model; OWL outlier ratios from the dense statistics."""

import pytest
import torch
from tiny_models import VOCAB, tiny_model

from prunelib.core.allocate import outlier_ratio
from prunelib.core.wanda import wanda_scores
from prunelib.eval.perplexity import perplexity
from prunelib.eval.sensitivity import (
    block_outlier_ratios,
    block_parameters,
    collect_statistics,
    sensitivity,
    units_by_block,
    units_by_linear,
    units_by_type,
)
from prunelib.model.architecture import block_linears, decoder_blocks, prunable_linears, weight_matrix
from prunelib.model.prune import prune_model

EVAL = torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(5))


def test_units_cover_every_linear_once(family):
    model = tiny_model(family)
    names = set(prunable_linears(model))
    for units in (units_by_block(model), units_by_type(model), units_by_linear(model)):
        flat = [name for unit in units.values() for name in unit]
        assert sorted(flat) == sorted(names)
    assert list(units_by_block(model)) == [str(i) for i in range(model.config.num_hidden_layers)]


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_one_value_per_block_equal_to_pruning_that_block_alone(tokens, method):
    model = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kind = {"magnitude": None, "wanda": "norms", "sparsegpt": "hessian"}[method]
    stats = collect_statistics(model, tokens, kind, quiet=True) if kind else None
    result = sensitivity(model, EVAL, units_by_block(model), stats, method=method, sparsity=0.5, seqlen=16,
                         max_windows=None, quiet=True)
    assert set(result["ppl"]) == {"0", "1"}
    for key, value in model.state_dict().items():  # dense weights restored exactly
        assert torch.equal(value, before[key]), key
    reference = tiny_model("llama")
    prune_model(reference, tokens, method=method, sparsity=[0.5, 0.0], quiet=True)
    expected = perplexity(reference, EVAL, seqlen=16, quiet=True)["ppl"]
    assert result["ppl"]["0"] == pytest.approx(expected, rel=1e-5)
    assert result["increase"]["0"] == pytest.approx(result["ppl"]["0"] - result["dense"])


def test_outlier_ratios_follow_the_definition(tokens):
    model = tiny_model("llama")
    norms = collect_statistics(model, tokens, "norms", quiet=True)
    ratios = block_outlier_ratios(model, norms, m=2.0)
    assert len(ratios) == len(decoder_blocks(model)) and all(0 <= r <= 1 for r in ratios)
    block = decoder_blocks(model)[1]
    scores = torch.cat([wanda_scores(weight_matrix(m), norms[f"1.{n}"].norms).reshape(-1)
                        for n, m in block_linears(block).items()])
    assert ratios[1] == pytest.approx(outlier_ratio(scores, 2.0))
    assert block_parameters(model) == [sum(weight_matrix(m).numel() for m in block_linears(b).values())
                                       for b in decoder_blocks(model)]
