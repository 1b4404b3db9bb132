"""prunelib.eval.speed: 2:4 eligibility (CPU logic), the random Llama builder, throughput, CSR sweep, CLI.

Timings are never asserted (they are measured, not derived); what is asserted is the math
around them: exact 2:4 and sparsity patterns, equal outputs, token counts, rate definitions.
CUDA-only tests check that the 2:4 kernels compute the dense product.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_model

from prunelib.cli import main
from prunelib.core.masks import NM, n_pruned, nm_mask
from prunelib.errors import PrunelibError
from prunelib.eval.speed import linear as linear_module
from prunelib.eval.speed.csr import csr_break_even, csr_linear, csr_sweep, plot_csr_sweep, sparse_valued_weight, to_csr
from prunelib.eval.speed.generation import greedy_decode, throughput
from prunelib.eval.speed.linear import linear_sweep, two_four_weight
from prunelib.eval.speed.llama import LLAMA2_7B, llama_config, mask_two_four, random_llama
from prunelib.eval.speed.semi import NO_CUDA, is_two_four, qualifying_linears, satisfies_nm
from prunelib.model.architecture import prunable_linears

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU (sm80+)")
TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                  max_position_embeddings=128)


def brute_force_nm(weight, n, m):
    """Row by row, group by group, in plain Python."""
    rows, cols = weight.shape
    if cols % m:
        return False
    return all(sum(weight[i, g + j] != 0 for j in range(m)) <= n for i in range(rows) for g in range(0, cols, m))


# ---- is_two_four -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 4), (8, 64), (33, 16)])
@pytest.mark.parametrize("pattern", ["2:4", "1:4"])
def test_nm_mask_outputs_are_two_four(shape, pattern):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    pruned = weight * nm_mask(weight.abs(), NM.parse(pattern))
    assert is_two_four(pruned)


def test_is_two_four_matches_brute_force_on_random_patterns():
    g = torch.Generator().manual_seed(3)
    verdicts = set()
    for _ in range(200):
        weight = torch.randn(3, 8, generator=g) * (torch.rand(3, 8, generator=g) < 0.45)
        expected = brute_force_nm(weight, 2, 4)
        assert is_two_four(weight) == expected
        verdicts.add(expected)
    assert verdicts == {True, False}  # both kinds were seen


def test_one_extra_nonzero_breaks_two_four():
    weight = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    pruned = weight * nm_mask(weight.abs(), NM(2, 4))
    row, col = torch.nonzero(pruned == 0)[5].tolist()
    pruned[row, col] = 1e-3  # a third non-zero in that group of 4
    assert not is_two_four(pruned)
    assert satisfies_nm(pruned, NM(3, 4))


def test_is_two_four_edge_cases():
    assert is_two_four(torch.zeros(2, 8))
    assert not is_two_four(torch.zeros(2, 6))  # 6 columns do not split into groups of 4
    with pytest.raises(PrunelibError, match="2-D"):
        is_two_four(torch.zeros(8))


# ---- qualifying_linears ----------------------------------------------------------------------

def test_qualifying_reasons_on_tiny_llama():
    model = tiny_model("llama")  # hidden 32, MLP 64, k/v projections 16x32
    names = set(prunable_linears(model))
    assert all("dtype float32" in reason for reason in qualifying_linears(model).values())

    model.half()
    dense = qualifying_linears(model)
    assert set(dense) == names and all("not 2:4" in reason for reason in dense.values())

    mask_two_four(model)
    assert qualifying_linears(model, backend="cusparselt") == dict.fromkeys(names)  # all qualify
    cutlass = qualifying_linears(model, backend="cutlass")  # CUTLASS float16 needs in_features % 64 == 0
    assert {name for name, reason in cutlass.items() if reason is None} == {"0.mlp.down_proj", "1.mlp.down_proj"}
    assert "shape 32x32" in cutlass["0.self_attn.q_proj"] and "(32, 64)" in cutlass["0.self_attn.q_proj"]


def test_qualifying_takes_the_target_dtype():
    model = tiny_model("llama")
    mask_two_four(model)  # float32 weights, 2:4
    assert all(reason is None for reason in qualifying_linears(model, dtype=torch.bfloat16).values())
    assert all("dtype float32" in reason for reason in qualifying_linears(model).values())


def test_qualifying_names_conv1d_and_bad_backend():
    reasons = qualifying_linears(tiny_model("gpt2").half())
    assert reasons and all("Conv1D" in reason for reason in reasons.values())
    with pytest.raises(PrunelibError, match="backend"):
        qualifying_linears(tiny_model("llama"), backend="triton")


@pytest.mark.skipif(CUDA, reason="checks the refusal without CUDA")
def test_conversion_and_benchmark_refuse_without_cuda():
    from prunelib.eval.speed.linear import linear_benchmark
    from prunelib.eval.speed.semi import convert_to_semi_structured

    with pytest.raises(PrunelibError, match="no CUDA device"):
        convert_to_semi_structured(tiny_model("llama").half())
    with pytest.raises(PrunelibError, match="no CUDA device"):
        linear_benchmark(64, 64, 8, "float16", "cusparselt", "cpu")


# ---- random Llama builder --------------------------------------------------------------------

def test_default_config_is_llama2_7b():
    config = llama_config()
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (4096, 11008, 32)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (32, 32, 32000)
    assert llama_config(layers=4).num_hidden_layers == 4
    with pytest.raises(PrunelibError, match="layers"):
        llama_config(layers=0)


def test_random_llama_config_weights_and_masks():
    before = torch.get_default_dtype()
    model = random_llama(2, dtype=torch.float16, seed=5, **TINY_LLAMA)
    assert torch.get_default_dtype() == before
    config = model.config
    assert config.num_hidden_layers == 2 and config.hidden_size == 64 and config.vocab_size == 256
    assert config.rms_norm_eps == LLAMA2_7B["rms_norm_eps"] and config.hidden_act == "silu"
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    embedding = model.get_input_embeddings().weight.float()
    assert abs(embedding.std().item() - 0.02) < 0.001 and abs(embedding.mean().item()) < 0.001
    again = random_llama(2, dtype=torch.float16, seed=5, **TINY_LLAMA)
    assert torch.equal(again.model.layers[1].mlp.up_proj.weight, model.model.layers[1].mlp.up_proj.weight)

    original = {name: module.weight.detach().clone() for name, module in prunable_linears(model).items()}
    names = mask_two_four(model)
    assert names == list(original) and len(names) == 2 * 7
    for name, module in prunable_linears(model).items():
        weight = module.weight
        assert is_two_four(weight)
        assert (weight == 0).sum().item() == weight.numel() // 2  # normal weights have no zeros of their own
        groups = original[name].abs().reshape(weight.shape[0], -1, 4)
        kept = (weight != 0).reshape(groups.shape)
        # the two kept weights of every group are its two largest magnitudes
        assert torch.all(groups.masked_fill(~kept, math.inf).amin(-1) >= groups.masked_fill(kept, -math.inf).amax(-1))
        assert torch.equal(weight[weight != 0], original[name][weight != 0])


# ---- throughput ------------------------------------------------------------------------------

def test_greedy_decode_matches_generate():
    model = tiny_model("llama")
    prompt = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(0))
    tokens, prefill_s, decode_s = greedy_decode(model, prompt, 7)
    reference = model.generate(prompt, max_new_tokens=7, min_new_tokens=7, do_sample=False, pad_token_id=0)
    assert tokens.shape == (2, 7) and torch.equal(tokens, reference[:, 10:])
    assert prefill_s > 0 and decode_s > 0


@pytest.mark.parametrize("batch", [1, 2])
def test_throughput_counts_and_rates(batch):
    model = tiny_model("llama")
    found = throughput(model, 128, prompt_tokens=16, new_tokens=6, repeats=2, batch=batch)
    assert found["generated_tokens"] == 6 and found["decode_steps"] == 5
    assert found["threads"] == torch.get_num_threads() and found["device"] == "cpu"
    assert len(found["prefill_runs"]) == len(found["decode_runs"]) == 2
    for phase in ("prefill", "decode"):
        assert found[f"{phase}_seconds"] > 0 and found[f"{phase}_tokens_per_s"] > 0
    assert found["prefill_tokens_per_s"] == pytest.approx(batch * 16 / found["prefill_seconds"])
    assert found["decode_tokens_per_s"] == pytest.approx(batch * 5 / found["decode_seconds"])
    tokens = throughput(model, 128, 8, 4, repeats=1, batch=batch, return_tokens=True)["tokens"]
    assert len(tokens) == batch and all(len(row) == 4 for row in tokens)


def test_throughput_prompt_avoids_special_tokens_and_checks_limits():
    class Tokenizer:
        all_special_ids = [0, 1, 2]

        def __len__(self):
            return 6

    model = tiny_model("llama")
    from prunelib.eval.speed.generation import prompt_ids

    ids = prompt_ids(model, Tokenizer(), 4, 50)
    assert ids.min() >= 3 and ids.max() <= 5
    with pytest.raises(PrunelibError, match="new_tokens"):
        throughput(model, 128, 8, new_tokens=1)
    with pytest.raises(PrunelibError, match="positions"):
        throughput(model, 128, prompt_tokens=60, new_tokens=8)  # tiny models have 64 positions


# ---- CPU CSR ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_sparse_valued_weight_and_csr_linear(sparsity):
    weight = sparse_valued_weight(24, 40, sparsity, seed=2)
    assert torch.all((weight == 0).sum(1) == n_pruned(40, sparsity))  # exact per row
    x = torch.randn(5, 40)
    torch.testing.assert_close(csr_linear(to_csr(weight), x), F.linear(x, weight), rtol=1e-5, atol=1e-5)


def test_csr_sweep_rows():
    rows = csr_sweep(16, 32, 3, sparsities=(0.0, 0.75), threads=1, min_run_time=0.001)
    assert [row["sparsity"] for row in rows] == [0.0, 0.75]
    assert [row["nnz"] for row in rows] == [16 * 32, 16 * 8]
    for row in rows:
        assert row["max_abs_diff"] < 1e-4  # CSR and dense products agree
        assert row["dense_us"] > 0 and row["csr_us"] > 0 and row["threads"] == 1
        assert row["speedup"] == pytest.approx(row["dense_us"] / row["csr_us"])


def _row(sparsity, dense_us, csr_us, shape=(8, 8, 1)):
    return dict(zip(("out_features", "in_features", "tokens"), shape), sparsity=sparsity, dense_us=dense_us,
                csr_us=csr_us, speedup=dense_us / csr_us)


def test_csr_break_even():
    rows = [_row(0.9, 10, 9), _row(0.5, 10, 30), _row(0.99, 10, 2), _row(0.8, 10, 10)]
    assert csr_break_even(rows) == 0.9  # 0.8 ties, which is not faster
    assert csr_break_even([_row(0.5, 1, 2)]) is None
    with pytest.raises(PrunelibError, match="one shape"):
        csr_break_even([_row(0.5, 1, 2), _row(0.5, 1, 2, shape=(8, 8, 2))])


def test_plot_csr_sweep_draws_one_line_per_shape():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    rows = [_row(s, 10, 10 * (1 - s) + 1, shape) for shape in [(8, 8, 1), (8, 8, 4)] for s in (0.5, 0.9)]
    ax = plot_csr_sweep(rows)
    assert len(ax.get_lines()) == 3  # two shapes plus the break-even line at 1
    assert list(ax.get_lines()[0].get_xdata()) == [0.5, 0.9]
    matplotlib.pyplot.close(ax.figure)


# ---- sweep machinery and the command line -----------------------------------------------------

def test_linear_sweep_records_errors_and_goes_on(monkeypatch):
    monkeypatch.setattr(linear_module, "cuda_problem", lambda device=None: None)  # reach the per-combination code
    shapes = (("m", "a", 32, 64), ("m", "b", 64, 32))
    rows = linear_sweep(shapes, tokens=(1, 512), dtypes=("float16",), backends=("cusparselt", "cutlass"), device="cpu")
    assert len(rows) == 2 * 2 * 2 and all(row["error"] for row in rows)  # no GPU kernel runs on CPU
    assert [row["phase"] for row in rows[:2]] == ["decode", "prefill"]
    skipped = linear_sweep(shapes, tokens=(1,), dtypes=("float16",), backends=("cutlass",), device="cpu", deadline=0.0)
    assert all(row["error"] == "skipped: time budget spent" for row in skipped)


def test_two_four_weight_has_no_zero_groups():
    weight = two_four_weight(8, 16, torch.float16, seed=1)
    assert weight.dtype == torch.float16 and is_two_four(weight)
    assert ((weight != 0).reshape(8, 4, 4).sum(-1) == 2).all()  # normal values: exactly 2 kept per group


@pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")
def test_gpu_command_without_cuda_exits_0_and_writes_nothing(tmp_path, capsys):
    assert main(["speed", "gpu", "--out", str(tmp_path / "gpu.json"), "--quick"]) == 0
    assert NO_CUDA in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_cpu_csr_command(tmp_path):
    out = tmp_path / "csr.json"
    args = ["speed", "cpu-csr", "--out", str(out), "--shapes", "8x16", "--tokens", "2", "--sparsities", "0,0.5",
            "--min-run-time", "0.001", "--threads", "1"]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert [row["sparsity"] for row in record["rows"]] == [0.0, 0.5]
    assert list(record["break_even"]) == ["8x16, 2 tokens"] and record["versions"]["torch"] == torch.__version__
    assert "| 8x16 | 2 | 0.50 |" in out.with_suffix(".md").read_text()
    assert main(args) == 2  # refuses to overwrite
    assert main(["speed", "cpu-csr", "--out", str(tmp_path / "x.json"), "--shapes", "8by16"]) == 2


# ---- CUDA: the 2:4 kernels compute the dense product --------------------------------------------

def _run_or_skip_cutlass_on_hopper(backend, call):
    try:
        return call()
    except (RuntimeError, NotImplementedError) as error:
        if backend == "cutlass" and torch.cuda.get_device_capability()[0] != 8:
            pytest.skip(f"CUTLASS 2:4 kernels unavailable on this GPU: {error}")
        raise


@needs_cuda
@pytest.mark.parametrize("backend", ["cusparselt", "cutlass"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("tokens", [1, 200])  # 1 and 200 are padded up to the kernels' row multiple
def test_cuda_linear_benchmark_sparse_equals_dense(backend, dtype, tokens):
    from prunelib.eval.speed.linear import linear_benchmark

    found = _run_or_skip_cutlass_on_hopper(
        backend, lambda: linear_benchmark(256, 512, tokens, dtype, backend, "cuda", min_run_time=0.01))
    assert found["agrees"], found
    assert found["sparse_rel_error"] <= found["tolerance"]
    assert found["sparse_weight_bytes"] < found["dense_weight_bytes"]


@needs_cuda
@pytest.mark.parametrize("backend", ["cusparselt", "cutlass"])
def test_cuda_converted_llama_matches_dense(backend):
    from torch.sparse import SparseSemiStructuredTensor

    from prunelib.eval.speed.semi import convert_to_semi_structured

    model = random_llama(2, dtype=torch.float16, device="cuda", hidden_size=128, intermediate_size=256,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=256)
    mask_two_four(model)
    prompt = torch.randint(0, 256, (1, 40), device="cuda")
    with torch.inference_mode():
        dense = model(prompt).logits.float()

    def convert_and_run():
        converted = convert_to_semi_structured(model, backend, strict=True)
        with torch.inference_mode():
            return converted, model(prompt).logits.float()

    converted, sparse = _run_or_skip_cutlass_on_hopper(backend, convert_and_run)
    assert len(converted) == 2 * 7
    assert all(isinstance(m.weight, SparseSemiStructuredTensor) for m in prunable_linears(model).values())
    assert (sparse - dense).abs().max() <= 8 * torch.finfo(torch.float16).eps * dense.abs().max()
    assert greedy_decode(model, prompt, 4)[0].shape == (1, 4)  # the KV-cache loop runs on 2:4 weights
