"""Structured pruning: the scores' closed forms, exact counts, least-squares refit, and real
shrinking of tiny models of every family (function kept where it must be, save and reload)."""

import pytest
import torch
from tiny_models import HEAD_FAMILIES, HIDDEN, MLP, MLP_FAMILIES, MOE_FAMILIES, NO_HEAD_PRUNING, tiny_model

from prunelib.core.stats import HessianStat, InputNormStat
from prunelib.core.structured import (
    block_scores,
    column_scores,
    grouped_keep_top,
    keep_top,
    refit_columns,
    row_scores,
    structured_mask,
)
from prunelib.errors import PrunelibError, UnsupportedModelError
from prunelib.model.architecture import (
    decoder_blocks,
    mlp_layout,
    mlp_width_key,
    prunable_linears,
    set_weight_matrix,
    weight_matrix,
)
from prunelib.model.structured import (
    count_parameters,
    head_geometry,
    per_block_widths,
    prune_structured,
    prune_structured_masks,
)

gen = torch.Generator().manual_seed(0)


def _stats(X):
    """Norm and Hessian statistics of activations ``X`` ``(tokens, in)`` seen as one sequence."""
    norms, hessian = InputNormStat(X.shape[1]), HessianStat(X.shape[1])
    norms.update(X)
    hessian.update(X)
    return norms.norms, hessian.H


def test_column_score_is_the_exact_output_energy_of_the_column():
    W, X = torch.randn(6, 10, generator=gen), torch.randn(50, 10, generator=gen)
    norms, _ = _stats(X)
    for j in range(10):
        W_without = W.clone()
        W_without[:, j] = 0
        lost = (X @ W.T - X @ W_without.T).pow(2).sum()
        assert column_scores(W, norms)[j] == pytest.approx(lost.item(), rel=1e-5)


def test_row_and_block_scores_sum_the_same_energy():
    W, norms = torch.randn(8, 12, generator=gen), torch.rand(12, generator=gen)
    energy = (W.pow(2) * norms).sum()
    assert row_scores(W, norms).sum() == pytest.approx(energy.item(), rel=1e-5)
    assert column_scores(W, norms).sum() == pytest.approx(energy.item(), rel=1e-5)
    blocks = block_scores(W, norms, block=4)
    assert blocks.shape == (2, 3)
    assert blocks[1, 2] == pytest.approx((W[4:8, 8:12].pow(2) * norms[8:12]).sum().item(), rel=1e-5)


def test_keep_top_is_exact_sorted_and_stable_under_ties():
    scores = torch.tensor([3.0, 1.0, 1.0, 1.0, 5.0, 0.5])
    assert keep_top(scores, 0.5).tolist() == [0, 1, 4]  # of the tied 1.0s the first stays
    assert keep_top(scores, 0.0).tolist() == list(range(6))
    for ratio in (0.1, 0.25, 0.5, 0.9):
        kept = keep_top(torch.randn(37, generator=gen), ratio)
        assert kept.numel() == 37 - int(37 * ratio)
        assert torch.all(kept[1:] > kept[:-1])


def test_grouped_keep_top_removes_the_same_count_in_each_group():
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 0.1, 0.2, 0.3, 0.4])
    # globally the second group would lose everything; per group each loses its lowest half
    assert grouped_keep_top(scores, 2, 0.5).tolist() == [0, 1, 6, 7]


