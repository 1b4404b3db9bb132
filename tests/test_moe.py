"""Mixture-of-experts: routers are never pruned, and each expert is pruned with statistics from
exactly the tokens the router sends it (checked against the routed tokens gathered by hand)."""

import warnings

import pytest
import torch
from tiny_models import MOE_FAMILIES, tiny_model

from prunelib.core.stats import HessianStat, InputNormStat
from prunelib.model.architecture import ExpertWeight, block_linears, decoder_blocks, weight_matrix
from prunelib.model.prune import prune_model
from prunelib.model.walk import InputStatistics, sequential


def _moe_inputs_and_routes(model, tokens, index):
    """By hand: the MoE layer's input rows ``(tokens, hidden)`` in block ``index`` and the experts
    its router picks for each row ``(tokens, top_k)``, from a plain forward pass."""
    moe = decoder_blocks(model)[index].mlp
    seen = []
    handle = moe.register_forward_pre_hook(lambda module, args: seen.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        model(tokens, use_cache=False)
        handle.remove()
        rows = torch.cat(seen)
        _, _, chosen = moe.gate(rows)
    return rows, chosen


def _collect(model, tokens, index, make_stat):
    kept = {}

    def visit(i, block, forward):
        if i == index:
            with InputStatistics(block_linears(block), make_stat, where=f"block {i}") as stats:
                forward()
            kept.update(stats.stats)

    sequential(model, tokens.split(3), visit, quiet=True)
    return kept


@pytest.mark.parametrize("family", MOE_FAMILIES)
@pytest.mark.parametrize("implementation", [None, "eager", "batched_mm"])
def test_expert_hessians_come_from_the_tokens_routed_to_each_expert(family, tokens, implementation):
    model = tiny_model(family)
    if implementation:  # kernels that multiply all experts at once: the walk must still see each expert
        model.config._experts_implementation = implementation  # (the default here is grouped_mm)
    implementation = model.config._experts_implementation
    index = 1  # block 1: its inputs come from block 0, replayed
    stats = _collect(model, tokens, index, HessianStat)
    rows, chosen = _moe_inputs_and_routes(model, tokens, index)
    experts = decoder_blocks(model)[index].mlp.experts
    width = experts.down_proj.shape[-1]
    checked = 0
    for e in range(experts.gate_up_proj.shape[0]):
        routed = (chosen == e).any(-1)
        X = rows[routed]
        if not len(X):
            assert f"mlp.experts.gate_up_proj.{e}" not in stats
            continue
        gate_up = stats[f"mlp.experts.gate_up_proj.{e}"]
        assert gate_up.tokens == len(X)
        torch.testing.assert_close(gate_up.H, 2 * X.T @ X / len(X), rtol=1e-4, atol=1e-6)
        gate, up = (X @ experts.gate_up_proj[e].T).split(width, dim=-1)
        inner = experts.act_fn(gate) * up  # what the down projection of expert e reads
        down = stats[f"mlp.experts.down_proj.{e}"]
        torch.testing.assert_close(down.H, 2 * inner.T @ inner / len(inner), rtol=1e-4, atol=1e-6)
        checked += 1
    assert checked >= 2
    assert model.config._experts_implementation == implementation  # put back after the walk


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_expert_norms_for_wanda_come_from_the_routed_tokens(family, tokens):
    model = tiny_model(family)
    stats = _collect(model, tokens, 0, InputNormStat)
    rows, chosen = _moe_inputs_and_routes(model, tokens, 0)
    per_batch = 3 * tokens.shape[1]  # the walk runs batches of 3 sequences
    for e in range(decoder_blocks(model)[0].mlp.experts.gate_up_proj.shape[0]):
        routed = (chosen == e).any(-1)
        X = rows[routed]
        # one call of the expert per batch that routes it any token, on a (tokens, hidden) matrix:
        # norms = sum of x^2 over its routed tokens / number of such calls
        calls = sum(int(part.any()) for part in routed.split(per_batch))
        if calls:
            norms = stats[f"mlp.experts.gate_up_proj.{e}"].norms
            torch.testing.assert_close(norms, X.pow(2).sum(0) / calls, rtol=1e-5, atol=1e-7)


def _starve_expert(model, expert):
    """Make every router skip ``expert``: its logit is set to -inf before the top-k."""
    for block in decoder_blocks(model):
        gate = block.mlp.gate
        original, top_k = gate.forward, gate.top_k

        def forward(hidden, original=original, top_k=top_k):
            logits, _, _ = original(hidden)
            logits = logits.clone()
            logits[:, expert] = float("-inf")
            probs = logits.float().softmax(-1)
            weights, chosen = probs.topk(top_k, dim=-1)
            return logits, weights / weights.sum(-1, keepdim=True), chosen

        gate.forward = forward


@pytest.mark.parametrize("family", MOE_FAMILIES)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_an_expert_that_gets_no_token_keeps_its_weights_and_is_reported(family, tokens, method):
    model = tiny_model(family)
    _starve_expert(model, 3)
    before = {name: weight_matrix(unit).clone() for name, unit in block_linears(decoder_blocks(model)[1]).items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = prune_model(model, tokens, method=method, sparsity=0.5, quiet=True)
    starved = {f"{b}.mlp.experts.{p}.3" for b in range(len(decoder_blocks(model))) for p in ("gate_up_proj", "down_proj")}
    assert set(report["unrouted"]) == starved
    assert any("no calibration token" in str(w.message) for w in caught)
    for name, unit in block_linears(decoder_blocks(model)[1]).items():
        W = weight_matrix(unit)
        if name.endswith(".3") and "experts" in name:
            assert torch.equal(W, before[name])
        else:  # every other expert and projection is exactly half zeros
            assert (W == 0).sum().item() == W.numel() // 2, name


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_router_weights_are_untouched_and_expert_slices_are_pruned_in_place(family, tokens):
    model = tiny_model(family)
    routers = [block.mlp.gate.weight.clone() for block in decoder_blocks(model)]
    prune_model(model, tokens, method="magnitude", nm="2:4", quiet=True)
    for block, router in zip(decoder_blocks(model), routers):
        assert torch.equal(block.mlp.gate.weight, router)
        fused = block.mlp.experts.gate_up_proj  # the 3-D parameter itself now holds the 2:4 pattern
        assert torch.all((fused.reshape(*fused.shape[:2], -1, 4) != 0).sum(-1) <= 2)
    assert all(isinstance(u, ExpertWeight) for n, u in block_linears(decoder_blocks(model)[0]).items() if "experts" in n)


def test_a_fused_layout_whose_experts_cannot_be_seen_is_refused(tokens):
    """An experts forward that multiplies copies (not slices of the parameter) hides each expert."""
    from prunelib.errors import PrunelibError

    model = tiny_model("mixtral")
    for block in decoder_blocks(model):
        experts = block.mlp.experts

        def opaque(hidden, top_k_index, top_k_weights, experts=experts):
            gate_up = experts.gate_up_proj.clone()  # copies: no slice of the parameter is ever used
            out = torch.zeros_like(hidden)
            for e in range(gate_up.shape[0]):
                out = out + torch.nn.functional.linear(hidden, gate_up[e])[:, : hidden.shape[-1]] * 0
            return out

        experts.forward = opaque
    before = decoder_blocks(model)[0].mlp.experts.gate_up_proj.clone()
    with pytest.raises(PrunelibError, match="cannot map this fused layout"):
        prune_model(model, tokens, method="wanda", sparsity=0.5, quiet=True)
    assert torch.equal(decoder_blocks(model)[0].mlp.experts.gate_up_proj, before)


def test_an_expert_width_that_does_not_fit_nm_is_refused_before_any_change(tokens):
    """qwen3_moe's experts are 16 wide inside, the rest 32: 2:32 fits every linear but the experts'
    down projections, and the error names one of them."""
    from prunelib.errors import PrunelibError

    model = tiny_model("qwen3_moe")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PrunelibError, match=r"mlp\.experts\.down_proj\.\d.*divisible"):
        prune_model(model, tokens, method="wanda", nm="2:32", quiet=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_gptq_rounds_an_expert_without_tokens_to_nearest_and_says_so(family, tokens):
    from prunelib.core.quantize import QuantSpec, rtn
    from prunelib.model.quantize import quantize_model

    model = tiny_model(family)
    _starve_expert(model, 3)
    expert = block_linears(decoder_blocks(model)[0])["mlp.experts.down_proj.3"]
    expected = rtn(weight_matrix(expert).detach().clone(), QuantSpec.parse("int4-g16")).weight
    report, quantized = quantize_model(model, tokens, spec="int4-g16", method="gptq", quiet=True)
    assert "0.mlp.experts.down_proj.3" in report["unrouted"] and len(report["unrouted"]) == 2 * len(decoder_blocks(model))
    assert torch.equal(weight_matrix(expert), expected)
    assert set(quantized) == {f"{b}.{n}" for b, block in enumerate(decoder_blocks(model)) for n in block_linears(block)}


def test_sparse_finetuning_masks_the_gradient_of_every_fused_expert(tokens):
    """One gradient hook on each 3-D parameter, with every expert's mask stacked in expert order."""
    from prunelib.model.finetune import SparsityKeeper

    model = tiny_model("mixtral")
    prune_model(model, tokens, method="magnitude", nm="2:4", quiet=True)
    keeper = SparsityKeeper(model)
    model(tokens[:2], labels=tokens[:2]).loss.backward()
    experts = decoder_blocks(model)[0].mlp.experts
    for parameter in ("gate_up_proj", "down_proj"):
        fused = getattr(experts, parameter)
        assert fused.grad is not None and torch.all(fused.grad[fused == 0] == 0)
        assert fused.grad[fused != 0].abs().sum() > 0
    keeper.remove()
