"""Quantizing whole models keeps their zeros; compact files reload bit for bit, every family."""

import pytest
import torch
from tiny_models import MLP_FAMILIES, MOE_FAMILIES, tiny_model

from prunelib.core.quantize import dequantize
from prunelib.errors import PrunelibError, UnsupportedModelError
from prunelib.model.architecture import prunable_linears, weight_matrix
from prunelib.model.prune import prune_model
from prunelib.model.quantize import quantize_model
from prunelib.storage.compact import load_compact, round_to_float16, save_compact

SPEC = "int4-g16"  # tiny models have 32- and 64-wide inputs


def zeros(model):
    return {name: weight_matrix(m) == 0 for name, m in prunable_linears(model).items()}


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_quantizing_a_pruned_model_keeps_every_zero(family, tokens, method):
    model = tiny_model(family)
    prune_model(model, tokens, method="wanda", nm="2:4", quiet=True)
    before = zeros(model)
    report, quantized = quantize_model(model, tokens if method == "gptq" else None, spec=SPEC, method=method,
                                       quiet=True)
    assert set(quantized) == set(before) and report["zeros_kept"] == sum(int(z.sum()) for z in before.values())
    for name, module in prunable_linears(model).items():
        W, q = weight_matrix(module), quantized[name]
        assert torch.all(W[before[name]] == 0), name
        assert torch.equal(W, dequantize(q.codes, q.scales, W.dtype)), name
        assert q.codes.abs().max() <= 7


def test_gptq_needs_calibration_and_bad_groups_change_nothing(tokens):
    model = tiny_model("llama")
    with pytest.raises(PrunelibError, match="calibration"):
        quantize_model(model, None, spec=SPEC, method="gptq", quiet=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PrunelibError, match="not divisible"):
        quantize_model(model, None, spec="int4-g48", quiet=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with pytest.raises(PrunelibError, match="no options"):
        prune_model(model, tokens, method="wanda", sparsity=0.5, quantize=SPEC, quiet=True)


@pytest.mark.parametrize("family", MLP_FAMILIES)  # fused MoE experts are refused by the format (test below)
@pytest.mark.parametrize("layout, nm", [("bitmask", None), ("nm", "2:4"), ("csr", None), ("dense", None)])
@pytest.mark.parametrize("quantize", [False, True])
def test_compact_file_reloads_the_model_bit_for_bit(family, tokens, tmp_path, layout, nm, quantize):
    model = tiny_model(family)
    prune_model(model, tokens, method="magnitude", nm="2:4", quiet=True)
    round_to_float16(model)
    quantized = quantize_model(model, spec=SPEC, quiet=True)[1] if quantize else None
    report = save_compact(model, tmp_path, quantized=quantized, layout=layout, nm=nm, bits=4 if quantize else None)
    loaded = load_compact(tmp_path)
    original = model.state_dict()
    assert set(loaded.state_dict()) == set(original)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    assert report["file_bytes"] >= report["linear_bytes"] + report["other_bytes"]
    if quantize and layout == "nm":  # 2:4 + INT4 + g16 scales: 2 + 1 + 0.5 bits per weight
        assert report["bits_per_linear_weight"] == pytest.approx(0.5 * 4 + 0.5 * 2 + 16 / 16)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_compact_format_refuses_fused_experts_before_writing(family, tokens, tmp_path):
    model = tiny_model(family)
    with pytest.raises(UnsupportedModelError, match="fused"):
        save_compact(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sparsegpt_joint_mode_saves_and_reloads(tokens, tmp_path):
    model = tiny_model("llama")
    quantized = {}
    prune_model(model, tokens, method="sparsegpt", sparsity=0.5, quantize=SPEC, blocksize=16, quantized=quantized,
                quiet=True)
    assert set(quantized) == set(prunable_linears(model))
    round_to_float16(model, quantized)  # everything but the quantized linears, which are stored exactly
    for name, module in prunable_linears(model).items():
        assert torch.equal(weight_matrix(module), quantized[name].weight), name
    save_compact(model, tmp_path, quantized=quantized, bits=4)
    loaded = load_compact(tmp_path)
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)


def test_stale_quantized_results_are_refused(tmp_path):
    model = tiny_model("llama")
    _, quantized = quantize_model(model, spec=SPEC, quiet=True)
    next(iter(prunable_linears(model).values())).weight.data.mul_(2)
    with pytest.raises(PrunelibError, match="no longer holds"):
        save_compact(model, tmp_path, quantized=quantized)
