"""Zero-shot evaluation through lm-eval on the local data files (tiny random Llama, real tokenizer)."""

from __future__ import annotations

import collections
import json
import math
import os
import socket

import pytest
import torch

pytest.importorskip("lm_eval")

import transformers as T  # noqa: E402

from prunelib import data
from prunelib.errors import DataNotFoundError, PrunelibError
from prunelib.eval.zero_shot import (
    TASKS,
    ZERO_SHOT_TASKS,
    _task_config,
    arc_records,
    boolq_records,
    hellaswag_records,
    openbookqa_records,
    parse_hellaswag,
    piqa_records,
    rte_records,
    split_context,
    winogrande_records,
    zero_shot,
)
from prunelib.model.loading import model_source

ROOT = data.data_dir()
HAVE_DATA = ROOT is not None and all((ROOT / f).is_file() for spec in TASKS.values() for f in spec.files)
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="local zero-shot data files (shared/data) not found")
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture(scope="module")
def tokenizer():
    """The embedded model's real tokenizer (49152 tokens), read from its GGUF file only."""
    source, gguf_file = model_source("smollm2-135m")
    return T.AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)


@pytest.fixture(scope="module")
def tiny(tokenizer):
    torch.manual_seed(0)
    config = T.LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048)
    return T.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _hub_online(monkeypatch):
    """The hub is not switched off, but every dataset download fails."""
    import datasets
    import huggingface_hub.constants

    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("hub unreachable (test)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)


# ---------------------------------------------------------------- task table


def test_task_table_is_lm_evals_tasks_and_splits():
    assert set(TASKS) == set(ZERO_SHOT_TASKS)
    for name, spec in TASKS.items():
        config = _task_config(name)
        assert config["task"] == name and config["num_fewshot"] == 0
        assert config["output_type"] == "multiple_choice"
        # lm-eval evaluates the test split when the task has one, else validation
        assert spec.split == (config.get("test_split") or config["validation_split"]), name


# ---------------------------------------------------------------- HellaSwag text format


def test_split_context():
    assert split_context("A man is sitting on a roof. he") == ("A man is sitting on a roof.", "he")
    assert split_context("A lady walks. She bends down. the lady") == ("A lady walks. She bends down.", "the lady")
    assert split_context("Wash the brush. Let it dry.") == ("Wash the brush. Let it dry.", "")
    assert split_context('A logo appears. " power dribble') == ('A logo appears. " power dribble', "")
    assert split_context("no sentence end") == ("no sentence end", "")
    for ctx in ("A man is sitting on a roof. he", "Wash the brush. Let it dry.", "x? the boy"):
        ctx_a, ctx_b = split_context(ctx)
        assert (ctx_a + " " + ctx_b).strip() == ctx


def test_parse_hellaswag_synthetic():
    text = "Act one: Ctx a. he\n2\ne0\ne1\ne2\ne3\nHome: How to x. Do y.\n0\nf0\nf1\nf2\nf3: with colon\n"
    first, second = parse_hellaswag(text)
    assert first == {"ind": 0, "activity_label": "Act one", "ctx_a": "Ctx a.", "ctx_b": "he", "ctx": "Ctx a. he",
                     "endings": ["e0", "e1", "e2", "e3"], "label": "2"}
    assert second["activity_label"] == "Home" and second["ctx_b"] == "" and second["endings"][3] == "f3: with colon"
    with pytest.raises(PrunelibError, match="multiple of 6"):
        parse_hellaswag("\n".join(text.split("\n")[:7]))
    with pytest.raises(PrunelibError, match="label 0-3"):
        parse_hellaswag(text.replace("\n2\n", "\n7\n"))
    with pytest.raises(PrunelibError, match="item 0"):
        parse_hellaswag(text.replace("Act one: ", "Act one "))


@needs_data
def test_hellaswag_file_as_lm_eval_rows():
    import datasets
    from lm_eval.tasks.hellaswag.utils import process_docs

    records = hellaswag_records(ROOT / TASKS["hellaswag"].files[0])
    assert len(records) == 10042  # README: 10042 tasks, 60,252 lines
    assert collections.Counter(r["label"] for r in records) == {"0": 2515, "1": 2485, "2": 2584, "3": 2458}
    assert all(len(r["endings"]) == 4 and all(r["endings"]) for r in records)
    assert all((r["ctx_a"] + " " + r["ctx_b"]).strip() == r["ctx"] for r in records)
    first = records[0]
    assert (first["activity_label"], first["ctx_a"], first["ctx_b"], first["label"]) == (
        "Roof shingle removal", "A man is sitting on a roof.", "he", "3")
    assert first["endings"][3] == "starts pulling up roofing on a roof."
    docs = process_docs(datasets.Dataset.from_list(records[:2]))  # lm-eval's own conversion
    assert docs[0]["query"] == "Roof shingle removal: A man is sitting on a roof. He"
    assert docs[0]["gold"] == 3 and docs[0]["choices"] == first["endings"]


# ---------------------------------------------------------------- other converters


@needs_data
def test_local_files_as_hub_rows():
    def path(name, index=0):
        return ROOT / TASKS[name].files[index]

    easy, challenge = arc_records(path("arc_easy")), arc_records(path("arc_challenge"))
    assert (len(easy), len(challenge)) == (2376, 1172)
    for row in easy + challenge:
        assert isinstance(row["question"], str) and row["answerKey"] in row["choices"]["label"]
        assert len(row["choices"]["text"]) == len(row["choices"]["label"])
    books = openbookqa_records(path("openbookqa"))
    assert len(books) == 500 and all(r["answerKey"] in r["choices"]["label"] for r in books)
    assert set(books[0]) == {"id", "question_stem", "choices", "answerKey"}
    wino = winogrande_records(path("winogrande"))
    assert len(wino) == 1267 and {r["answer"] for r in wino} == {"1", "2"}
    assert all(r["sentence"].count("_") == 1 for r in wino)
    piqa = piqa_records(path("piqa"), path("piqa", 1))
    assert len(piqa) == 1838 and {r["label"] for r in piqa} == {0, 1}
    boolq = boolq_records(path("boolq"))
    assert len(boolq) == 3270 and sum(r["label"] for r in boolq) == 2033  # README: 2033 true
    rte = rte_records(path("rte"))
    assert len(rte) == 277 and sum(r["label"] == 0 for r in rte) == 146  # 146 entailment
    assert set(rte[0]) == {"sentence1", "sentence2", "label", "idx"}


def test_piqa_label_count_mismatch(tmp_path):
    questions, labels = tmp_path / "q.jsonl", tmp_path / "l.lst"
    questions.write_text(json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}) + "\n")
    labels.write_text("0\n1\n")
    with pytest.raises(PrunelibError, match="1 questions but"):
        piqa_records(questions, labels)


