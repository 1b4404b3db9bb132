"""Tables and figures of the experiment suites, rendered from stored results.

Chapter 8 (and the book's summary) show the sweep as a table and a quality-versus-sparsity plot,
and zero-shot accuracy as a table. Everything here reads records of :mod:`prunelib.experiments`
and never computes one: a run that has not been computed yet shows as ``pending``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

from ..core.methods import METHODS
from ..eval.zero_shot import TASKS, ZERO_SHOT_TASKS
from ..experiments.runs import Run, stored
from ..experiments.suites import SWEEP_SPARSITIES
from .statistics import (Z95, compare, documents_needed, documents_needed_mean, gap_interval, pareto_front, spearman,
                         spread)

LABELS = {"dense": "dense", **{name: method.label for name, method in METHODS.items()}}
PENDING = "pending"
#: the metric reported per task, and the tables' short names (defined with each task)
PREFERRED = {name: task.metric for name, task in TASKS.items()}
SHORT = {name: task.short for name, task in TASKS.items()}


def lookup(specs: Iterable[Run], root: Path | str) -> dict[Run, dict | None]:
    """Each spec's stored record (None where it is still to be computed), in order."""
    return {spec: stored(spec, root=root) for spec in specs}


def column(spec: Run) -> str:
    """Where a run goes in the sweep: ``"dense"``, ``"10%"`` ... ``"80%"``, ``"2:4"``, ``"4:8"``."""
    if spec.method == "dense":
        return "dense"
    return spec.nm if spec.nm else f"{round(100 * spec.sparsity)}%"


def sweep_grid(records: Mapping[Run, dict | None]) -> dict[str, dict[str, dict | None]]:
    """``{method: {column: record or None}}`` for the uniform runs (per-block allocations are skipped)."""
    grid: dict[str, dict[str, dict | None]] = {}
    for spec, record in records.items():
        if spec.block_sparsity is None and not spec.permute:
            grid.setdefault(spec.method, {})[column(spec)] = record
    return grid


def _ppl(record: dict | None) -> str:
    if record is None:
        return PENDING
    ppl = record["ppl"]
    return f"{ppl:,.0f}" if ppl >= 1e4 else f"{ppl:,.2f}"


def _sparsity(record: dict | None) -> str:
    return "" if record is None else format(record["sparsity"], ".4f")


