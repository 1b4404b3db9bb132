"""The block-by-block replay must reproduce the model's own forward pass exactly."""

import pytest
import torch
from tiny_models import HETEROGENEOUS, tiny_model

from prunelib.core.stats import HessianStat
from prunelib.errors import NonFiniteActivationError
from prunelib.model.architecture import block_linears, decoder_blocks
from prunelib.model.walk import InputStatistics, capture_block_inputs, sequential


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


def _replay_equals_forward(model, tokens):
    expected = own_block_outputs(model, tokens)  # a normal forward pass of the whole model
    visited = []
    replayed = block_outputs(model, lambda: sequential(
        model, tokens.split(4), lambda i, block, forward: visited.append(i), quiet=True))
    assert visited == list(range(len(decoder_blocks(model))))
    assert len(replayed) == len(expected) == len(decoder_blocks(model))
    for ours, theirs in zip(replayed, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_replay_reproduces_hidden_states(family, tokens, attention):
    if attention == "sdpa" and family == "gemma2":
        pytest.skip("transformers has no SDPA attention for Gemma-2")
    _replay_equals_forward(tiny_model(family, attention=attention), tokens)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("config", HETEROGENEOUS)
def test_replay_is_exact_when_blocks_differ(config, tokens, attention):
    """Sliding and full attention in one model: each block must be replayed with its own mask
    (and, for Gemma-3, its own RoPE table), not block 0's."""
    if attention == "sdpa" and config == "gemma2":
        pytest.skip("transformers has no SDPA attention for Gemma-2")
    _replay_equals_forward(tiny_model(config, attention=attention), tokens)


@pytest.mark.parametrize("config", ["gemma3_text", "qwen2-mixed"])
def test_blocks_of_different_types_get_different_arguments(config, tokens):
    """Guards the test above: these configs really pass their blocks different masks, so
    replaying block 0's arguments everywhere would be wrong (and was, before the capture kept
    every block's own)."""
    model = tiny_model(config, attention="eager")  # explicit masks (SDPA may pass None for plain causal)
    calls = capture_block_inputs(model, tokens.split(3), torch.device("cpu"))
    kinds = model.config.layer_types
    full, sliding = kinds.index("full_attention"), kinds.index("sliding_attention")
    mask = lambda index: calls[0].arguments(index)[1]["attention_mask"]  # noqa: E731
    assert not torch.equal(mask(full), mask(sliding))
    # blocks of the same type share one tensor: recorded once, by reference, not copied per block
    same = [i for i, kind in enumerate(kinds) if kind == kinds[sliding]]
    assert len(same) >= 2 and mask(same[0]) is mask(same[1])


def test_capture_records_every_argument_of_every_block(tokens):
    model = tiny_model("llama")
    calls = capture_block_inputs(model, tokens.split(3), torch.device("cpu"))
    assert len(calls) == 2 and calls[0].hidden.shape == (3, 32, 32)
    blocks = len(decoder_blocks(model))
    assert len(calls[0].inputs) == blocks
    for index in range(blocks):
        args, kwargs = calls[0].arguments(index)
        assert "position_embeddings" in kwargs  # rotary cos/sin, computed outside the blocks
        assert "attention_mask" in kwargs  # may be None with SDPA: must still be replayed
    # one RoPE table for all blocks: the same tensors, not a copy per block
    assert calls[0].arguments(0)[1]["position_embeddings"] is calls[0].arguments(1)[1]["position_embeddings"]


def test_capture_runs_no_block_and_fires_no_block_hook(tokens):
    model = tiny_model("llama")
    fired = []
    handles = [block.register_forward_pre_hook(lambda *a: fired.append(1)) for block in decoder_blocks(model)]
    handles += [block.mlp.down_proj.register_forward_pre_hook(lambda *a: fired.append(2))
                for block in decoder_blocks(model)]
    capture_block_inputs(model, tokens.split(3), torch.device("cpu"))
    for handle in handles:
        handle.remove()
    assert fired == []
    assert all(type(block).__name__ == "LlamaDecoderLayer" for block in decoder_blocks(model))  # put back


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