# ---------------------------------------------------------------- requests built from the local files


def _expected_requests(name: str, limit: int) -> list[tuple[str, str]]:
    """(context, continuation) pairs written out by hand from the raw files and lm-eval's YAML prompts."""
    def path(index=0):
        return ROOT / TASKS[name].files[index]

    def rows(records, context, choices):
        return [(context(r), " " + choice) for r in records[:limit] for choice in choices(r)]

    if name in ("arc_easy", "arc_challenge"):
        raw = [json.loads(line) for line in path().read_text().splitlines()[:limit]]
        return rows(raw, lambda r: f"Question: {r['question']['stem']}\nAnswer:",
                    lambda r: [c["text"] for c in r["question"]["choices"]])
    if name == "openbookqa":
        raw = [json.loads(line) for line in path().read_text().splitlines()[:limit]]
        return rows(raw, lambda r: r["question"]["stem"], lambda r: [c["text"] for c in r["question"]["choices"]])
    if name == "piqa":
        raw = [json.loads(line) for line in path().read_text().splitlines()[:limit]]
        return rows(raw, lambda r: f"Question: {r['goal']}\nAnswer:", lambda r: [r["sol1"], r["sol2"]])
    if name == "boolq":
        raw = [json.loads(line) for line in path().read_text().splitlines()[:limit]]
        return rows(raw, lambda r: f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:", lambda r: ["no", "yes"])
    if name == "rte":
        import pyarrow.parquet as pq

        raw = pq.read_table(path()).to_pylist()
        return rows(raw, lambda r: f"{r['sentence1']}\nQuestion: {r['sentence2']} True or False?\nAnswer:",
                    lambda r: ["True", "False"])
    if name == "winogrande":  # partial scoring: the option fills the blank in the context
        raw = [json.loads(line) for line in path().read_text().splitlines()[:limit]]
        pairs = []
        for r in raw:
            before, after = r["sentence"].split("_")
            pairs += [(before + r[option], " " + after.strip()) for option in ("option1", "option2")]
        return pairs
    assert name == "hellaswag"
    import bz2

    lines = bz2.open(path(), "rt", encoding="utf-8").read().split("\n")
    assert lines[0] == "Roof shingle removal: A man is sitting on a roof. he"  # lm-eval capitalizes ctx_b
    first = [("Roof shingle removal: A man is sitting on a roof. He", " " + ending) for ending in lines[2:6]]
    return first[: 4 * limit]


@needs_data
def test_lm_eval_requests_are_the_yaml_prompts_on_the_local_rows(no_network):
    from prunelib.eval.zero_shot import build_tasks

    built, _ = build_tasks()
    for name, task in built.items():
        limit = 1 if name == "hellaswag" else 2
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        requests = sorted((i.doc_id, i.idx, i.args) for i in task.instances)
        assert [args for _, _, args in requests] == _expected_requests(name, limit), name


# ---------------------------------------------------------------- evaluation


def _loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context), tokenized as a whole and split after the context's tokens."""
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    ids = torch.tensor([whole])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
    targets = whole[len(context_ids):]
    positions = range(len(context_ids) - 1, len(whole) - 1)
    return sum(logprobs[p, t].item() for p, t in zip(positions, targets))


