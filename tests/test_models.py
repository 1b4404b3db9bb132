import pytest
import torch
import transformers as T
from tiny_models import BLOCKS, MOE_FAMILIES, tiny_model

from prunelib.errors import PrunelibError, UnsupportedModelError
from prunelib.model.architecture import (
    ExpertWeight,
    block_linears,
    decoder_blocks,
    prunable_linear_paths,
    prunable_linears,
    set_weight_matrix,
    weight_matrix,
)
from prunelib.model.loading import load_model, resolve_dtype


def test_every_family_has_blocks_and_linears(family):
    model = tiny_model(family)
    blocks = decoder_blocks(model)
    assert len(blocks) == model.config.num_hidden_layers >= BLOCKS
    linears = block_linears(blocks[0])
    dense = {n: m for n, m in linears.items() if not isinstance(m, ExpertWeight)}
    # every nn.Linear / Conv1D of the block is found, and nothing else
    expected = {n for n, m in blocks[0].named_modules() if isinstance(m, (torch.nn.Linear, T.pytorch_utils.Conv1D))}
    assert set(dense) == expected and expected
    experts = [m for m in linears.values() if isinstance(m, ExpertWeight)]
    assert bool(experts) == (family in MOE_FAMILIES)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_routers_are_never_prunable_and_every_expert_matrix_is(family):
    model = tiny_model(family)
    block = decoder_blocks(model)[0]
    linears = block_linears(block)
    assert not any("gate." in n or n.endswith(".gate") for n in linears)  # the router (mlp.gate)
    experts = block.mlp.experts
    count = model.config.num_local_experts
    for parameter in ("gate_up_proj", "down_proj"):
        for e in range(count):
            unit = linears[f"mlp.experts.{parameter}.{e}"]
            assert unit.weight.data_ptr() == getattr(experts, parameter)[e].data_ptr()  # a view, not a copy
    assert len(linears) == 4 + 2 * count  # q, k, v, o and two matrices per expert


def test_a_linear_router_beside_an_expert_list_is_left_out():
    """Older MoE layouts keep experts as an nn.ModuleList and the router as an nn.Linear."""
    from torch import nn

    class Moe(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(8, 3, bias=False)
            self.experts = nn.ModuleList(nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8)) for _ in range(3))
            self.shared_expert_gate = nn.Linear(8, 1, bias=False)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.Linear(8, 8)
            self.mlp = Moe()

    names = set(block_linears(Block()))
    assert "mlp.gate" not in names and "mlp.shared_expert_gate" not in names
    assert {"attn", "mlp.experts.0.0", "mlp.experts.2.1"} <= names and len(names) == 7


def test_linear_paths_name_the_same_modules_and_their_state_dict_keys(family):
    model = tiny_model(family)
    if family in MOE_FAMILIES:  # a fused expert has no module, so no path of its own
        with pytest.raises(UnsupportedModelError, match="fused"):
            prunable_linear_paths(model)
        return
    linears, paths = prunable_linears(model), prunable_linear_paths(model)
    assert paths.keys() == linears.keys() and len(set(paths.values())) == len(paths)
    state = model.state_dict()
    for key, path in paths.items():
        assert model.get_submodule(path) is linears[key]
        assert f"{path}.weight" in state and path.endswith(key.split(".", 1)[1])


def test_a_model_without_decoder_blocks_is_a_clear_error():
    from torch import nn

    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10))
    with pytest.raises(UnsupportedModelError, match="no decoder blocks"):
        decoder_blocks(model)


def test_blocks_are_found_without_no_split_modules():
    """A model that does not declare _no_split_modules: the list of alike modules holding linears."""
    model = tiny_model("llama")
    model._no_split_modules = None
    assert decoder_blocks(model) is model.model.layers


def test_conv1d_weight_is_seen_as_out_by_in():
    model = tiny_model("gpt2")
    fc = decoder_blocks(model)[0].mlp.c_fc  # Conv1D: weight stored (in=32, out=64)
    W = weight_matrix(fc)
    assert W.shape == (64, 32)
    x = torch.randn(3, 32)
    torch.testing.assert_close(fc(x), x @ W.T + fc.bias)
    new = torch.zeros_like(W)
    new[5, 7] = 1.0
    set_weight_matrix(fc, new)
    assert fc.weight[7, 5] == 1.0 and fc.weight.sum() == 1.0


def test_dtype_resolution():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(PrunelibError, match="dtype"):
        resolve_dtype("int8", "cpu")


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(PrunelibError, match="not found"):
        load_model(str(tmp_path / "nothing-here"))
    with pytest.raises(PrunelibError, match="GGUF file not found"):
        load_model(str(tmp_path / "model.gguf"))


@pytest.mark.slow
def test_embedded_model_loads_as_dense_llama(embedded):
    model, tokenizer = embedded
    assert model.config.model_type == "llama" and len(decoder_blocks(model)) == 30
    q = decoder_blocks(model)[0].self_attn.q_proj
    assert isinstance(q, torch.nn.Linear) and q.weight.dtype == torch.float32
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])
