"""benchmarks/gptq_anomaly.py measures what the library does: its walk with the baseline switches is
:func:`prunelib.model.quantize.quantize_model` bit for bit, and its switches change what they say."""

import importlib.util
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model

from prunelib.core.stats import HessianStat
from prunelib.model.architecture import block_linears, decoder_blocks, weight_matrix
from prunelib.model.quantize import quantize_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gptq_anomaly.py"


@pytest.fixture(scope="module")
def anomaly():
    spec = importlib.util.spec_from_file_location("gptq_anomaly", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _weights(model):
    return {f"{i}.{n}": weight_matrix(m).detach().clone()
            for i, b in enumerate(decoder_blocks(model)) for n, m in block_linears(b).items()}


def _calibration(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (3, 24), generator=generator)


def test_baseline_walk_is_quantize_model_bit_for_bit(anomaly):
    model = tiny_model("llama")
    calibration = _calibration(model)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_model(model, calibration, spec="int4-g16", method="gptq", quiet=True)
    library = _weights(model)
    model.load_state_dict(dense)
    errors, first = anomaly.quantize_walk(model, calibration, {**anomaly.BASELINE, "quantize": "int4-g16"}, quiet=True)
    mine = _weights(model)
    assert all(torch.equal(library[k], mine[k]) for k in library)
    assert set(errors) == set(first) == set(library) and all(e > 0 for e in errors.values())


def test_statistics_see_what_they_claim(anomaly):
    x = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(1))
    both = anomaly.PlainAndFirst(4)
    both.update(x)
    plain, first = HessianStat(4), HessianStat(4)
    plain.update(x)
    first.update(x[:, :1])
    assert torch.allclose(both.H, plain.H) and torch.allclose(both.first.H, first.H)
    weighted = anomaly.hessian_stat("first-weighted")(4)
    weighted.update(x)
    rows = torch.cat([x[0, :1].expand(6, 4), x[0, 1:]])  # the first row counted 6 times, the others once
    assert torch.allclose(weighted.H, 2 * (rows.T @ rows) / 6, atol=1e-6)
    after = anomaly.hessian_stat("after-first")(4)
    after.update(x)
    assert torch.allclose(after.H, 2 * x[0, 1:].T @ x[0, 1:] / 5, atol=1e-6)


def test_mix_takes_gptq_weights_only_where_named(anomaly):
    model = tiny_model("llama")
    linears = _weights(model)
    weights = {"rtn": {k: torch.zeros_like(v) for k, v in linears.items()},
               "gptq": {k: torch.ones_like(v) for k, v in linears.items()}}
    anomaly.mix(model, {"gptq_in": ["v_proj"]}, weights)
    for where, value in _weights(model).items():
        assert torch.all(value == (1.0 if "v_proj" in where else 0.0)), where


def test_attention_to_first_is_the_mean_probability_on_key_zero_and_restores_the_implementation(anomaly):
    model = tiny_model("llama", attention="sdpa")
    windows = _calibration(model)
    shares = anomaly.attention_to_first(model, windows)
    assert model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("eager")
    with torch.no_grad():
        expected = [sum(model(w, output_attentions=True).attentions[b][0, :, 1:, 0].mean().item()
                        for w in windows.split(1)) / len(windows) for b in range(len(decoder_blocks(model)))]
    assert shares == pytest.approx(expected) and all(0 < s < 1 for s in shares)
    # brute force for one query: a row of causal softmax probabilities sums to 1 over keys 0..i
    assert sum(model(windows[:1], output_attentions=True).attentions[0][0, 0, 5, :6].tolist()) == pytest.approx(1.0)
