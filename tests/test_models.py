import pytest
import torch
import transformers as T

from prunelib.errors import PrunelibError, UnsupportedModelError
from prunelib.models import (
    SUPPORTED_FAMILIES,
    block_linears,
    decoder_blocks,
    load_model,
    prunable_linear_paths,
    prunable_linears,
    resolve_dtype,
    set_weight_matrix,
    weight_matrix,
)
from tiny_models import FAMILIES, tiny_model


def test_every_family_has_blocks_and_linears(family):
    model = tiny_model(family)
    blocks = decoder_blocks(model)
    assert len(blocks) == 2
    assert len(block_linears(blocks[0])) in (4, 6, 7)


def test_linear_paths_name_the_same_modules_and_their_state_dict_keys(family):
    model = tiny_model(family)
    linears, paths = prunable_linears(model), prunable_linear_paths(model)
    assert paths.keys() == linears.keys() and len(set(paths.values())) == len(paths)
    state = model.state_dict()
    for key, path in paths.items():
        assert model.get_submodule(path) is linears[key]
        assert f"{path}.weight" in state and path.endswith(key.split(".", 1)[1])


def test_unsupported_architecture_names_itself_and_the_supported_ones():
    config = T.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, is_decoder=True)
    model = T.BertLMHeadModel(config)
    with pytest.raises(UnsupportedModelError) as error:
        decoder_blocks(model)
    message = str(error.value)
    assert "'bert'" in message and all(f in message for f in FAMILIES)
    assert set(FAMILIES) <= set(SUPPORTED_FAMILIES)


def test_conv1d_weight_is_seen_as_out_by_in():
    model = tiny_model("gpt2")
    fc = decoder_blocks(model)[0].mlp.c_fc  # Conv1D: weight stored (in=32, out=128)
    W = weight_matrix(fc)
    assert W.shape == (128, 32)
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
