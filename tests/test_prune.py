"""prune_model on tiny models of every family: exact sparsity, N:M patterns, bad input."""

import pytest
import torch
from tiny_models import tiny_model

from prunelib.errors import PrunelibError
from prunelib.model.architecture import decoder_blocks, prunable_linears, weight_matrix
from prunelib.model.prune import measure_sparsity, prune_model

METHODS = ("magnitude", "wanda", "sparsegpt")


@pytest.mark.parametrize("method", METHODS)
def test_unstructured_sparsity_is_exact(family, tokens, method):
    model = tiny_model(family)
    report = prune_model(model, tokens, method=method, sparsity=0.5, quiet=True, batch_size=4)
    for name, module in prunable_linears(model).items():
        W = weight_matrix(module)
        zeros = (W == 0).sum(1)
        if method == "wanda":  # per output row
            assert torch.all(zeros == W.shape[1] // 2), name
        else:  # per matrix (magnitude) or per 128-column block (sparsegpt): exact over the matrix here
            assert zeros.sum() == W.numel() // 2, name
    assert report["sparsity"] == pytest.approx(0.5)


@pytest.mark.parametrize("method", METHODS)
def test_two_four_pattern_along_inputs(family, tokens, method):
    model = tiny_model(family)
    prune_model(model, tokens, method=method, nm="2:4", quiet=True)
    for name, module in prunable_linears(model).items():
        W = weight_matrix(module)  # (out, in): groups of 4 consecutive *inputs*, also for GPT-2's Conv1D
        assert torch.all((W.reshape(W.shape[0], -1, 4) != 0).sum(-1) <= 2), name
        assert (W == 0).float().mean() >= 0.5


def test_magnitude_matches_the_pure_function():
    from prunelib.core.magnitude import magnitude

    model = tiny_model("llama")
    before = weight_matrix(decoder_blocks(model)[1].mlp.down_proj).clone()
    prune_model(model, None, method="magnitude", sparsity=0.6, quiet=True)
    assert torch.equal(weight_matrix(decoder_blocks(model)[1].mlp.down_proj), magnitude(before, sparsity=0.6).weight)


def test_sparsegpt_prunes_block_one_on_outputs_of_pruned_block_zero(tokens):
    """Block 1's statistics must come from the *pruned* block 0, not the dense one."""
    from prunelib.core.stats import HessianStat
    from prunelib.model.walk import InputStatistics, sequential

    def hessian_of_block1_input(prune_first):
        model = tiny_model("llama")
        seen = {}

        def visit(index, block, forward):
            if index == 0 and prune_first:
                with torch.no_grad():
                    for module in block.modules():
                        if isinstance(module, torch.nn.Linear):
                            module.weight.mul_(0.5)
            if index == 1:
                with InputStatistics({"q": block.self_attn.q_proj}, HessianStat) as stats:
                    forward()
                seen["H"] = stats["q"].H

        sequential(model, tokens.split(3), visit, quiet=True)
        return seen["H"]

    assert not torch.allclose(hessian_of_block1_input(True), hessian_of_block1_input(False))


def test_per_block_sparsity(tokens):
    model = tiny_model("llama")
    prune_model(model, tokens, method="wanda", sparsity=[0.25, 0.75], quiet=True)
    layers = measure_sparsity(model)["layers"]
    assert all(v["sparsity"] == 0.25 for k, v in layers.items() if k.startswith("0."))
    assert all(v["sparsity"] == 0.75 for k, v in layers.items() if k.startswith("1."))


def test_dense_hidden_states_unchanged_at_zero_sparsity(tokens):
    model = tiny_model("qwen2")
    reference = model(tokens).logits
    prune_model(model, tokens, method="sparsegpt", sparsity=0.0, quiet=True)
    torch.testing.assert_close(model(tokens).logits, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="wanda", sparsity=1.0), "sparsity"),
        (dict(method="wanda", sparsity=-0.1), "sparsity"),
        (dict(method="obd", sparsity=0.5), "unknown method"),
        (dict(method="wanda", nm="4:4"), "N < M"),
        (dict(method="wanda", nm="0:4"), "N < M"),
        (dict(method="wanda", nm="2:5"), "divisible"),
        (dict(method="sparsegpt", sparsity=0.5, group="row"), "group"),
        (dict(method="wanda", sparsity=[0.5]), "per-block"),
    ],
)
def test_bad_input_is_refused_before_any_change(tokens, kwargs, message):
    model = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PrunelibError, match=message):
        prune_model(model, tokens, quiet=True, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_calibration_required(tokens):
    with pytest.raises(PrunelibError, match="calibration"):
        prune_model(tiny_model("llama"), None, method="wanda", quiet=True)


def test_relative_error_from_hessian_equals_direct_computation():
    from prunelib.core.hessian import relative_error
    from prunelib.core.stats import HessianStat

    X = torch.randn(3, 20, 16)
    W, W_new = torch.randn(8, 16), torch.randn(8, 16)
    stat = HessianStat(16)
    stat.update(X)
    flat = X.reshape(-1, 16)
    direct = ((flat @ W.T - flat @ W_new.T) ** 2).sum() / ((flat @ W.T) ** 2).sum()
    assert relative_error(W, W_new, stat.H) == pytest.approx(direct.item(), rel=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_measure_error_reports_every_linear(tokens, method):
    model = tiny_model("llama")
    report = prune_model(model, tokens, method=method, sparsity=0.5, quiet=True, measure_error=True)
    assert set(report["errors"]) == set(prunable_linears(model))
    assert all(0 < e < 1.5 for e in report["errors"].values())
    dense = prune_model(tiny_model("llama"), tokens, method=method, sparsity=0.0, quiet=True, measure_error=True)
    assert all(e == pytest.approx(0, abs=1e-9) for e in dense["errors"].values())
