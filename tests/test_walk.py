"""The block-by-block replay must reproduce the model's own forward pass exactly."""

import pytest
import torch

from prunelib.errors import NonFiniteActivationError
from prunelib.models import block_linears, decoder_blocks
from prunelib.stats import HessianStat
from prunelib.walk import InputStatistics, capture_block_inputs, sequential
from tiny_models import tiny_model


def block_outputs(model, run):
    """Outputs of every block while ``run()`` executes, concatenated over batches, in block order."""
    outputs = {}

    def record(index):
        def hook(module, args, out):
            outputs.setdefault(index, []).append(out[0] if isinstance(out, tuple) else out)

        return hook

    hooks = [block.register_forward_hook(record(i)) for i, block in enumerate(decoder_blocks(model))]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat(outputs[i]) for i in sorted(outputs)]


def own_block_outputs(model, tokens):
    return block_outputs(model, lambda: model(tokens, use_cache=False))


def test_replay_reproduces_hidden_states(family, tokens):
    model = tiny_model(family)
    expected = own_block_outputs(model, tokens)  # a normal forward pass of the whole model
    visited = []
    replayed = block_outputs(model, lambda: sequential(
        model, tokens.split(4), lambda i, block, forward: visited.append(i), quiet=True))
    assert visited == list(range(len(decoder_blocks(model))))
    assert len(replayed) == len(expected)
    for ours, theirs in zip(replayed, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_capture_records_every_argument_of_block_zero(tokens):
    model = tiny_model("llama")
    calls = capture_block_inputs(model, tokens.split(3), torch.device("cpu"))
    assert len(calls) == 2 and calls[0].hidden.shape == (3, 32, 32)
    assert "position_embeddings" in calls[0].kwargs  # rotary cos/sin, computed outside the blocks
    assert "attention_mask" in calls[0].kwargs  # may be None with SDPA: must still be replayed


def test_linears_reading_the_same_input_share_one_statistic(tokens):
    model = tiny_model("llama")
    block = decoder_blocks(model)[0]
    linears = block_linears(block)
    calls = capture_block_inputs(model, tokens.split(3), torch.device("cpu"))
    with InputStatistics(linears, HessianStat, where="block 0") as stats, torch.no_grad():
        for call in calls:
            call.run(block)
    q, k, v = (stats[f"self_attn.{n}_proj"] for n in "qkv")
    assert q is k is v and stats["mlp.gate_proj"] is stats["mlp.up_proj"]
    assert stats["self_attn.o_proj"] is not q and stats["mlp.down_proj"] is not stats["mlp.up_proj"]
    assert q.tokens == tokens.numel()  # accumulated once per input, not three times
    # and it is the Hessian of the real input of q_proj
    seen = []
    handle = linears["self_attn.q_proj"].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        for call in calls:
            call.run(block)
    handle.remove()
    X = torch.cat(seen).reshape(-1, 32)
    torch.testing.assert_close(q.H, 2 * X.T @ X / X.shape[0], rtol=1e-5, atol=1e-6)


def test_non_finite_activation_names_the_layer(tokens):
    model = tiny_model("llama")
    block = decoder_blocks(model)[1]
    with torch.no_grad():
        block.mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteActivationError, match=r"block 1\.mlp\.down_proj"):
        def visit(index, block, forward):
            with InputStatistics(block_linears(block), HessianStat, where=f"block {index}"):
                forward()

        sequential(model, tokens.split(3), visit, quiet=True)