def _brute_force(model, tokenizer, docs) -> tuple[float, float]:
    """Mean acc and acc_norm (log-likelihood / characters) over ``(context, choices, gold)`` docs."""
    acc = acc_norm = 0
    for context, choices, gold in docs:
        lls = [_loglikelihood(model, tokenizer, context, " " + choice) for choice in choices]
        acc += max(range(len(lls)), key=lls.__getitem__) == gold
        acc_norm += max(range(len(lls)), key=lambda i: lls[i] / len(choices[i])) == gold
    return acc / len(docs), acc_norm / len(docs)


@needs_data
def test_zero_shot_all_tasks_offline_and_quiet(tiny, tokenizer, no_network, capfd):
    import huggingface_hub.constants

    environment = {var: os.environ.get(var) for var in OFFLINE_VARS}
    constant = huggingface_hub.constants.HF_HUB_OFFLINE
    pad_token = tokenizer.pad_token
    capfd.readouterr()
    limit = 3
    result = zero_shot(tiny, tokenizer, limit=limit, quiet=True)
    assert capfd.readouterr() == ("", "")  # quiet: no bars, no warnings
    assert {var: os.environ.get(var) for var in OFFLINE_VARS} == environment  # restored
    assert huggingface_hub.constants.HF_HUB_OFFLINE == constant and tokenizer.pad_token == pad_token

    assert list(result["tasks"]) == list(ZERO_SHOT_TASKS) and result["limit"] == limit
    easy = arc_records(ROOT / TASKS["arc_easy"].files[0])[:limit]
    chance = {"arc_easy": sum(1 / len(r["choices"]["text"]) for r in easy) / limit, "hellaswag": 0.25,
              "winogrande": 0.5, "piqa": 0.5, "boolq": 0.5, "rte": 0.5, "openbookqa": 0.25}
    for name, r in result["tasks"].items():
        assert r["n"] == limit
        assert 0 <= r["acc"] <= 1 and math.isclose(r["acc"] * limit, round(r["acc"] * limit))
        if name in ("boolq", "rte", "winogrande"):  # lm-eval defines only acc there
            assert r["acc_norm"] is None and r["acc_norm_stderr"] is None
        else:
            assert 0 <= r["acc_norm"] <= 1 and r["acc_norm_stderr"] >= 0
        if name in chance:
            assert r["chance"] == pytest.approx(chance[name]), name
        record = result["data"][name]
        assert record["files"] == list(TASKS[name].files)
        assert record["sha256"] == [data.sha256(ROOT / f) for f in TASKS[name].files]
    assert result["tasks"]["arc_challenge"]["chance"] == pytest.approx(0.25, abs=0.1)
    accs = [r["acc"] for r in result["tasks"].values()]
    assert result["average"]["acc"] == pytest.approx(sum(accs) / len(accs))
    json.dumps(result)  # storable as is


