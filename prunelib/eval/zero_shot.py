"""Zero-shot accuracy with lm-eval-harness's own tasks, read from the local data directory.

Each task is lm-eval's built-in YAML (prompt, choices, target, metrics) unchanged, except
where its documents come from: the local files documented in ``shared/data/README.md``
are converted to the schema of the hub dataset that YAML expects, and handed to lm-eval as
a ``custom_dataset`` holding only the split lm-eval evaluates. Nothing touches the network
then. Without a local file the task falls back to lm-eval's default hub dataset.

A multiple-choice document with context ``c`` and choices ``a_1..a_k`` scores
``acc = [argmax_i log p(a_i | c) == gold]`` and ``acc_norm = [argmax_i log p(a_i | c) /
bytes(a_i) == gold]`` (lm-eval's definitions); the reported numbers are means over the
first ``limit`` documents, with ``stderr = std / sqrt(n)``. Chance is the mean over the same
documents of ``1 / k``.

    prunelib eval --zero-shot arc_easy piqa --zero-shot-limit 200 --json dense.json
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import functools
import importlib.metadata
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import data
from ..errors import DataNotFoundError, PrunelibError

INSTALL_HINT = 'pip install "lm-eval>=0.4.13,<0.5"'
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


# ---------------------------------------------------------------- local files -> hub schema


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _multiple_choice(question: dict) -> dict:
    """AI2's ``{"stem", "choices": [{"text", "label"}]}`` as the hub's ``{"text": [...], "label": [...]}``."""
    return {
        "text": [choice["text"] for choice in question["choices"]],
        "label": [choice["label"] for choice in question["choices"]],
    }


def arc_records(path: Path) -> list[dict]:
    """AI2's ARC jsonl as ``allenai/ai2_arc`` rows: ``id, question (str), choices {text, label}, answerKey``."""
    return [
        {"id": row["id"], "question": row["question"]["stem"], "choices": _multiple_choice(row["question"]),
         "answerKey": row["answerKey"]}
        for row in _jsonl(path)
    ]


def openbookqa_records(path: Path) -> list[dict]:
    """OpenBookQA ``Main/test.jsonl`` as ``allenai/openbookqa`` (main) rows: ``id, question_stem, choices, answerKey``."""
    return [
        {"id": row["id"], "question_stem": row["question"]["stem"], "choices": _multiple_choice(row["question"]),
         "answerKey": row["answerKey"]}
        for row in _jsonl(path)
    ]


def winogrande_records(path: Path) -> list[dict]:
    """WinoGrande 1.1 ``dev.jsonl`` as ``allenai/winogrande`` rows: ``sentence, option1, option2, answer ("1"|"2")``."""
    return [{key: row[key] for key in ("sentence", "option1", "option2", "answer")} for row in _jsonl(path)]


def piqa_records(questions: Path, labels: Path) -> list[dict]:
    """PIQA ``valid.jsonl`` joined line by line with ``valid-labels.lst``: ``goal, sol1, sol2, label (0|1)``."""
    rows = _jsonl(questions)
    gold = [int(line) for line in labels.read_text(encoding="utf-8").split()]
    if len(rows) != len(gold):
        raise PrunelibError(f"{questions} has {len(rows)} questions but {labels} has {len(gold)} labels")
    return [{"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"], "label": label}
            for row, label in zip(rows, gold)]


def boolq_records(path: Path) -> list[dict]:
    """Google's BoolQ ``dev.jsonl`` as ``super_glue/boolq`` rows: ``question, passage, idx, label (0=no, 1=yes)``."""
    return [{"question": row["question"], "passage": row["passage"], "idx": index, "label": int(row["answer"])}
            for index, row in enumerate(_jsonl(path))]