@pytest.mark.parametrize("kind", ["row", "column", "block"])
def test_structured_masks_remove_whole_units_and_the_lowest_ones(kind):
    W, norms = torch.randn(16, 24, generator=gen), torch.rand(24, generator=gen)
    keep = structured_mask(W, norms, 0.5, kind, block=8)
    assert (~keep).sum() == W.numel() // 2
    energy = W.pow(2) * norms
    if kind == "row":
        assert torch.all(keep.all(1) | ~keep.any(1))
        kept, dropped = energy.sum(1)[keep[:, 0]], energy.sum(1)[~keep[:, 0]]
    elif kind == "column":
        assert torch.all(keep.all(0) | ~keep.any(0))
        kept, dropped = energy.sum(0)[keep[0]], energy.sum(0)[~keep[0]]
    else:
        tiles = keep.reshape(2, 8, 3, 8)
        assert torch.all(tiles.all((1, 3)) | ~tiles.any((1, 3)))
        per_tile = energy.reshape(2, 8, 3, 8).sum((1, 3))
        kept, dropped = per_tile[tiles.all((1, 3))], per_tile[~tiles.any((1, 3))]
    assert kept.min() >= dropped.max()


def test_block_size_must_tile_the_matrix():
    with pytest.raises(PrunelibError, match="tile"):
        structured_mask(torch.randn(10, 16), torch.ones(16), 0.5, "block", block=4)


def test_refit_is_the_least_squares_solution_and_beats_plain_removal():
    W, X = torch.randn(5, 12, generator=gen, dtype=torch.float64), torch.randn(200, 12, generator=gen, dtype=torch.float64)
    X[:, 3] += 2 * X[:, 7]  # make the removed columns partly predictable from the kept ones
    H = 2 / X.shape[0] * X.T @ X  # HessianStat's definition, kept in float64
    keep = torch.tensor([0, 2, 4, 5, 7, 9, 10])
    refit = refit_columns(W, H, keep, percdamp=0.0)
    target = X @ W.T
    reference = torch.linalg.lstsq(X[:, keep], target).solution.T
    torch.testing.assert_close(refit, reference, rtol=1e-8, atol=1e-8)
    error_refit = (target - X[:, keep] @ refit.T).pow(2).sum()
    error_plain = (target - X[:, keep] @ W[:, keep].T).pow(2).sum()
    assert error_refit < error_plain


def _layout_parts(block):
    layout = mlp_layout(block)
    return layout, [weight_matrix(block.get_submodule(p)) for p in layout.producers], weight_matrix(
        block.get_submodule(layout.consumer)
    )


