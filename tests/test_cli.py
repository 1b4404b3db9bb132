"""The command line: bad input refused with nothing written; save and reload round trip."""

import json

import pytest
import torch

from prunelib import data
from prunelib.cli import main

FAST = ["--nsamples", "4", "--calib-seqlen", "128", "--eval-seqlen", "256", "--max-windows", "2", "--quiet"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--method", "wanda", "--sparsity", "1.0"], "sparsity"),
        (["--method", "wanda", "--sparsity", "-0.5"], "sparsity"),
        (["--method", "wanda", "--nm", "4:4"], "N < M"),
        (["--method", "wanda", "--nm", "0:4"], "N < M"),
        (["--method", "sparsegpt", "--nm", "two:four"], "N:M"),
        (["--method", "dense", "--nm", "2:4"], "dense"),
        (["--method", "wanda", "--nsamples", "0"], "nsamples"),
        (["--method", "wanda", "--model", "./no/such/dir"], "not found"),
        (["--method", "wanda", "--permute"], "--nm"),
    ],
)
def test_bad_input_one_error_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "result.json"
    assert main(["prune", *FAST, *argv, "--json", str(out), "--save", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prunelib: error:") and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_unknown_method_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["prune", "--method", "obd"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_existing_outputs_need_overwrite(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "keep.txt").write_text("mine")
    assert main(["prune", "--method", "magnitude", *FAST, "--save", str(tmp_path / "model")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "model" / "keep.txt").read_text() == "mine"


def test_missing_data_offline(tmp_path, monkeypatch, capsys):
    import datasets

    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    assert main(["prune", "--method", "wanda", *FAST, "--json", str(tmp_path / "r.json")]) == 2
    assert data.ENV_VAR in capsys.readouterr().err and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_width_not_divisible_by_m_is_refused(tmp_path, capsys):
    # 576 = 2^6 * 9: divisible by 4 and 8, not by 5
    assert main(["prune", "--method", "magnitude", "--nm", "2:5", *FAST, "--json", str(tmp_path / "r.json")]) == 2
    assert "divisible" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_prune_save_reload_same_zeros_and_perplexity(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from prunelib.model.architecture import decoder_blocks, prunable_linears, weight_matrix
    from prunelib.model.loading import load_model

    saved, record_file = tmp_path / "pruned", tmp_path / "record.json"
    assert main(["prune", "--method", "wanda", "--nm", "2:4", *FAST, "--save", str(saved), "--json", str(record_file)]) == 0
    record = json.loads(record_file.read_text())
    for key in ("ppl", "sparsity", "prune_seconds", "eval_seconds", "versions", "calibration", "eval", "model"):
        assert key in record
    assert record["sparsity"] >= 0.5 and record["calibration"]["sha256"] and record["eval"]["sha256"]
    assert record["eval"]["tokens"] // 2048 == 148  # WikiText-2 test, GPTQ join, SmolLM2 tokenizer
    assert record["calibration"]["seed"] == 0 and record["eval"]["windows"] == 2

    reloaded = AutoModelForCausalLM.from_pretrained(saved)  # a plain HF directory
    assert len(decoder_blocks(reloaded)) == 30
    for name, module in prunable_linears(reloaded).items():
        W = weight_matrix(module)
        assert torch.all((W.reshape(W.shape[0], -1, 4) != 0).sum(-1) <= 2), name

    assert main(["eval", "--model", str(saved), "--eval-seqlen", "256", "--max-windows", "2", "--quiet",
                 "--json", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["ppl"] == pytest.approx(record["ppl"], rel=1e-6)
    assert evaluated["sparsity"] == record["sparsity"]
    # and the dense model differs: the pruning really happened
    dense, _ = load_model("smollm2-135m")
    assert not torch.equal(weight_matrix(prunable_linears(dense)["0.mlp.up_proj"]),
                           weight_matrix(prunable_linears(reloaded)["0.mlp.up_proj"]))


@pytest.mark.parametrize(
    "argv,message",
    [([], "nothing to remove"), (["--mlp", "1.5"], "sparsity"), (["--mlp", "0.5", "--nsamples", "0"], "nsamples")],
)
def test_shrink_refuses_bad_input(tmp_path, capsys, argv, message):
    assert main(["shrink", *FAST, *argv, "--json", str(tmp_path / "r.json")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_shrink_saves_a_smaller_model_that_reloads(tmp_path):
    from transformers import AutoModelForCausalLM

    saved, record_file = tmp_path / "smaller", tmp_path / "record.json"
    assert main(["shrink", "--mlp", "0.25", "--heads", "0.34", "--refit", *FAST,
                 "--save", str(saved), "--json", str(record_file)]) == 0
    record = json.loads(record_file.read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    config = reloaded.config
    assert (config.intermediate_size, config.num_attention_heads, config.num_key_value_heads) == (1152, 6, 3)
    assert sum(p.numel() for p in reloaded.parameters()) == record["parameters_after"] < record["parameters_before"]
    assert main(["eval", "--model", str(saved), "--eval-seqlen", "256", "--max-windows", "2", "--quiet",
                 "--json", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["ppl"] == pytest.approx(record["ppl"], rel=1e-6)


@pytest.mark.slow
def test_pipeline_prunes_quantizes_and_writes_a_compact_file_that_reloads_exactly(tmp_path, capsys):
    from prunelib.model.architecture import prunable_linears, weight_matrix
    from prunelib.storage.compact import load_compact

    out, compact = tmp_path / "r.json", tmp_path / "compact"
    argv = ["pipeline", "--method", "magnitude", "--nm", "2:4", "--quantize", "int4-g64", "--quant-method", "rtn",
            "--compact", str(compact), "--json", str(out), *FAST]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["compact"]["round_trip_exact"] and record["compact"]["layout"] == "nm"
    # 2:4 + INT4 + float16 scales per 64: 0.5 * 4 + 0.5 * 2 + 16 / 64 bits per linear weight
    assert record["compact"]["bits_per_linear_weight"] == pytest.approx(3.25)
    assert 0.5 <= record["sparsity"] < 0.52  # 2:4, plus the kept weights that round to code 0
    model = load_compact(compact)
    for name, module in prunable_linears(model).items():
        W = weight_matrix(module).reshape(weight_matrix(module).shape[0], -1, 4)
        assert torch.all((W != 0).sum(-1) <= 2), name
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err  # outputs exist now


def test_pipeline_refuses_bad_quantization_before_loading(tmp_path, capsys):
    for extra, message in ((["--quantize", "fp4"], "int4"), (["--quantize", "int4", "--quant-method", "joint"], "joint"),
                           (["--layout", "nm"], "--nm")):
        assert main(["pipeline", "--method", "wanda", *extra, "--compact", str(tmp_path / "c"), *FAST]) == 2
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


VERBS = ("prune", "shrink", "pipeline", "eval", "finetune", "experiments", "speed")


def test_one_command_with_help_for_every_verb(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert all(verb in listed for verb in VERBS)
    for verb in VERBS:
        with pytest.raises(SystemExit) as done:
            main([verb, "--help"])
        assert done.value.code == 0 and f"usage: prunelib {verb}" in capsys.readouterr().out


def test_python_dash_m_prunelib_is_the_command():
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "prunelib", "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.startswith("prunelib ")


@pytest.mark.parametrize("argv,message", [(["--steps", "0"], "--steps"), (["--lora", "0"], "--lora"),
                                          (["--lr", "-1"], "--lr")])
def test_finetune_refuses_bad_input_before_loading(tmp_path, capsys, argv, message):
    out = tmp_path / "tuned.json"
    assert main(["finetune", "--model", "./no/such/dir", *argv, "--json", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("lora", [[], ["--lora", "4"]])
def test_finetune_keeps_the_zeros_of_a_pruned_model(tmp_path, lora):
    pruned, first = tmp_path / "pruned", tmp_path / "pruned.json"
    assert main(["prune", "--method", "magnitude", "--sparsity", "0.5", *FAST, "--save", str(pruned),
                 "--json", str(first)]) == 0
    tuned = tmp_path / "tuned.json"
    assert main(["finetune", "--model", str(pruned), "--steps", "2", "--batch-size", "2", "--seqlen", "32",
                 "--eval-seqlen", "256", "--max-windows", "2", "--quiet", *lora, "--json", str(tuned)]) == 0
    before, after = json.loads(first.read_text()), json.loads(tuned.read_text())
    assert after["ppl_before"] == pytest.approx(before["ppl"], rel=1e-6)  # the saved model is the pruned one
    assert len(after["losses"]) == 2 and after["sparsity"] == before["sparsity"]  # not one zero revived
    assert after["ppl"] != after["ppl_before"]  # and it did train
    assert (after.get("merged", 0) > 0) == bool(lora) and after.get("revived", 0) == 0


@pytest.mark.slow
def test_eval_adds_zero_shot_accuracy(tmp_path):
    pytest.importorskip("lm_eval")
    out = tmp_path / "eval.json"
    assert main(["eval", "--eval-seqlen", "256", "--max-windows", "1", "--zero-shot", "piqa", "--zero-shot-limit", "2",
                 "--quiet", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    piqa = record["zero_shot"]["tasks"]["piqa"]
    assert piqa["n"] == 2 and 0 <= piqa["acc"] <= 1 and record["versions"]["lm_eval"]
    assert record["zero_shot"]["data"]["piqa"]["files"] == ["piqa/valid.jsonl", "piqa/valid-labels.lst"]