def sweep_table(records: Mapping[Run, dict | None]) -> str:
    """Markdown: one row per sparsity (then 2:4 and 4:8), one column of perplexity per method, each
    with the measured overall sparsity of the method's run; the dense run in the first row (its
    measured sparsity counts the weights that are exactly zero before any pruning)."""
    grid = sweep_grid(records)
    methods = [m for m in grid if m != "dense"]
    dense = grid.get("dense", {}).get("dense")
    head = "| target | " + " | ".join(f"{LABELS[m]} ppl | {LABELS[m]} sparsity" for m in methods) + " |"
    rows = [head, "|---|" + "---:|---:|" * len(methods),
            "| dense (0%) | " + " | ".join(f"{_ppl(dense)} | {_sparsity(dense)}" for _ in methods) + " |"]
    for name in [f"{round(100 * s)}%" for s in SWEEP_SPARSITIES] + ["2:4", "4:8"]:
        cells = []
        for method in methods:
            record = grid[method].get(name)
            cells.append(f"{_ppl(record)} | {_sparsity(record)}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def sweep_curves(records: Mapping[Run, dict | None]) -> dict[str, tuple[list[float], list[float]]]:
    """``{method: (measured sparsities, perplexities)}`` of the computed unstructured runs, dense first."""
    grid = sweep_grid(records)
    dense = grid.get("dense", {}).get("dense")
    curves = {}
    for method, runs in grid.items():
        if method == "dense":
            continue
        points = [(dense["sparsity"], dense["ppl"])] if dense else []
        points += [(r["sparsity"], r["ppl"]) for name, r in runs.items() if name.endswith("%") and r is not None]
        points.sort()
        curves[method] = ([s for s, _ in points], [p for _, p in points])
    return curves


def plot_sweep(records: Mapping[Run, dict | None], ax=None):
    """Perplexity (log scale) against measured sparsity, one line per method; 2:4 and 4:8 as open
    markers at their sparsity (0.5); the dense perplexity as a dotted line. Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 5))[1]
    grid = sweep_grid(records)
    dense = grid.get("dense", {}).get("dense")
    for method, (x, y) in sweep_curves(records).items():
        line, = ax.plot(x, y, marker="o", label=LABELS[method])
        for pattern, marker, shift in (("2:4", "s", 0.012), ("4:8", "^", -0.012)):
            record = grid[method].get(pattern)
            if record is not None:
                ax.plot(record["sparsity"] + shift, record["ppl"], marker=marker, linestyle="none",
                        markerfacecolor="none", color=line.get_color(), markersize=9,
                        label=f"{LABELS[method]} {pattern}")
    if dense:
        ax.axhline(dense["ppl"], color="gray", linestyle=":", linewidth=1, label="dense")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of the prunable linears (measured)")
    ax.set_ylabel("WikiText-2 perplexity (log scale)")
    ax.legend(fontsize=8, ncol=2)
    return ax


def preferred_score(task_result: dict, task: str) -> tuple[float, float]:
    """(value, standard error) of the task's :data:`PREFERRED` metric."""
    metric = PREFERRED[task]
    return task_result[metric], task_result[f"{metric}_stderr"]


def zero_shot_rows(records: Mapping[Run, dict | None], tasks: Iterable[str] = ZERO_SHOT_TASKS) -> list[dict]:
    """One row per run that measured zero-shot accuracy: ``{"spec", "record", "scores": {task: (value,
    stderr)}, "mean": (value, stderr)}``, with ``record`` None (and no scores) while pending. The
    mean is over tasks; its standard error assumes independent tasks, ``sqrt(sum se^2) / k``."""
    tasks = list(tasks)
    rows = []
    for spec, record in records.items():
        if not spec.zero_shot:
            continue
        row = {"spec": spec, "record": record, "scores": {}, "mean": None}
        if record is not None:
            results = record["zero_shot"]["tasks"]
            row["scores"] = {t: preferred_score(results[t], t) for t in tasks if t in results}
            if len(row["scores"]) == len(tasks):
                values = [v for v, _ in row["scores"].values()]
                errors = [e for _, e in row["scores"].values()]
                row["mean"] = (sum(values) / len(values), math.sqrt(sum(e * e for e in errors)) / len(errors))
        rows.append(row)
    return rows


def method_label(method: str, where: str) -> str:
    """``dense``, ``Wanda 50%``, ``SparseGPT 2:4``, ... for a method and its :func:`column`."""
    return "dense" if method == "dense" else f"{LABELS[method]} {where}"


def run_label(spec: Run) -> str:
    """:func:`method_label` of a run."""
    return method_label(spec.method, column(spec))


def zero_shot_table(records: Mapping[Run, dict | None], tasks: Iterable[str] = ZERO_SHOT_TASKS) -> str:
    """Markdown: one row per zero-shot run (perplexity, each task's preferred metric, the mean ± its
    standard error), a first row with chance level, and a header naming each task's metric."""
    tasks = list(tasks)
    rows = zero_shot_rows(records, tasks)
    done = [row for row in rows if row["record"] is not None]
    head = "| model | ppl | " + " | ".join(f"{SHORT[t]} ({PREFERRED[t]})" for t in tasks) + " | mean |"
    lines = [head, "|---|---:|" + "---:|" * (len(tasks) + 1)]
    if done:
        chance = {t: done[0]["record"]["zero_shot"]["tasks"][t]["chance"] for t in tasks}
        lines.append("| chance | | " + " | ".join(f"{chance[t]:.3f}" for t in tasks)
                     + f" | {sum(chance.values()) / len(tasks):.3f} |")
    for row in rows:
        if row["record"] is None:
            lines.append(f"| {run_label(row['spec'])} | {PENDING} | " + " | ".join("" for _ in tasks) + " | |")
            continue
        cells = [f"{row['scores'][t][0]:.3f}" if t in row["scores"] else "-" for t in tasks]
        mean = f"{row['mean'][0]:.3f} ± {row['mean'][1]:.3f}" if row["mean"] else "-"
        lines.append(f"| {run_label(row['spec'])} | {_ppl(row['record'])} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines) + "\n"


def freshness(records: Mapping[object, dict | None]) -> str:
    """One sentence: were the stored records computed by the code and data of today? A stale record
    (see :mod:`prunelib.experiments.cache`) is shown, never hidden, and this says so."""
    found = [record for record in records.values() if record is not None]
    stale = [record for record in found if "stale" in record]
    one = len(found) == 1
    if not stale:
        return ("This record was" if one else f"All {len(found)} stored records were") + " computed by the current code."
    legacy = all("before code hashes" in record["stale"] for record in stale)
    return (("This record is" if one else f"{len(stale)} of {len(found)} stored records are") + " *stale*: computed "
            + ("before this library recorded the code behind each result" if legacy else "by other code or data")
            + " (`prunelib experiments --list` names them; running the suite recomputes them).")


def seed_groups(records: Mapping[Run, dict | None]) -> dict[tuple[str, str, str], list[float]]:
    """``{(model, method, column): [perplexity of each stored seed]}`` in the records' order
    (a run without calibration has one value whatever the seeds); runs still to compute are left out."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for spec, record in records.items():
        values = groups.setdefault((spec.model, spec.method, column(spec)), [])
        if record is not None:
            values.append(record["ppl"])
    return groups


def _mean_std(values: list[float]) -> str:
    if not values:
        return PENDING
    mean, std = spread(values)
    return f"{mean:,.2f} ± {std:,.2f} ({len(values)})" if len(values) > 1 else f"{mean:,.2f}"


def seed_table(records: Mapping[Run, dict | None]) -> str:
    """Markdown: one row per method and pattern, one column per model: mean ± standard deviation of
    the perplexity over calibration seeds (the count in brackets; one value where the method uses
    no calibration)."""
    groups = seed_groups(records)
    models = list(dict.fromkeys(model for model, _, _ in groups))
    rows = list(dict.fromkeys((method, where) for _, method, where in groups))
    lines = ["| run | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for method, where in rows:
        lines.append(f"| {method_label(method, where)} | " + " | ".join(_mean_std(groups.get((m, method, where), [])) for m in models) + " |")
    return "\n".join(lines)


def seed_comparisons(records: Mapping[Run, dict | None]) -> list[dict]:
    """Every pair of pruning methods at the same model and pattern, both with stored runs:
    ``{"model", "pattern", "better", "worse", "gap", "spread", "exceeds"}`` (:func:`~prunelib.report.statistics.compare`,
    ``better`` the lower mean perplexity, ``seeds`` the smaller of the two seed counts, ``counts``
    ``{method: seeds stored}`` and ``means`` ``{method: (mean, standard deviation)}`` of both);
    ``exceeds`` is None while a calibrated method
    has fewer than two seeds stored (no spread measured yet). :func:`seed_verdict` states one of them."""
    groups = seed_groups(records)
    found = []
    for (model, method, where), values in groups.items():
        for (other_model, other, other_where), others in groups.items():
            if (other_model, other_where) != (model, where) or method == "dense" or other == "dense" \
                    or not values or not others or not method < other:
                continue
            result = _judged(values, others, (method, other))
            better, worse = (method, other) if result["gap"] < 0 else (other, method)
            found.append({"model": model, "pattern": where, "better": better, "worse": worse,
                          "gap": abs(result["gap"]), "spread": result["spread"], "exceeds": result["exceeds"],
                          "seeds": min(len(values), len(others)), "counts": {method: len(values), other: len(others)},
                          "means": {method: spread(values), other: spread(others)}})
    return found


def seed_verdict(records: Mapping[Run, dict | None], model: str, pattern: str,
                 methods: tuple[str, str] = ("wanda", "sparsegpt")) -> dict | None:
    """Which of two methods has the lower mean perplexity at one model and pattern, and whether the
    calibration seeds can tell them apart.

    The rule: the gap between the two mean perplexities over seeds is *larger than the seed spread*
    when it exceeds the sum of the two methods' sample standard deviations, and *within* it
    otherwise (with a few seeds this is a stated rule, not a test). While a method that reads
    calibration data has fewer than two seeds stored, no spread is measured and the gap is not judged.

    Returns None while either method has no stored run. Otherwise the entry of
    :func:`seed_comparisons` (``better``, ``worse``, ``gap``, ``spread``, ``exceeds``, ``seeds``,
    ``counts``: ``{method: seeds stored}``, and ``means``: ``{method: (mean, standard deviation)}``)
    with ``text``, the finding as one sentence:
    ``"SparseGPT is lower than Wanda by 2.80, more than the summed seed deviations (0.14)"``.
    """
    found = next((c for c in seed_comparisons(records) if (c["model"], c["pattern"]) == (model, pattern)
                  and {c["better"], c["worse"]} == set(methods)), None)
    if found is None:
        return None
    text = f"{LABELS[found['better']]} is lower than {LABELS[found['worse']]} by {found['gap']:,.2f}"
    if found["exceeds"] is None:
        single = [LABELS[m] for m in (found["better"], found["worse"])
                  if found["counts"][m] < 2 and METHODS[m].uses_calibration]
        which = f"of {single[0]}" if len(single) == 1 else "each of " + " and ".join(single)
        text += f", with one seed {which} stored so far: no spread to judge it by yet"
    else:
        text += (", more than" if found["exceeds"] else ", within") + \
            f" the summed seed deviations ({found['spread']:,.2f})"
    return {**found, "text": text}


NOT_RECORDED = "not recorded"


def provenance(record: dict) -> dict[str, object]:
    """The files and settings behind one stored record, flat, for a chapter's closing note.

    ``model_file`` and ``model_sha`` (the GGUF file and its SHA-256; the model's source where it is no
    GGUF file), ``calib_file``, ``calib_sha``, ``nsamples``, ``calib_seqlen`` and ``seed`` (the
    calibration draw), ``eval_file``, ``eval_sha``, ``eval_split``, ``eval_tokens``, ``windows`` and
    ``eval_seqlen`` (the evaluation: the file from ``eval_data``, or from ``eval`` as the command
    line's records keep it; windows and length from ``eval``, else ``eval_data``), and
    ``versions`` (python, torch, transformers and prunelib as one string). Data files are named as
    the records store them, by their path relative to the data root. A field the record does not
    hold is :data:`NOT_RECORDED`.
    """
    model = record.get("model") or {}
    calibration = record.get("calibration") or {}
    evaluation = record.get("eval") or {}
    eval_data = record.get("eval_data") or evaluation  # the command line's records keep the file in ``eval``
    versions = record.get("versions") or {}
    return {
        "model_file": model.get("gguf_file", model.get("source", NOT_RECORDED)),
        "model_sha": model.get("gguf_sha256", "none (not a GGUF file)" if model else NOT_RECORDED),
        "calib_file": calibration.get("path", calibration.get("hub", NOT_RECORDED)),
        "calib_sha": calibration.get("sha256", NOT_RECORDED),
        "nsamples": calibration.get("nsamples", NOT_RECORDED),
        "calib_seqlen": calibration.get("seqlen", NOT_RECORDED),
        "seed": calibration.get("seed", NOT_RECORDED),
        "eval_file": eval_data.get("path", eval_data.get("hub", NOT_RECORDED)),
        "eval_sha": eval_data.get("sha256", NOT_RECORDED),
        "eval_split": eval_data.get("split", NOT_RECORDED),
        "eval_tokens": eval_data.get("tokens", NOT_RECORDED),
        "windows": evaluation.get("windows", eval_data.get("windows", NOT_RECORDED)),
        "eval_seqlen": evaluation.get("seqlen", eval_data.get("seqlen", NOT_RECORDED)),
        "versions": ", ".join(f"{name} {versions[name]}" for name in ("python", "torch", "transformers", "prunelib")
                              if name in versions) or NOT_RECORDED,
    }


def _judged(values: list[float], others: list[float], methods: tuple[str, str]) -> dict:
    """:func:`~prunelib.report.statistics.compare`, with ``exceeds`` None while a calibrated method
    has fewer than two seeds stored (no spread measured yet)."""
    result = compare(values, others)
    if any(METHODS[name].uses_calibration and len(seen) < 2 for name, seen in zip(methods, (values, others))):
        result["exceeds"] = None
    return result


#: the core table's findings, checked on every model of the seeds suite: (claim, (method, column)
#: of the run claimed higher in perplexity, (method, column) of the run claimed lower)
FINDINGS = (
    ("SparseGPT beats Wanda at 50%", ("wanda", "50%"), ("sparsegpt", "50%")),
    ("SparseGPT beats Wanda at 2:4", ("wanda", "2:4"), ("sparsegpt", "2:4")),
    ("Wanda beats magnitude at 50%", ("magnitude", "50%"), ("wanda", "50%")),
    ("Wanda beats magnitude at 2:4", ("magnitude", "2:4"), ("wanda", "2:4")),
    ("2:4 costs more than 50% (Wanda)", ("wanda", "2:4"), ("wanda", "50%")),
    ("2:4 costs more than 50% (SparseGPT)", ("sparsegpt", "2:4"), ("sparsegpt", "50%")),
)


def transfer_findings(records: Mapping[Run, dict | None], findings=FINDINGS) -> list[dict]:
    """Each finding on each model: ``{"claim", "models": {model: None (runs pending) or {"ratio":
    mean higher / mean lower, "holds": ratio > 1, "exceeds": the gap against the summed seed
    deviations (None with one seed)}}, "transfers": True when it holds on every model, False when
    not, None while a model is pending}``."""
    groups = seed_groups(records)
    models = list(dict.fromkeys(model for model, _, _ in groups))
    found = []
    for claim, higher, lower in findings:
        per_model = {}
        for model in models:
            a, b = groups.get((model, *higher)), groups.get((model, *lower))
            if not a or not b:
                per_model[model] = None
                continue
            judged = _judged(a, b, (higher[0], lower[0]))
            ratio = spread(a)[0] / spread(b)[0]
            per_model[model] = {"ratio": ratio, "holds": ratio > 1, "exceeds": judged["exceeds"]}
        found.append(_finding_row(claim, per_model))
    return found


def _finding_row(claim: str, per_model: dict[str, dict | None]) -> dict:
    """``{"claim", "models", "transfers"}``: True when the finding holds on every model, False when
    not, None while a model's entry is pending (None)."""
    seen = [entry["holds"] for entry in per_model.values() if entry is not None]
    return {"claim": claim, "models": per_model, "transfers": None if len(seen) < len(per_model) else all(seen)}


def transfer_table(records: Mapping[Run, dict | None], findings=FINDINGS) -> str:
    """Markdown: one row per finding, per model the ratio of the two mean perplexities (above 1:
    the finding holds) and whether the gap exceeds the seed spread, then whether it holds on every
    model."""
    def cell(entry):
        judged = {True: "beyond spread", False: "within spread", None: "one seed"}[entry["exceeds"]]
        return f"{entry['ratio']:,.2f} ({judged})"

    return findings_table(transfer_findings(records, findings), cell=cell, heading="{}: ratio", align="---:|")


def by_model(records: Mapping[Run, dict | None]) -> dict[str, dict[Run, dict | None]]:
    """The records split by model, models in order of first appearance."""
    split: dict[str, dict[Run, dict | None]] = {}
    for spec, record in records.items():
        split.setdefault(spec.model, {})[spec] = record
    return split


def _percent(name: str) -> int:
    return int(name.rstrip("%"))


def reach(records: Mapping[Run, dict | None], method: str, factor: float) -> int | None:
    """The highest swept sparsity (in percent) up to which every unstructured run of ``method``
    has a perplexity within ``factor`` times the dense one: :math:`\\max\\{s : \\mathrm{ppl}(s')
    \\le f\\,\\mathrm{ppl}_0 \\text{ for all swept } s' \\le s\\}`, 0 when the lowest swept sparsity is
    already above the line, the highest swept one when none is. None while the dense run, or a run
    the answer depends on, is still to compute. One model's records."""
    grid = sweep_grid(records)
    dense = grid.get("dense", {}).get("dense")
    if dense is None:
        return None
    best = 0
    for name in sorted((n for n in grid.get(method, {}) if n.endswith("%")), key=_percent):
        record = grid[method][name]
        if record is None:
            return None
        if record["ppl"] > factor * dense["ppl"]:
            return best
        best = _percent(name)
    return best


def ppl_at(grid: dict, method: str, column: str | int) -> float | None:
    """The perplexity in a :func:`sweep_grid` cell, ``column`` a pattern (``"2:4"``) or a
    percentage (``50`` for ``"50%"``); None while that run is pending or not in the grid."""
    record = grid.get(method, {}).get(f"{column}%" if isinstance(column, int) else column)
    return None if record is None else record["ppl"]


def ratio_by_sparsity(records: Mapping[Run, dict | None], numerator: str, denominator: str) -> dict[int, float]:
    r"""``{percent: ppl_numerator / ppl_denominator}`` at every unstructured sparsity of the sweep
    where both methods' runs are stored, in increasing order. One model's records."""
    grid = sweep_grid(records)
    found = {}
    for name in sorted((n for n in grid.get(numerator, {}) if n.endswith("%")), key=_percent):
        a, b = ppl_at(grid, numerator, name), ppl_at(grid, denominator, name)
        if a is not None and b is not None:
            found[_percent(name)] = a / b
    return found


def _reach_order(records, factor: float) -> dict | None:
    reached = {method: reach(records, method, factor) for method in ("magnitude", "wanda", "sparsegpt")}
    if None in reached.values():
        return None
    return {"holds": reached["magnitude"] < min(reached["wanda"], reached["sparsegpt"]),
            "detail": " / ".join(f"{value}%" for value in reached.values())}


def _calibrated_agree(records, percents=(10, 20), tolerance=0.02) -> dict | None:
    found = ratio_by_sparsity(records, "wanda", "sparsegpt")
    if any(p not in found for p in percents):
        return None
    worst = max(max(found[p], 1 / found[p]) for p in percents)
    return {"holds": worst <= 1 + tolerance, "detail": f"largest ratio {worst:.3f}"}


def _lead_grows(records, percents=(50, 60, 70)) -> dict | None:
    found = ratio_by_sparsity(records, "wanda", "sparsegpt")
    if any(p not in found for p in percents):
        return None
    ratios = [found[p] for p in percents]
    return {"holds": all(a < b for a, b in zip(ratios, ratios[1:])), "detail": " → ".join(f"{r:.2f}" for r in ratios)}


def _magnitude_worst(records, percents=(30, 40, 50, 60, 70)) -> dict | None:
    grid = sweep_grid(records)
    margins = []
    for p in percents:
        found = [ppl_at(grid, m, p) for m in ("magnitude", "wanda", "sparsegpt")]
        if None in found:
            return None
        margins.append(found[0] / max(found[1:]))
    return {"holds": min(margins) > 1, "detail": f"smallest ratio {min(margins):,.2f}"}


#: chapter 8's sweep findings, checked on every model: (claim, check of one model's records giving
#: None while runs are pending, else ``{"holds", "detail"}``)
SWEEP_FINDINGS = (
    ("Within 10% of dense, magnitude reaches a lower sparsity than Wanda and SparseGPT",
     lambda records: _reach_order(records, 1.1)),
    ("Within 2x of dense, magnitude reaches a lower sparsity than Wanda and SparseGPT",
     lambda records: _reach_order(records, 2.0)),
    ("Wanda and SparseGPT agree within 2% at 10% and 20%", _calibrated_agree),
    ("SparseGPT's lead over Wanda (their ratio) grows from 50% to 60% to 70%", _lead_grows),
    ("Magnitude is the worst method at every sparsity from 30% to 70%", _magnitude_worst),
)


def check_findings(findings, inputs_by_model: Mapping[str, object]) -> list[dict]:
    """Each ``(claim, check)`` of ``findings`` on each model's input (a check returns None while
    results are pending, else ``{"holds", "detail"}``): ``{"claim", "models": {model: entry},
    "transfers": True when it holds on every model, False when not, None while a model is pending}``."""
    rows = []
    for claim, check in findings:
        rows.append(_finding_row(claim, {model: check(found) for model, found in inputs_by_model.items()}))
    return rows


def _holds_cell(entry: dict) -> str:
    return f"{'yes' if entry['holds'] else '**no**'} ({entry['detail']})"


def findings_table(rows: list[dict], *, cell=_holds_cell, heading: str = "{}", align: str = "---|") -> str:
    """Markdown of finding rows (:func:`check_findings`, :func:`transfer_findings`): one row per
    finding, per model ``cell(entry)`` (default: whether it holds and the numbers it rests on;
    ``pending`` while the entry is None) under the column ``heading.format(model)``, then whether
    it holds on every model."""
    models = list(rows[0]["models"]) if rows else []
    lines = ["| finding | " + " | ".join(heading.format(m) for m in models) + " | holds on all |",
             "|---|" + align * len(models) + "---|"]
    for row in rows:
        holds = {True: "yes", False: "**no**", None: PENDING}[row["transfers"]]
        cells = [PENDING if row["models"][m] is None else cell(row["models"][m]) for m in models]
        lines.append(f"| {row['claim']} | " + " | ".join(cells) + f" | {holds} |")
    return "\n".join(lines)


def _mid_sentence(claim: str) -> str:
    """``claim`` inside a sentence: its first letter lowered unless the first word is a name (a
    method's label such as Wanda, or a word with capitals inside such as OWL or SparseGPT's)."""
    word = claim.split()[0]
    if word in LABELS.values() or word[1:] != word[1:].lower():
        return claim
    return claim[0].lower() + claim[1:]


def findings_text(rows: list[dict]) -> str:
    """One sentence on :func:`check_findings` rows: how many hold on every model, which do not,
    and how many still wait for results, e.g. ``"4 of the 5 findings hold on both models; not on
    both: magnitude is the worst method ...; 1 waits for results still to compute"``."""
    held = sum(row["transfers"] is True for row in rows)
    failed = [row["claim"] for row in rows if row["transfers"] is False]
    waiting = sum(row["transfers"] is None for row in rows)
    models = len(rows[0]["models"]) if rows else 0
    text = (f"{held} of the {len(rows)} findings {'holds' if held == 1 else 'hold'} on "
            f"{'both' if models == 2 else f'all {models}'} models")
    if failed:
        text += "; not on " + ("both" if models == 2 else "all") + ": " + "; ".join(map(_mid_sentence, failed))
    if waiting:
        text += f"; {waiting} {'waits' if waiting == 1 else 'wait'} for results still to compute"
    return text


def sweep_findings(records: Mapping[Run, dict | None], findings=SWEEP_FINDINGS) -> list[dict]:
    """:func:`check_findings` of the sweep findings on each model of ``records`` (the sweep of one
    model and the transfer sweep of another, together). One calibration draw per run: the seeds
    suite's spread at 50% is the yardstick."""
    return check_findings(findings, by_model(records))


def sweep_findings_table(records: Mapping[Run, dict | None], findings=SWEEP_FINDINGS) -> str:
    """Markdown of :func:`sweep_findings` (:func:`findings_table`)."""
    return findings_table(sweep_findings(records, findings))


def plot_relative_sweep(records: Mapping[Run, dict | None], ax=None):
    """Perplexity relative to each model's dense perplexity (log scale) against measured sparsity:
    one colour per method, one line style per model, so that the two sweeps share one scale.
    Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 5))[1]
    colours = {method: f"C{i}" for i, method in enumerate(METHODS)}
    for style, (model, model_records) in zip(("-", "--", ":", "-."), by_model(records).items()):
        dense = sweep_grid(model_records).get("dense", {}).get("dense")
        if dense is None:
            continue
        for method, (x, y) in sweep_curves(model_records).items():
            ax.plot(x, [value / dense["ppl"] for value in y], linestyle=style, marker="o", markersize=4,
                    color=colours[method], label=f"{LABELS[method]}, {model}")
    ax.axhline(1.1, color="gray", linestyle=":", linewidth=1, label="10% above dense")
    ax.set_yscale("log")
    ax.set_xlabel("sparsity of the prunable linears (measured)")
    ax.set_ylabel("perplexity / dense perplexity (log scale)")
    ax.legend(fontsize=8, ncol=2)
    return ax


def plot_seeds(records: Mapping[Run, dict | None], ax=None):
    """Bars of the mean perplexity (log scale) per method and pattern, one group per model, with
    error bars of one standard deviation over seeds; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    groups = seed_groups(records)
    models = list(dict.fromkeys(model for model, _, _ in groups))
    rows = [key for key in dict.fromkeys((method, where) for _, method, where in groups) if key[0] != "dense"]
    width = 0.8 / len(models)
    for offset, model in enumerate(models):
        stats = [spread(groups[(model, *row)]) if groups.get((model, *row)) else (math.nan, 0.0) for row in rows]
        positions = [i + (offset - (len(models) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(positions, [m for m, _ in stats], width, yerr=[s for _, s in stats], capsize=3, label=model)
        dense = groups.get((model, "dense", "dense"))
        if dense:
            ax.axhline(dense[0], color=ax.containers[-1].patches[0].get_facecolor(), linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [f"{LABELS[m]}\n{w}" for m, w in rows], fontsize=8)
    ax.set_ylabel("WikiText-2 perplexity (log)")
    ax.legend(fontsize=8, title="dotted: dense", title_fontsize=8)
    return ax


def plot_tradeoff(points: Mapping[str, tuple[float, float]], *, xlabel: str, ylabel: str = "WikiText-2 perplexity (log)",
                  ax=None, logy: bool = True, close: float = 0.01):
    """Scatter ``{label: (x, y)}`` (both to be minimized, e.g. megabytes and perplexity), label every
    point, and join the Pareto front (:func:`~prunelib.report.statistics.pareto_front`) by a red
    step line; points within ``close`` (relative) of each other in both coordinates share one
    label. Returns ``(axes, labels on the front)``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ax = ax or plt.subplots(figsize=(7, 4))[1]
    labels = list(points)
    front = [labels[i] for i in pareto_front([points[label] for label in labels])]
    shown: list[tuple[tuple[float, float], list[str]]] = []
    for label in labels:
        x, y = points[label]
        near = next((group for (gx, gy), group in shown
                     if abs(gx - x) <= close * abs(gx) and abs(gy - y) <= close * abs(gy)), None)
        if near is None:
            shown.append(((x, y), [label]))
        else:
            near.append(label)
    xs = [x for (x, _), _ in shown]
    ys = [math.log(y) if logy else y for (_, y), _ in shown]
    width, height = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []  # label anchors in units of the data range
    for (x, y), group in sorted(shown, key=lambda item: -item[0][1]):
        on = any(label in front for label in group)
        ax.scatter([x], [y], s=36 if on else 20, color="tab:red" if on else "tab:gray", zorder=3)
        u, v, drop = (x - min(xs)) / width, ((math.log(y) if logy else y) - min(ys)) / height, 0
        while any(abs(u - pu) < 0.25 and abs(v - drop * 0.035 - pv) < 0.035 for pu, pv in placed):
            drop += 1  # a label close above: move this one down a line until it is clear
        placed.append((u, v - drop * 0.035))
        ax.annotate(" / ".join(group), (x, y), fontsize=7, xytext=(4, 3 - 9 * drop), textcoords="offset points",
                    color="black" if on else "dimgray")
    ordered = sorted(points[label] for label in front)
    ax.step([x for x, _ in ordered], [y for _, y in ordered], where="post", color="tab:red", linewidth=1)
    if logy:
        ax.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax, front


def zero_shot_power(records: Mapping[Run, dict | None], against: Iterable[str] = ("wanda-50", "sparsegpt-50"),
                    tasks: Iterable[str] = ZERO_SHOT_TASKS) -> dict:
    """Can this sample of documents tell the dense model from the ``against`` runs (by name)?

    Per task, from the stored zero-shot results (each task's :data:`PREFERRED` metric): the dense
    accuracy and whether its 95% interval lies above chance (``above``); per compared run, the gap
    dense minus run, its unpaired 95% interval, whether that excludes 0, and the documents per
    model a gap of this size needs for 80% power next to the documents the task has. ``mean``
    does the same for the mean over the tasks above chance. Returns ``{"tasks": {...}, "mean":
    {...}, "kept": [...], "n": documents scored per task}``; empty while a run is pending."""
    from ..eval.zero_shot import documents

    rows = {run_label(row["spec"]) if row["spec"].method != "dense" else "dense": row
            for row in zero_shot_rows(records, tasks) if row["record"] is not None}
    named = {row["spec"].name: row for row in rows.values()}
    if "dense" not in rows or any(name not in named for name in against):
        return {}
    dense = rows["dense"]
    results = dense["record"]["zero_shot"]["tasks"]
    found: dict = {"tasks": {}, "kept": [], "n": dense["record"]["zero_shot"]["limit"]}
    for task, (p, se) in dense["scores"].items():
        n, chance = results[task]["n"], results[task]["chance"]
        entry = {"dense": p, "se": se, "chance": chance, "above": p - Z95 * se > chance, "available": documents(task),
                 "n": n, "against": {}}
        for name in against:
            q = named[name]["scores"][task][0]
            low, high = gap_interval(p, n, q, n)
            entry["against"][name] = {"accuracy": q, "gap": p - q, "low": low, "high": high,
                                      "separated": low > 0 or high < 0, "needed": documents_needed(p, q)}
        found["tasks"][task] = entry
        if entry["above"]:
            found["kept"].append(task)
    kept = found["kept"]
    found["mean"] = {}
    for name in against:
        pairs = [(found["tasks"][t]["dense"], found["tasks"][t]["against"][name]["accuracy"]) for t in kept]
        if not pairs:
            continue
        n = found["n"]
        gap = sum(p - q for p, q in pairs) / len(pairs)
        se = math.sqrt(sum(p * (1 - p) / n + q * (1 - q) / n for p, q in pairs)) / len(pairs)
        found["mean"][name] = {"gap": gap, "low": gap - Z95 * se, "high": gap + Z95 * se,
                               "separated": abs(gap) > Z95 * se, "needed": documents_needed_mean(pairs),
                               "available": min(found["tasks"][t]["available"] for t in kept)}
    return found


def correlation_text(found: dict | None) -> str:
    """``"-0.64 over 7 runs (95% interval -0.94 to 0.24; exact p = 0.139)"`` for a
    :func:`~prunelib.report.statistics.spearman` result; a perfect order has no interval."""
    if found is None:
        return "not measurable with fewer than 4 runs"
    spread_text = (f"95% interval {found['low']:.2f} to {found['high']:.2f}" if abs(found["rho"]) < 1
                   else "a perfect order, so no Fisher interval")
    exact = f"; exact p = {found['p']:.3f}" if found.get("p") is not None else ""
    return f"{found['rho']:.2f} over {found['n']} runs ({spread_text}{exact})"


def perplexity_accuracy_correlation(records: Mapping[Run, dict | None], tasks: Iterable[str] | None = None) -> dict | None:
    """Spearman's rho between perplexity and mean accuracy (over ``tasks``, default all) of the
    stored zero-shot runs, with its 95% interval (:func:`~prunelib.report.statistics.spearman`);
    None with fewer than 4 runs."""
    rows = [row for row in zero_shot_rows(records, tasks or ZERO_SHOT_TASKS) if row["mean"] is not None]
    if len(rows) < 4:
        return None
    return spearman([row["record"]["ppl"] for row in rows], [row["mean"][0] for row in rows])