@needs_data
def test_zero_shot_matches_brute_force_loglikelihoods(tiny, tokenizer, no_network):
    import prunelib as pl

    public_entry_point = pl.zero_shot

    limit = 5
    result = public_entry_point(tiny, tokenizer, ("arc_easy", "piqa"), limit=limit, batch_size=2, quiet=True)
    arc = [(f"Question: {r['question']}\nAnswer:", r["choices"]["text"], r["choices"]["label"].index(r["answerKey"]))
           for r in arc_records(ROOT / TASKS["arc_easy"].files[0])[:limit]]
    piqa = [(f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], r["label"])
            for r in piqa_records(*(ROOT / f for f in TASKS["piqa"].files))[:limit]]
    for name, docs in (("arc_easy", arc), ("piqa", piqa)):
        acc, acc_norm = _brute_force(tiny, tokenizer, docs)
        assert (result["tasks"][name]["acc"], result["tasks"][name]["acc_norm"]) == pytest.approx((acc, acc_norm))


# ---------------------------------------------------------------- missing data


def test_missing_data_offline_names_env_var_and_file(tmp_path, monkeypatch, tiny, tokenizer, no_network):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as error:
        zero_shot(tiny, tokenizer, ("arc_easy", "piqa"), limit=2, quiet=True)
    message = str(error.value)
    assert data.ENV_VAR in message and str(tmp_path) in message
    assert "ai2_arc/ARC-Easy/ARC-Easy-Test.jsonl" in message and "piqa/valid-labels.lst" in message


def test_missing_data_hub_failure_is_one_clear_error(tmp_path, monkeypatch, tiny, tokenizer, no_network):
    _hub_online(monkeypatch)
    with pytest.raises(DataNotFoundError, match="hub unreachable") as error:
        zero_shot(tiny, tokenizer, ("boolq",), limit=2, data_dir=tmp_path, quiet=True)  # argument beats the env
    message = str(error.value)
    assert data.ENV_VAR in message and "boolq/dev.jsonl" in message and str(tmp_path) in message
    with pytest.raises(DataNotFoundError, match="not a directory"):
        zero_shot(tiny, tokenizer, ("boolq",), data_dir=tmp_path / "absent", quiet=True)


@needs_data
def test_partial_data_dir_uses_what_is_there(tmp_path, monkeypatch, tiny, tokenizer, no_network):
    relative = TASKS["rte"].files[0]
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).symlink_to(ROOT / relative)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    _hub_online(monkeypatch)
    result = zero_shot(tiny, tokenizer, ("rte",), limit=4, quiet=True)
    assert result["tasks"]["rte"]["n"] == 4 and result["data"]["rte"]["files"] == [relative]
    assert result["data"]["rte"]["sha256"] == [data.sha256(ROOT / relative)]  # the local file, named relative to the root
    with pytest.raises(DataNotFoundError, match="winogrande/dev.jsonl") as error:
        zero_shot(tiny, tokenizer, ("rte", "winogrande"), limit=4, quiet=True)
    assert relative not in str(error.value)


@pytest.mark.parametrize("options, match", [
    (dict(limit=0), "limit"), (dict(limit=2.5), "limit"), (dict(limit=True), "limit"),
    (dict(batch_size=0), "batch_size"), (dict(tasks=("mmlu",)), "unknown zero-shot tasks"),
    (dict(tasks=()), "unknown zero-shot tasks"), (dict(tasks=("rte", "rte")), "repeated"),
])
def test_bad_arguments(options, match):
    tasks = options.pop("tasks", ("rte",))
    with pytest.raises(PrunelibError, match=match):
        zero_shot(None, None, tasks, **options)
