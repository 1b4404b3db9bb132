"""``prunelib gpu-check``: the dry run that CI runs, and the end-to-end measurement it shares with the GPU.

On a machine without CUDA the command must run every step but the kernels, say what it skipped,
and leave records that are right: exact 2:4 weights at every Llama shape, every embedded-model
linear masked and convertible, and a core table whose perplexities are those of the run cache.
"""

import json
import math

import pytest
import torch

from prunelib.cli import main
from prunelib.errors import PrunelibError
from prunelib.eval.speed.llama import measure_end_to_end, random_llama
from prunelib.eval.speed.semi import is_two_four
from prunelib.experiments import gpu_check as check
from prunelib.experiments.runs import profile_root
from prunelib.experiments.suites import core_suite
from prunelib.model.architecture import prunable_linears, weight_matrix

TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                  max_position_embeddings=128)


def test_measure_end_to_end_masks_every_linear_and_times_the_dense_model():
    model = random_llama(2, dtype=torch.float32, seed=3, **TINY_LLAMA)
    found = measure_end_to_end(model, 256, prompts=(8,), new_tokens=3, repeats=1, backends=())
    linears = prunable_linears(model)
    assert found["masked_linears"] == len(linears) == 2 * 7
    assert all(is_two_four(weight_matrix(module)) for module in linears.values())
    run = found["dense"]["8"]
    assert run["generated_tokens"] == 3 and run["decode_steps"] == 2
    assert run["prefill_tokens_per_s"] == pytest.approx(8 / run["prefill_seconds"])
    assert found["sparse"] == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_measure_end_to_end_refuses_backends_without_cuda_before_masking():
    model = random_llama(1, dtype=torch.float32, seed=3, **TINY_LLAMA)
    before = {name: weight_matrix(m).clone() for name, m in prunable_linears(model).items()}
    with pytest.raises(PrunelibError, match="CUDA"):
        measure_end_to_end(model, 256, prompts=(8,), new_tokens=2, repeats=1, backends=("cusparselt",))
    assert all(torch.equal(before[name], weight_matrix(m)) for name, m in prunable_linears(model).items())


def test_linear_shapes_are_llama_7b_and_13b_at_prefill_and_decode_token_counts():
    shapes = {(model, out_features, in_features) for model, _, out_features, in_features in check.LINEAR_SHAPES}
    assert {("llama-2-13b", 13824, 5120), ("llama-2-13b", 5120, 13824), ("llama-2-7b", 11008, 4096)} <= shapes
    assert {1, 16} <= set(check.LINEAR_TOKENS) and {512, 2048} <= set(check.LINEAR_TOKENS)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is what CI runs; a GPU runs the real check")
def test_gpu_check_dry_run_exercises_every_part_and_says_what_it_skipped(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert main(["gpu-check", "--out", str(out), "--budget-s", "3000"]) == 0
    record = json.loads(out.read_text())
    assert record["dry_run"] and record["command"].startswith("prunelib gpu-check")
    assert any("no 2:4 kernel" in line for line in record["skipped"])
    assert "Not measured" in out.with_suffix(".md").read_text()
    assert "dry run" in capsys.readouterr().out

    # part 1: every shape x backend x token count, each weight exactly 2:4 and of a shape the backend takes
    assert len(record["linear"]) == len(check.LINEAR_SHAPES) * 2 * len(check.LINEAR_TOKENS)
    assert all(row["convertible"] and row["error"].startswith("skipped") for row in record["linear"])

    # part 2: both embedded models masked (every block linear), each linear convertible, dense timed
    for name, layers in (("smollm2-135m", 30 * 7), ("gemma3-270m", 18 * 7)):
        found = record["end_to_end"][name]
        assert found["masked_linears"] == layers
        assert found["convertible"] == {"cusparselt": layers, "cutlass": layers}
        assert found["dense"][str(check.DRY_PLAN["prompt"])]["decode_tokens_per_s"] > 0

    # part 3: the core table of both models, read back from the run cache with the same numbers
    rows = record["perplexity"]
    assert [row["model"] for row in rows] == [m for m in check.MODELS for _ in range(7)]
    assert all("error" not in row for row in rows), [row for row in rows if "error" in row]
    root = profile_root("ci", tmp_path / "runs")
    for row, spec in zip(rows, [s for m in check.MODELS for s in core_suite("ci", model=m, seeds=(0,))]):
        stored = json.loads((root / row["file"]).read_text())
        assert stored["ppl"] == row["ppl"] and math.isfinite(row["ppl"]) and stored["run"] == spec.definition()
        if spec.method == "dense":  # the dequantized GGUF weights' own exact zeros (Gemma's Q4_K_M has some)
            assert 0 <= row["sparsity"] < 0.1
        else:
            assert row["sparsity"] == pytest.approx(0.5, abs=0.01)