@pytest.mark.parametrize("family", MLP_FAMILIES)
@pytest.mark.parametrize("refit", [False, True])
def test_mlp_channels_are_physically_removed(family, tokens, refit):
    model = tiny_model(family)
    hidden, channels = HIDDEN, MLP
    before = count_parameters(model)
    key = mlp_width_key(model.config, channels)
    report = prune_structured(model, tokens, mlp=0.25, refit=refit, quiet=True, batch_size=3)
    kept = channels - channels // 4
    layout = mlp_layout(decoder_blocks(model)[0])
    assert getattr(model.config, key) == report[key] == kept
    rows_per_channel = {p: 2 if p in layout.fused else 1 for p in layout.producers}  # [gate; up] fused: 2 rows
    for block in decoder_blocks(model):
        _, producers, consumer = _layout_parts(block)
        assert all(p.shape == (kept * rows_per_channel[n], hidden) for n, p in zip(layout.producers, producers))
        assert consumer.shape == (hidden, kept)
    first = decoder_blocks(model)[0]
    with_bias = sum(rows_per_channel[p] for p in layout.producers if first.get_submodule(p).bias is not None)
    per_channel = hidden * (sum(rows_per_channel.values()) + 1) + with_bias
    removed = len(decoder_blocks(model)) * (channels // 4) * per_channel
    assert report["parameters_before"] == before
    assert report["parameters_after"] == count_parameters(model) == before - removed
    assert torch.isfinite(model(tokens).logits).all()


@pytest.mark.parametrize("family", MLP_FAMILIES)
def test_channels_that_carry_nothing_go_first_and_change_nothing(family, tokens):
    model = tiny_model(family)
    dead = torch.arange(0, MLP, 4)  # a quarter of the channels
    for block in decoder_blocks(model):
        layout, _, consumer = _layout_parts(block)
        W = consumer.clone()
        W[:, dead] = 0
        set_weight_matrix(block.get_submodule(layout.consumer), W)
    reference = model(tokens).logits
    prune_structured(model, tokens, mlp=0.25, quiet=True)
    torch.testing.assert_close(model(tokens).logits, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_mlp_pruning_of_experts_is_refused_before_any_change(family, tokens):
    model = tiny_model(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        prune_structured(model, tokens, mlp=0.25, quiet=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", HEAD_FAMILIES)
@pytest.mark.parametrize("mode,heads,kv", [("query", 2, 2), ("group", 2, 1)])
def test_heads_are_removed_and_the_config_describes_them(family, tokens, mode, heads, kv):
    model = tiny_model(family)  # 4 query heads in 2 KV groups, head_dim 8
    assert head_geometry(model) == (4, 2, 8)
    prune_structured(model, tokens, heads=0.5, heads_mode=mode, quiet=True)
    assert (model.config.num_attention_heads, model.config.num_key_value_heads, model.config.head_dim) == (heads, kv, 8)
    for widths in per_block_widths(model) if family not in MOE_FAMILIES else []:
        assert widths["q_rows"] == heads * 8 and widths["kv_rows"] == kv * 8
    assert head_geometry(model) == (heads, kv, 8)
    assert torch.isfinite(model(tokens).logits).all()


@pytest.mark.parametrize("family", HEAD_FAMILIES)
def test_silent_heads_go_first_and_change_nothing(family, tokens):
    model = tiny_model(family)
    for block in decoder_blocks(model):  # query head 1 (of KV group 0) and 3 (of group 1) write nothing
        W = weight_matrix(block.self_attn.o_proj).clone()
        W[:, 8:16] = 0
        W[:, 24:32] = 0
        set_weight_matrix(block.self_attn.o_proj, W)
    reference = model(tokens).logits
    prune_structured(model, tokens, heads=0.5, heads_mode="query", quiet=True)
    torch.testing.assert_close(model(tokens).logits, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(set(MLP_FAMILIES) | set(HEAD_FAMILIES)))
def test_pruned_model_saves_and_reloads_with_from_pretrained(family, tokens, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model(family)
    heads = 0.5 if family in HEAD_FAMILIES else 0.0
    mlp = 0.5 if family in MLP_FAMILIES else 0.0
    prune_structured(model, tokens, mlp=mlp, heads=heads, quiet=True)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert count_parameters(reloaded) == count_parameters(model)
    torch.testing.assert_close(reloaded(tokens).logits, model(tokens).logits)


@pytest.mark.parametrize("family", sorted(NO_HEAD_PRUNING))
def test_head_pruning_names_what_the_family_lacks(family, tokens):
    model = tiny_model(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match=NO_HEAD_PRUNING[family]):
        prune_structured(model, tokens, heads=0.5, quiet=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_options_are_refused(tokens):
    with pytest.raises(PrunelibError, match="sparsity"):
        prune_structured(tiny_model("llama"), tokens, mlp=1.0, quiet=True)
    with pytest.raises(PrunelibError, match="removes none"):  # 2 query heads per group: 25% is 0 heads
        prune_structured(tiny_model("llama"), tokens, heads=0.25, heads_mode="query", quiet=True)
    with pytest.raises(PrunelibError, match="heads_mode"):
        prune_structured(tiny_model("llama"), tokens, heads=0.5, heads_mode="rows", quiet=True)


@pytest.mark.parametrize("kind", ["row", "column", "block"])
def test_structured_masks_on_a_model_give_exact_sparsity(family, tokens, kind):
    model = tiny_model(family)
    report = prune_structured_masks(model, tokens, kind=kind, sparsity=0.5, block=8, quiet=True)
    assert report["sparsity"] == pytest.approx(0.5)
    for name, module in prunable_linears(model).items():
        W = weight_matrix(module)
        if kind == "row":
            assert (W == 0).all(1).sum() == W.shape[0] // 2, name
        elif kind == "column":
            assert (W == 0).all(0).sum() == W.shape[1] // 2, name
