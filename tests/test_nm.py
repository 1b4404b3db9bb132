"""N:M channel permutation: the objective, brute force on small matrices, and the model-level
guarantee that reordering channels changes nothing until the mask is applied."""

import itertools

import pytest
import torch
from tiny_models import MLP_FAMILIES, tiny_model

from prunelib.core.masks import NM, nm_mask
from prunelib.core.permutation import retained_score, search_permutation, striped_order
from prunelib.errors import PrunelibError
from prunelib.model.architecture import decoder_blocks, mlp_layout, prunable_linears, weight_matrix
from prunelib.model.channels import permute_mlp_channels
from prunelib.model.prune import prune_model

TWO_FOUR = NM(2, 4)


def _best_by_brute_force(scores, pattern):
    """Highest retained score over all ways to split the columns into groups (order inside a group is irrelevant)."""
    cols = scores.shape[1]
    best = -1.0
    for first in itertools.combinations(range(1, cols), pattern.m - 1):  # column 0 is in the first group
        rest = [c for c in range(1, cols) if c not in first]
        for second in itertools.combinations(rest, pattern.m):
            third = [c for c in rest if c not in second]
            perm = torch.tensor([0, *first, *second, *third])
            best = max(best, retained_score(scores[:, perm], pattern).item())
    return best


def test_retained_score_is_what_the_nm_mask_keeps():
    scores = torch.rand(5, 16, generator=torch.Generator().manual_seed(0))
    for pattern in (TWO_FOUR, NM(4, 8), NM(1, 4)):
        kept = scores[nm_mask(scores, pattern)].sum()
        assert retained_score(scores, pattern) == pytest.approx(kept.item(), rel=1e-6)


def test_striped_order_spreads_the_strongest_columns_over_groups():
    scores = torch.zeros(2, 8)
    scores[:, :2] = 10.0  # both outliers in the first group of 4
    perm = striped_order(scores, TWO_FOUR)
    assert sorted(perm.tolist()) == list(range(8))
    assert {perm.tolist().index(0) // 4, perm.tolist().index(1) // 4} == {0, 1}


@pytest.mark.parametrize("seed", range(6))
def test_exhaustive_search_is_a_local_optimum_and_close_to_the_global_one(seed):
    scores = torch.rand(3, 12, generator=torch.Generator().manual_seed(seed)) ** 3
    perm = search_permutation(scores, TWO_FOUR, exhaustive=True)
    assert sorted(perm.tolist()) == list(range(12))
    found = retained_score(scores[:, perm], TWO_FOUR).item()
    assert found >= retained_score(scores, TWO_FOUR).item() - 1e-6
    for a, b in itertools.combinations(range(12), 2):  # no single swap improves
        swapped = perm.clone()
        swapped[[a, b]] = swapped[[b, a]]
        assert retained_score(scores[:, swapped], TWO_FOUR).item() <= found + 1e-5
    best = _best_by_brute_force(scores, TWO_FOUR)
    assert found <= best + 1e-5
    assert found >= 0.98 * best


def test_colliding_outliers_are_separated_exactly():
    scores = torch.ones(4, 8)
    scores[:, [0, 1, 2]] = 100.0  # three outlier columns fighting for two slots in group 0
    perm = search_permutation(scores, TWO_FOUR)
    assert retained_score(scores[:, perm], TWO_FOUR) == _best_by_brute_force(scores, TWO_FOUR) == 4 * (300 + 1)


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_sampled_search_never_loses_score(pattern):
    scores = torch.randn(16, 64, generator=torch.Generator().manual_seed(3)).abs()
    scores[:, 5] *= 20  # outlier input features, as in LLM activations
    scores[:, 6] *= 20
    perm = search_permutation(scores, pattern, rounds=20, candidates=512)
    assert sorted(perm.tolist()) == list(range(64))
    assert retained_score(scores[:, perm], NM.parse(pattern)) > retained_score(scores, NM.parse(pattern))


def test_search_refuses_bad_input():
    with pytest.raises(PrunelibError, match="divisible"):
        search_permutation(torch.rand(2, 10), "2:4")
    with pytest.raises(PrunelibError, match="rounds"):
        search_permutation(torch.rand(2, 8), "2:4", rounds=-1)


@pytest.mark.parametrize("family", MLP_FAMILIES)
def test_permuting_mlp_channels_keeps_the_model_function(family, tokens):
    model = tiny_model(family)
    reference = model(tokens).logits
    for block in decoder_blocks(model):
        width = weight_matrix(block.get_submodule(mlp_layout(block).consumer)).shape[1]
        permute_mlp_channels(block, torch.randperm(width, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(model(tokens).logits, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", MLP_FAMILIES)
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_permuted_nm_pruning_keeps_the_pattern_and_only_touches_the_mlp(family, tokens, method):
    plain, permuted = tiny_model(family), tiny_model(family)
    prune_model(plain, tokens, method=method, nm="2:4", quiet=True)
    prune_model(permuted, tokens, method=method, nm="2:4", permute=True, quiet=True)
    layout = mlp_layout(decoder_blocks(plain)[0])
    consumer, producers = layout.consumer, layout.producers
    for (name, a), (_, b) in zip(prunable_linears(plain).items(), prunable_linears(permuted).items()):
        Wa, Wb = weight_matrix(a), weight_matrix(b)
        assert torch.all((Wb.reshape(Wb.shape[0], -1, 4) != 0).sum(-1) <= 2), name
        block, layer = name.split(".", 1)
        # layers outside the MLP see the same inputs in block 0 (and everywhere for magnitude)
        if layer not in (consumer, *producers) and (block == "0" or method == "magnitude"):
            torch.testing.assert_close(Wa, Wb, msg=name)


@pytest.mark.parametrize("family", MLP_FAMILIES)
def test_permutation_keeps_more_magnitude_in_the_down_projection(family, tokens):
    plain, permuted = tiny_model(family), tiny_model(family)
    dense = tiny_model(family)
    prune_model(plain, tokens, method="magnitude", nm="2:4", quiet=True)
    report = prune_model(permuted, tokens, method="magnitude", nm="2:4", permute=True, quiet=True)
    consumer = mlp_layout(decoder_blocks(dense)[0]).consumer
    assert set(report["retained_score"]) == {f"{i}.{consumer}" for i in range(len(decoder_blocks(dense)))}
    for index in range(len(decoder_blocks(dense))):
        kept_plain = weight_matrix(decoder_blocks(plain)[index].get_submodule(consumer)).abs().sum()
        kept_permuted = weight_matrix(decoder_blocks(permuted)[index].get_submodule(consumer)).abs().sum()
        assert kept_permuted > kept_plain
        fractions = report["retained_score"][f"{index}.{consumer}"]
        total = weight_matrix(decoder_blocks(dense)[index].get_submodule(consumer)).abs().sum()
        assert fractions["identity"] == pytest.approx((kept_plain / total).item(), rel=1e-5)
        assert fractions["permuted"] == pytest.approx((kept_permuted / total).item(), rel=1e-5)


def test_permute_needs_an_nm_pattern(tokens):
    with pytest.raises(PrunelibError, match="N:M"):
        prune_model(tiny_model("llama"), tokens, method="wanda", sparsity=0.5, permute=True, quiet=True)