def rte_records(path: Path) -> list[dict]:
    """The ``nyu-mll/glue`` RTE validation parquet: ``sentence1, sentence2, label (0=entailment), idx``."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def split_context(ctx: str) -> tuple[str, str]:
    """Split a HellaSwag context back into ``(ctx_a, ctx_b)`` with ``ctx = ctx_a + " " + ctx_b``.

    ``ctx_b`` is the unfinished sentence an ending continues (ActivityNet items: ``"the
    lady"``), which lm-eval capitalizes. The converted file keeps only ``ctx``, so ``ctx_b``
    is taken to be the text after the last ``". "``, ``"! "`` or ``"? "`` when it starts with
    a lowercase letter and does not end a sentence itself; otherwise it is empty (WikiHow
    items, whose contexts end with a full stop).
    """
    if ctx.endswith((".", "!", "?")):
        return ctx, ""
    cut = max(ctx.rfind(". "), ctx.rfind("! "), ctx.rfind("? "))
    fragment = ctx[cut + 2 :] if cut >= 0 else ""
    if not fragment[:1].islower():
        return ctx, ""
    return ctx[: cut + 1], fragment


def parse_hellaswag(text: str) -> list[dict]:
    """The converted HellaSwag text (6 lines per item) as ``Rowan/hellaswag`` rows.

    Lines per item: ``activity_label + ": " + ctx``, the gold label, then the four endings.
    Rows: ``ind, activity_label, ctx_a, ctx_b, ctx, endings (4), label ("0".."3")``.
    """
    lines = text.split("\n")  # not splitlines(): the text may hold \x0b, \u2028 ...
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise PrunelibError(f"HellaSwag text has {len(lines)} lines, not a multiple of 6 (label, context, 4 endings)")
    records = []
    for start in range(0, len(lines), 6):
        first, label, *endings = lines[start : start + 6]
        activity_label, separator, ctx = first.partition(": ")
        if not separator or label not in ("0", "1", "2", "3"):
            raise PrunelibError(
                f"HellaSwag item {start // 6} (line {start + 1}) is not '<activity>: <context>' followed by a label 0-3"
            )
        ctx_a, ctx_b = split_context(ctx)
        records.append({"ind": start // 6, "activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b,
                        "ctx": ctx, "endings": endings, "label": label})
    return records


def hellaswag_records(path: Path) -> list[dict]:
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        return parse_hellaswag(handle.read())


@dataclass(frozen=True)
class LocalTask:
    """A zero-shot task: where lm-eval defines it, which local files stand in for its hub
    dataset, and how tables report it."""

    yaml: str  #: lm-eval's task YAML, relative to ``lm_eval/tasks``
    split: str  #: the split lm-eval evaluates
    files: tuple[str, ...]  #: relative to the data directory
    records: Callable[..., list[dict]]  #: files -> rows in the hub dataset's schema
    hub: str  #: the dataset lm-eval would download
    short: str  #: the name tables use
    #: the metric tables report: length-normalised accuracy where lm-eval defines it (choices of
    #: different lengths), plain accuracy for the two-way and fill-in tasks
    metric: str


TASKS: dict[str, LocalTask] = {
    "arc_easy": LocalTask("arc/arc_easy.yaml", "test", ("ai2_arc/ARC-Easy/ARC-Easy-Test.jsonl",),
                          arc_records, "allenai/ai2_arc:ARC-Easy", "ARC-e", "acc_norm"),
    "arc_challenge": LocalTask("arc/arc_challenge.yaml", "test", ("ai2_arc/ARC-Challenge/ARC-Challenge-Test.jsonl",),
                               arc_records, "allenai/ai2_arc:ARC-Challenge", "ARC-c", "acc_norm"),
    "hellaswag": LocalTask("hellaswag/hellaswag.yaml", "validation", ("hellaswag/hellaswag_val_full.txt.bz2",),
                           hellaswag_records, "Rowan/hellaswag", "HellaSwag", "acc_norm"),
    "winogrande": LocalTask("winogrande/default.yaml", "validation", ("winogrande/dev.jsonl",),
                            winogrande_records, "allenai/winogrande:winogrande_xl", "WinoGrande", "acc"),
    "piqa": LocalTask("piqa/piqa.yaml", "validation", ("piqa/valid.jsonl", "piqa/valid-labels.lst"),
                      piqa_records, "baber/piqa", "PIQA", "acc_norm"),
    "boolq": LocalTask("super_glue/boolq/default.yaml", "validation", ("boolq/dev.jsonl",),
                       boolq_records, "aps/super_glue:boolq", "BoolQ", "acc"),
    "rte": LocalTask("glue/rte/default.yaml", "validation", ("rte/glue/validation-00000-of-00001.parquet",),
                     rte_records, "nyu-mll/glue:rte", "RTE", "acc"),
    "openbookqa": LocalTask("openbookqa/openbookqa.yaml", "test", ("openbookqa/test.jsonl",),
                            openbookqa_records, "allenai/openbookqa:main", "OBQA", "acc_norm"),
}
#: every task, in the order tables show them
ZERO_SHOT_TASKS = tuple(TASKS)


# ---------------------------------------------------------------- lm-eval machinery


def _require_lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks._yaml_loader import load_yaml  # noqa: F401
    except ImportError as error:
        raise PrunelibError(f"zero-shot evaluation needs lm-eval-harness 0.4.13 or newer: {INSTALL_HINT}") from error
    return importlib.metadata.version("lm_eval")


def _check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [name for name in tasks if name not in TASKS]
    if unknown or not tasks:
        raise PrunelibError(f"unknown zero-shot tasks {unknown or '(none given)'}; use some of {', '.join(TASKS)}")
    if len(set(tasks)) != len(tasks):
        raise PrunelibError(f"zero-shot tasks are repeated: {list(tasks)}")
    return tasks


def _data_root(data_dir: str | Path | None) -> Path | None:
    if data_dir is None:
        return data.data_dir()
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"data_dir={data_dir} is not a directory")
    return root


def _local_files(name: str, root: Path | None) -> list[Path] | None:
    """The task's local files, or None when any of them is missing."""
    if root is None:
        return None
    paths = [root / relative for relative in TASKS[name].files]
    return paths if all(path.is_file() for path in paths) else None


@functools.cache
def documents(name: str, data_dir: str | Path | None = None) -> int:
    """How many documents task ``name``'s split holds in the local files: what ``limit=None``
    evaluates, and the most any power analysis can ask of it."""
    files = _local_files(name, _data_root(data_dir))
    if files is None:
        raise _missing_error({name: list(TASKS[name].files)}, _data_root(data_dir), None)
    return len(TASKS[name].records(*files))


def _hub_offline() -> bool:
    """Whether the Hugging Face libraries are told not to use the network (env or their constants)."""
    if any(os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE") for var in _OFFLINE_VARS):
        return True
    try:
        import huggingface_hub.constants

        return bool(huggingface_hub.constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False


@contextlib.contextmanager
def _offline(enabled: bool):
    """Make every Hugging Face library refuse the network inside the block, then restore.

    ``datasets`` and ``huggingface_hub`` read the environment once at import, so their
    module constants are switched too.
    """
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved_env = {var: os.environ.get(var) for var in _OFFLINE_VARS}
    constants = [(module, attr) for module in (datasets.config, huggingface_hub.constants)
                 for attr in _OFFLINE_VARS if hasattr(module, attr)]
    saved = [getattr(module, attr) for module, attr in constants]
    os.environ.update({var: "1" for var in _OFFLINE_VARS})
    for module, attr in constants:
        setattr(module, attr, True)
    try:
        yield
    finally:
        for (module, attr), value in zip(constants, saved):
            setattr(module, attr, value)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _silent(tqdm_class):
    """``tqdm_class`` with ``disable=True`` forced (lm-eval passes its own ``disable=``, which would win over a partial)."""

    @functools.wraps(tqdm_class)
    def silent(*args, **kwargs):
        kwargs["disable"] = True
        return tqdm_class(*args, **kwargs)

    return silent


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence lm-eval's logging and progress bars, and those of ``datasets`` and transformers."""
    if not enabled:
        yield
        return
    import datasets.utils.logging as ds_logging
    import lm_eval.api.model
    import lm_eval.api.task
    import lm_eval.models.huggingface

    from ..model.loading import quiet_transformers

    logger = logging.getLogger("lm_eval")
    level = logger.level
    bars = [module for module in (lm_eval.api.task, lm_eval.api.model, lm_eval.models.huggingface)
            if hasattr(module, "tqdm")]
    originals = [module.tqdm for module in bars]
    datasets_bars = ds_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    for module, original in zip(bars, originals):
        module.tqdm = _silent(original)
    ds_logging.disable_progress_bar()
    try:
        with quiet_transformers():
            yield
    finally:
        logger.setLevel(level)
        for module, original in zip(bars, originals):
            module.tqdm = original
        if datasets_bars:
            ds_logging.enable_progress_bar()


class _DropExpected(logging.Filter):
    """Drops lm-eval's warnings about what this module does on purpose (a custom dataset, a model object)."""

    EXPECTED = ("Custom kwargs can be passed to `--metadata`", "`pretrained` model kwarg is not of type `str`")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in str(record.msg) for text in self.EXPECTED)


@contextlib.contextmanager
def _expected_warnings_dropped():
    loggers = [logging.getLogger(name) for name in ("lm_eval.api.task", "lm_eval.models.huggingface")]
    dropper = _DropExpected()
    for logger in loggers:
        logger.addFilter(dropper)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(dropper)


def _task_config(name: str) -> dict:
    """lm-eval's own config of ``name``: its YAML with includes and ``!function`` references resolved."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(lm_eval.tasks.__file__).parent / TASKS[name].yaml
    if not path.is_file():
        raise PrunelibError(f"lm-eval has no '{TASKS[name].yaml}' for task '{name}'; {INSTALL_HINT}")
    config = load_yaml(path, resolve_func=True)
    if config.get("task") != name:
        raise PrunelibError(f"{path} defines task '{config.get('task')}', expected '{name}'")
    for key in ("tag", "group", "task_list"):  # registry keys, not task settings
        config.pop(key, None)
    config["num_fewshot"] = 0
    return config


def _local_config(name: str, files: Sequence[Path]) -> dict:
    """The task's config with its documents replaced by the converted local files (eval split only)."""
    import datasets

    spec = TASKS[name]
    records = spec.records(*files)
    config = _task_config(name)
    config.update(
        custom_dataset=lambda **_: datasets.DatasetDict({spec.split: datasets.Dataset.from_list(records)}),
        training_split=None,  # zero-shot: no other split is read; an absent one would be a KeyError
        validation_split=spec.split if spec.split == "validation" else None,
        test_split=spec.split if spec.split == "test" else None,
        fewshot_split=None,
    )
    return config


def _missing_error(missing: dict[str, list[str]], root: Path | None, cause: Exception | None) -> DataNotFoundError:
    where = f"the data directory {root}" if root else "no local data directory (none was found)"
    files = "; ".join(f"{name}: {', '.join(rel)}" for name, rel in missing.items())
    hub = (f"the Hugging Face hub failed ({type(cause).__name__}: {str(cause)[:300]})" if cause
           else "the Hugging Face hub is switched off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)")
    return DataNotFoundError(
        f"cannot load zero-shot data: {where} lacks {files}, and {hub}. "
        f"Point {data.ENV_VAR} at a directory holding these files (see shared/data/README.md)."
    )


def build_tasks(tasks: Iterable[str] = ZERO_SHOT_TASKS, *, data_dir: str | Path | None = None) -> tuple[dict, dict]:
    """lm-eval ``ConfigurableTask`` objects for ``tasks`` and the record of their data.

    Local files are used where all of a task's files exist (no network); the other tasks
    download lm-eval's default hub dataset, unless the hub is offline, which raises one
    :class:`DataNotFoundError` naming ``$PRUNELIB_DATA_DIR`` and every missing file.
    Returns ``({name: task}, {name: {"split", "files", "sha256"} or {"split", "hub"}})``.
    """
    _require_lm_eval()
    from lm_eval.api.task import ConfigurableTask

    tasks = _check_tasks(tasks)
    root = _data_root(data_dir)
    local = {name: _local_files(name, root) for name in tasks}
    missing = {name: list(TASKS[name].files) for name, files in local.items() if files is None}
    if missing and _hub_offline():
        raise _missing_error(missing, root, None)
    built, record = {}, {}
    for name in tasks:
        spec = TASKS[name]
        if local[name] is not None:
            with _offline(True), _expected_warnings_dropped():
                built[name] = ConfigurableTask(config=_local_config(name, local[name]))
            record[name] = {"split": spec.split, "files": list(spec.files),  # relative to the data root
                            "sha256": [data.sha256(path) for path in local[name]]}
        else:
            try:
                built[name] = ConfigurableTask(config=_task_config(name))
            except Exception as error:  # noqa: BLE001 - any hub failure becomes one clear message
                raise _missing_error(missing, root, error) from error
            record[name] = {"split": spec.split, "hub": spec.hub, "files": [], "sha256": []}
    return built, record


def _number(value) -> float | None:
    """lm-eval reports an undefined stderr (one document) as the string "N/A"."""
    return float(value) if isinstance(value, (int, float)) else None


def chance_level(task, n: int) -> float:
    """Mean over the first ``n`` evaluated documents of ``1 / number of choices``."""
    docs = task.task_docs  # the evaluated split, after process_docs (set by ConfigurableTask)
    return sum(1.0 / len(task.doc_to_choice(docs[i])) for i in range(n)) / n


def zero_shot(
    model,
    tokenizer,
    tasks: Iterable[str] = ZERO_SHOT_TASKS,
    *,
    limit: int | None = None,
    batch_size: int = 1,
    data_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict:
    """Zero-shot accuracy of an in-memory causal LM on lm-eval's multiple-choice ``tasks``.

    ``limit`` evaluates the first ``limit`` documents of each task (all when None). The model
    runs where it is (its device and dtype) through ``lm_eval.models.huggingface.HFLM``; the
    tokenizer is copied, so lm-eval's pad-token setup does not change the caller's.

    Returns ``{"tasks": {name: {"acc", "acc_norm" (None where lm-eval defines none),
    "acc_stderr", "acc_norm_stderr", "n", "chance"}}, "average": {"acc", "acc_norm"},
    "limit", "lm_eval", "data": {name: {"split", "files", "sha256", ...}}, "seconds"}``.
    ``average.acc_norm`` takes ``acc_norm`` where a task has it and ``acc`` otherwise.
    """
    version = _require_lm_eval()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PrunelibError(f"limit must be a positive number of documents or None, got {limit!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PrunelibError(f"batch_size must be a positive integer, got {batch_size!r}")
    start = time.perf_counter()
    tasks = _check_tasks(tasks)
    with _quiet(quiet):
        built, sources = build_tasks(tasks, data_dir=data_dir)
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM

        for task in built.values():
            task.set_fewshot_seed(seed=1234)  # what simple_evaluate does; unused at zero shots
        with _offline(all("hub" not in record for record in sources.values())):
            with _expected_warnings_dropped():
                lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size)
                output = evaluate(lm=lm, task_dict={"tasks": built, "groups": {}}, limit=limit, log_samples=False)

    results = {}
    for name in tasks:
        metrics, n = output["results"][name], int(output["n-samples"][name]["effective"])
        results[name] = {
            "acc": float(metrics["acc,none"]),
            "acc_norm": _number(metrics.get("acc_norm,none")),
            "acc_stderr": _number(metrics.get("acc_stderr,none")),
            "acc_norm_stderr": _number(metrics.get("acc_norm_stderr,none")),
            "n": n,
            "chance": chance_level(built[name], n),
        }
    acc_norm = [r["acc_norm"] if r["acc_norm"] is not None else r["acc"] for r in results.values()]
    return {
        "tasks": results,
        "average": {"acc": sum(r["acc"] for r in results.values()) / len(results),
                    "acc_norm": sum(acc_norm) / len(acc_norm),
                    "chance": sum(r["chance"] for r in results.values()) / len(results)},
        "limit": limit,
        "batch_size": batch_size,
        "lm_eval": version,
        "data": sources,
        "seconds": time.perf_counter() - start,
    }


def markdown_table(result: dict) -> str:
    """The per-task numbers of :func:`zero_shot` as a Markdown table."""
    def cell(value):
        return "" if value is None else f"{value:.3f}"

    rows = ["| task | n | acc | acc_norm | chance |", "|---|---:|---:|---:|---:|"]
    for name, r in result["tasks"].items():
        rows.append(f"| {name} | {r['n']} | {cell(r['acc'])} ± {cell(r['acc_stderr'])} | "
                    f"{cell(r['acc_norm'])}{' ± ' + cell(r['acc_norm_stderr']) if r['acc_norm'] is not None else ''} | "
                    f"{cell(r['chance'])} |")
    average = result["average"]
    rows.append(f"| average | | {cell(average['acc'])} | {cell(average['acc_norm'])} | {cell(average['chance'])} |")
    return "\n".join(rows) + "\n"
