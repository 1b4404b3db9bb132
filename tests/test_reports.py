"""Tables of the experiment suites: pending runs, measured cells, and the zero-shot mean."""

import math

import pytest

from prunelib.eval.zero_shot import ZERO_SHOT_TASKS
from prunelib.experiments import suites
from prunelib.experiments.runs import Run
from prunelib.report import runs as reports


def _zero_shot(value):
    tasks = {t: {"acc": value, "acc_norm": value + 0.01, "acc_stderr": 0.03, "acc_norm_stderr": 0.04,
                 "n": 100, "chance": 0.25} for t in ZERO_SHOT_TASKS}
    return {"tasks": tasks}


@pytest.fixture
def records():
    suite = suites.sweep_suite("ci")
    found = {}
    for spec in suite:
        if spec.method == "dense":
            found[spec] = {"ppl": 20.0, "sparsity": 0.0003, "zero_shot": _zero_shot(0.5)}  # a few zeros as shipped
        elif spec.method == "wanda" and spec.nm is None:
            found[spec] = {"ppl": 20.0 / (1 - spec.sparsity), "sparsity": spec.sparsity - 0.001,
                           **({"zero_shot": _zero_shot(0.4)} if spec.zero_shot else {})}
        else:
            found[spec] = None  # still to be computed
    return found


def test_sweep_table_marks_pending_and_shows_measured_sparsity(records):
    table = reports.sweep_table(records).splitlines()
    assert len(table) == 2 + 1 + 8 + 2  # header, rule, dense, 10..80%, 2:4, 4:8
    fifty = next(line for line in table if line.startswith("| 50% |"))
    cells = [c.strip() for c in fifty.strip("|").split("|")]
    # magnitude pending, Wanda measured (ppl 40 at measured sparsity 0.499), SparseGPT pending
    assert cells == ["50%", "pending", "", "40.00", "0.4990", "pending", ""]
    dense = [c.strip() for c in table[2].strip("|").split("|")]
    assert dense == ["dense (0%)"] + ["20.00", "0.0003"] * 3  # measured, not assumed to be 0


def test_sweep_curves_start_at_dense_and_skip_pending(records):
    curves = reports.sweep_curves(records)
    x, y = curves["wanda"]
    assert x[0] == 0.0003 and y[0] == 20.0 and len(x) == 1 + 8 and x == sorted(x)
    assert curves["magnitude"] == ([0.0003], [20.0])


def test_zero_shot_rows_use_the_preferred_metric_and_combine_errors(records):
    rows = reports.zero_shot_rows(records)
    assert [reports.run_label(r["spec"]) for r in rows] == [
        "dense", "magnitude 50%", "magnitude 2:4", "Wanda 50%", "Wanda 2:4", "SparseGPT 50%", "SparseGPT 2:4"]
    dense = rows[0]
    assert dense["scores"]["arc_easy"] == (pytest.approx(0.51), 0.04)  # acc_norm
    assert dense["scores"]["boolq"] == (0.5, 0.03)  # acc: lm-eval defines no acc_norm for BoolQ
    norm = sum(reports.PREFERRED[t] == "acc_norm" for t in ZERO_SHOT_TASKS)
    k = len(ZERO_SHOT_TASKS)
    assert dense["mean"][0] == pytest.approx(0.5 + 0.01 * norm / k)
    assert dense["mean"][1] == pytest.approx(math.sqrt(norm * 0.04**2 + (k - norm) * 0.03**2) / k)
    assert rows[1]["record"] is None and rows[1]["mean"] is None
    table = reports.zero_shot_table(records)
    assert "| chance |" in table and table.count("pending") == 5


def test_lookup_reads_only_stored_files(tmp_path):
    spec = Run(method="wanda", sparsity=0.5)
    assert reports.lookup([spec], tmp_path) == {spec: None}


def test_freshness_says_how_many_records_are_stale():
    current, legacy, other = {"ppl": 1.0}, {"ppl": 2.0, "stale": "computed before code hashes were recorded; ..."}, \
        {"ppl": 3.0, "stale": "computed by code 0123456789ab, the current code is ..."}
    assert reports.freshness({1: current, 2: None}) == "This record was computed by the current code."
    assert reports.freshness({1: current, 2: current}) == "All 2 stored records were computed by the current code."
    assert reports.freshness({1: current, 2: legacy}).startswith("1 of 2 stored records are *stale*: computed before")
    assert "by other code or data" in reports.freshness({1: legacy, 2: other, 3: None})


def _seed_records(values):
    """The ci core suite with perplexities ``values[(method, column)]``: a list per seed, or one number."""
    records = {}
    for spec in suites.core_suite("ci"):
        found = values.get((spec.method, reports.column(spec)))
        if isinstance(found, list):
            found = found[spec.seed] if spec.seed < len(found) else None
        records[spec] = None if found is None else {"ppl": found}
    return records


def test_seed_table_gives_mean_and_sample_deviation_per_method_and_pattern():
    records = _seed_records({("dense", "dense"): 20.0, ("wanda", "50%"): [45.0, 46.0, 47.0],
                             ("sparsegpt", "50%"): [42.0, 42.5]})
    table = reports.seed_table(records)
    assert "| dense | 20.00 |" in table
    assert "| Wanda 50% | 46.00 ± 1.00 (3) |" in table
    assert "| SparseGPT 50% | 42.25 ± 0.35 (2) |" in table
    assert "| SparseGPT 2:4 | pending |" in table


def test_seed_comparisons_judge_a_gap_against_the_summed_deviations_and_wait_for_two_seeds():
    records = _seed_records({("magnitude", "50%"): 400.0, ("wanda", "50%"): [45.0, 46.0, 47.0],
                             ("sparsegpt", "50%"): [42.0, 44.0, 46.0], ("wanda", "2:4"): [170.0],
                             ("sparsegpt", "2:4"): [84.0, 85.0]})
    found = {(c["pattern"], c["better"], c["worse"]): c for c in reports.seed_comparisons(records)}
    close = found["50%", "sparsegpt", "wanda"]
    assert close["gap"] == pytest.approx(2.0) and close["spread"] == pytest.approx(3.0) and close["exceeds"] is False
    assert found["50%", "wanda", "magnitude"]["exceeds"] is True  # magnitude has no calibration: spread 1
    assert found["2:4", "sparsegpt", "wanda"]["exceeds"] is None  # Wanda 2:4 has one seed so far


def test_seed_verdict_states_the_gap_against_the_summed_deviations_in_both_directions():
    records = _seed_records({("wanda", "50%"): [45.0, 46.0, 47.0], ("sparsegpt", "50%"): [42.0, 44.0, 46.0],
                             ("wanda", "2:4"): [170.0, 171.0, 172.0], ("sparsegpt", "2:4"): [84.0, 85.0, 86.0]})
    model = next(iter(records)).model
    # 50%: means 46 and 44, deviations 1 and 2: a gap of 2 within a spread of 3
    within = reports.seed_verdict(records, model, "50%")
    assert (within["better"], within["worse"], within["exceeds"]) == ("sparsegpt", "wanda", False)
    assert within["means"] == {"wanda": (46.0, 1.0), "sparsegpt": (44.0, 2.0)} and within["seeds"] == 3
    assert within["text"] == "SparseGPT is lower than Wanda by 2.00, within the summed seed deviations (3.00)"
    # 2:4: means 171 and 85, deviations 1 and 1: a gap of 86 beyond a spread of 2
    beyond = reports.seed_verdict(records, model, "2:4", methods=("sparsegpt", "wanda"))  # the order does not matter
    assert beyond["exceeds"] is True and beyond["means"]["sparsegpt"] == (85.0, 1.0)
    assert beyond["text"] == "SparseGPT is lower than Wanda by 86.00, more than the summed seed deviations (2.00)"


def test_seed_verdict_waits_for_runs_and_for_a_second_seed():
    records = _seed_records({("wanda", "50%"): [45.0], ("sparsegpt", "50%"): [42.0, 43.0], ("wanda", "2:4"): [170.0]})
    model = next(iter(records)).model
    one_seed = reports.seed_verdict(records, model, "50%")
    assert one_seed["exceeds"] is None
    assert one_seed["counts"] == {"wanda": 1, "sparsegpt": 2}
    assert one_seed["text"] == ("SparseGPT is lower than Wanda by 2.50, with one seed of Wanda stored so far: "
                                "no spread to judge it by yet")
    assert reports.seed_verdict(records, model, "2:4") is None  # SparseGPT 2:4 is still to compute
    records = _seed_records({("wanda", "2:4"): [170.0], ("sparsegpt", "2:4"): [84.0]})
    assert reports.seed_verdict(records, model, "2:4")["text"] == (
        "SparseGPT is lower than Wanda by 86.00, with one seed each of SparseGPT and Wanda stored so far: "
        "no spread to judge it by yet")
    assert reports.seed_verdict(records, "another-model", "50%") is None


def test_provenance_flattens_a_record_and_names_what_it_lacks():
    record = {"model": {"name": "smollm2-135m", "gguf_file": "m.gguf", "gguf_sha256": "ab" * 32},
              "calibration": {"path": "c4/c4.json.gz", "sha256": "cd" * 32, "nsamples": 64, "seqlen": 1024, "seed": 0},
              "eval_data": {"path": "wikitext-2-raw/wiki.test.raw", "sha256": "ef" * 32, "split": "test", "tokens": 9},
              "eval": {"windows": 16, "seqlen": 2048},
              "versions": {"python": "3.11", "torch": "2.0", "prunelib": "0.1.0", "numpy": "2.4"}}
    found = reports.provenance(record)
    assert found["model_file"] == "m.gguf" and found["model_sha"] == "ab" * 32
    assert (found["calib_file"], found["nsamples"], found["calib_seqlen"], found["seed"]) == (
        "c4/c4.json.gz", 64, 1024, 0)
    assert (found["eval_file"], found["eval_split"], found["windows"], found["eval_seqlen"]) == (
        "wikitext-2-raw/wiki.test.raw", "test", 16, 2048)
    assert found["versions"] == "python 3.11, torch 2.0, prunelib 0.1.0"
    cli = reports.provenance({"eval": {"path": "wikitext-2-raw/wiki.test.raw", "sha256": "ef" * 32, "windows": 2,
                                       "seqlen": 256}})  # as `prunelib pipeline --json` writes it
    assert (cli["eval_file"], cli["eval_sha"], cli["windows"], cli["eval_seqlen"]) == (
        "wikitext-2-raw/wiki.test.raw", "ef" * 32, 2, 256)
    bare = reports.provenance({"model": {"name": "gpt2", "source": "hub: gpt2"}})
    assert bare["model_file"] == "hub: gpt2" and bare["model_sha"] == "none (not a GGUF file)"
    assert bare["calib_file"] == bare["windows"] == bare["versions"] == reports.NOT_RECORDED


def _power_records(dense, wanda, sparsegpt, n=100):
    """The ci sweep's zero-shot runs with every task at the given accuracy (chance from the task)."""
    chance = {"arc_easy": 0.25, "arc_challenge": 0.25, "hellaswag": 0.25, "winogrande": 0.5, "piqa": 0.5,
              "boolq": 0.5, "rte": 0.5, "openbookqa": 0.25}
    records = {}
    for spec in suites.sweep_suite("ci"):
        if not spec.zero_shot:
            continue
        p = {"dense": dense, "wanda": wanda, "sparsegpt": sparsegpt}.get(spec.method)
        if p is None or spec.nm:
            records[spec] = None
            continue
        tasks = {t: {"acc": p[t], "acc_norm": p[t], "acc_stderr": math.sqrt(p[t] * (1 - p[t]) / n),
                     "acc_norm_stderr": math.sqrt(p[t] * (1 - p[t]) / n), "n": n, "chance": chance[t]}
                 for t in ZERO_SHOT_TASKS}
        records[spec] = {"ppl": {"dense": 20, "wanda": 45, "sparsegpt": 42}[spec.method],
                         "zero_shot": {"tasks": tasks, "limit": n}}
    return records


def test_zero_shot_power_keeps_tasks_above_chance_and_sizes_the_sample():
    from prunelib.eval.zero_shot import documents
    from prunelib.report.statistics import documents_needed, documents_needed_mean

    dense = {t: 0.25 for t in ZERO_SHOT_TASKS} | {"arc_easy": 0.60, "piqa": 0.70}
    wanda = {t: 0.25 for t in ZERO_SHOT_TASKS} | {"arc_easy": 0.50, "piqa": 0.68}
    found = reports.zero_shot_power(_power_records(dense, wanda, wanda), against=("wanda-50",))
    # above chance: 0.60 - 1.96 * 0.049 > 0.25 and 0.70 - 1.96 * 0.046 > 0.5; the tasks at 0.25 are not
    assert found["kept"] == ["arc_easy", "piqa"]
    arc = found["tasks"]["arc_easy"]["against"]["wanda-50"]
    half = 1.96 * math.sqrt((0.6 * 0.4 + 0.5 * 0.5) / 100)
    assert (arc["low"], arc["high"]) == pytest.approx((0.1 - half, 0.1 + half), abs=1e-4)
    assert not arc["separated"] and arc["needed"] == documents_needed(0.6, 0.5)
    assert found["tasks"]["arc_easy"]["available"] == documents("arc_easy")
    mean = found["mean"]["wanda-50"]
    assert mean["gap"] == pytest.approx(0.06) and mean["needed"] == documents_needed_mean([(0.6, 0.5), (0.7, 0.68)])
    assert reports.zero_shot_power(_power_records(dense, wanda, None), against=("sparsegpt-50",)) == {}


def test_documents_needed_for_a_mean_is_fewer_than_for_its_noisiest_task():
    from prunelib.report.statistics import documents_needed, documents_needed_mean

    pairs = [(0.6, 0.5), (0.7, 0.6), (0.45, 0.35)]
    assert documents_needed_mean(pairs) < min(documents_needed(p, q) for p, q in pairs)
    assert documents_needed_mean([(0.6, 0.5)]) == documents_needed(0.6, 0.5)


def _two_model_records(values):
    """The ci core suite on two models; ``values[model][(method, column)]`` as in :func:`_seed_records`."""
    records = {}
    for model in values:
        for spec in suites.core_suite("ci", model=model):
            found = values[model].get((spec.method, reports.column(spec)))
            if isinstance(found, list):
                found = found[spec.seed] if spec.seed < len(found) else None
            records[spec] = None if found is None else {"ppl": found}
    return records


def test_transfer_findings_compare_mean_ratios_per_model_and_flag_a_reversal():
    records = _two_model_records({
        "smollm2-135m": {("magnitude", "50%"): 400.0, ("wanda", "50%"): [45.0, 46.0, 47.0],
                         ("sparsegpt", "50%"): [42.0, 42.0, 42.0], ("wanda", "2:4"): [170.0],
                         ("sparsegpt", "2:4"): [84.0, 86.0]},
        "gemma3-270m": {("magnitude", "50%"): 12000.0, ("wanda", "50%"): [60.0, 61.0],
                        ("sparsegpt", "50%"): [62.0, 66.0]},
    })
    rows = {row["claim"]: row for row in reports.transfer_findings(records)}
    fifty = rows["SparseGPT beats Wanda at 50%"]
    small, gemma = fifty["models"]["smollm2-135m"], fifty["models"]["gemma3-270m"]
    assert small["ratio"] == pytest.approx(46.0 / 42.0) and small["holds"] and small["exceeds"] is True
    # Gemma: Wanda 60.5 ± 0.71 against SparseGPT 64 ± 2.83: reversed, and the gap 3.5 is within 3.54
    assert gemma["ratio"] == pytest.approx(60.5 / 64.0) and not gemma["holds"] and gemma["exceeds"] is False
    assert fifty["transfers"] is False
    assert rows["Wanda beats magnitude at 50%"]["transfers"] is True
    two_four = rows["SparseGPT beats Wanda at 2:4"]
    assert two_four["models"]["smollm2-135m"]["exceeds"] is None  # Wanda 2:4: one seed, no spread yet
    assert two_four["models"]["gemma3-270m"] is None and two_four["transfers"] is None  # Gemma pending
    table = reports.transfer_table(records).splitlines()
    assert table[0] == "| finding | smollm2-135m: ratio | gemma3-270m: ratio | holds on all |"
    assert "| SparseGPT beats Wanda at 50% | 1.10 (beyond spread) | 0.95 (within spread) | **no** |" in table
    assert "| SparseGPT beats Wanda at 2:4 | 2.00 (one seed) | pending | pending |" in table


def test_plot_tradeoff_marks_the_pareto_front():
    import matplotlib

    matplotlib.use("Agg")
    points = {"dense": (270.0, 20.0), "INT8": (140.0, 20.5), "INT4": (80.0, 30.0), "bad": (150.0, 40.0)}
    ax, front = reports.plot_tradeoff(points, xlabel="MB")
    assert front == ["dense", "INT8", "INT4"]  # "bad" is larger and worse than INT8
    assert ax.get_yscale() == "log" and len(ax.texts) == 4
    _, front = reports.plot_tradeoff({**points, "INT8 again": (140.5, 20.6)}, xlabel="MB")
    labels = [text.get_text() for text in matplotlib.pyplot.gca().texts]
    assert "INT8 / INT8 again" in labels and len(labels) == 4  # within 1%: one label for both
    assert front == ["dense", "INT8", "INT4"]


def test_correlation_text_states_the_interval_or_why_there_is_none():
    from prunelib.report.statistics import spearman

    assert reports.correlation_text(None).startswith("not measurable")
    assert reports.correlation_text(spearman([1, 2, 3, 4], [4, 3, 2, 1])) == \
        "-1.00 over 4 runs (a perfect order, so no Fisher interval; exact p = 0.083)"
    text = reports.correlation_text(spearman([1, 2, 3, 4, 5, 6, 7, 8, 9], [2, 1, 4, 3, 6, 5, 8, 7, 9]))
    assert text.startswith("0.93 over 9 runs (95% interval") and "exact p" not in text


def _sweep_records(model, ppl, skip=()):
    """Unstructured runs of every method on ``model`` up to 70%, perplexity ``ppl(method, s)``
    (None: pending), dense 20; the (method, sparsity) pairs in ``skip`` pending too."""
    found = {Run(model=model): {"ppl": 20.0, "sparsity": 0.0}}
    for method in ("magnitude", "wanda", "sparsegpt"):
        for s in suites.TRANSFER_SPARSITIES:
            spec = Run(model=model, method=method, sparsity=s)
            found[spec] = None if (method, s) in skip else {"ppl": ppl(method, s), "sparsity": s}
    return found


def _hyperbolic(method, s):
    """20 / (1 - s)^k, k = 3 (magnitude), 1.2 (Wanda) or 1 (SparseGPT): every finding holds."""
    return 20.0 / (1 - s) ** {"magnitude": 3.0, "wanda": 1.2, "sparsegpt": 1.0}[method]


def test_reach_is_the_last_sparsity_before_the_first_run_above_the_line():
    records = _sweep_records("m", _hyperbolic)
    # SparseGPT: 20 / (1 - s) <= 2 * 20 exactly up to s = 0.5, above from 0.6
    assert reports.reach(records, "sparsegpt", 2.0) == 50
    # 1.1 x dense: 1 / (1 - 0.1) = 1.11 > 1.1 already at 10%
    assert reports.reach(records, "sparsegpt", 1.1) == 0
    assert reports.reach(records, "sparsegpt", 1e9) == 70  # never above: the highest swept sparsity
    # a pending run below the crossing leaves the answer open; one above it does not matter
    assert reports.reach(_sweep_records("m", _hyperbolic, skip={("sparsegpt", 0.3)}), "sparsegpt", 2.0) is None
    assert reports.reach(_sweep_records("m", _hyperbolic, skip={("sparsegpt", 0.7)}), "sparsegpt", 2.0) == 50
    assert reports.reach({spec: None for spec in records}, "sparsegpt", 2.0) is None  # dense pending


def test_sweep_findings_hold_reverse_or_wait_per_model():
    def reversed_lead(method, s):  # Wanda's ratio to SparseGPT shrinks with sparsity on this model
        return _hyperbolic("sparsegpt", s) * (1.5 - s) if method == "wanda" else _hyperbolic(method, s)

    records = {**_sweep_records("a", _hyperbolic), **_sweep_records("b", reversed_lead),
               **_sweep_records("c", _hyperbolic, skip={("magnitude", 0.4)})}
    rows = {row["claim"]: row for row in reports.sweep_findings(records)}
    lead = rows["SparseGPT's lead over Wanda (their ratio) grows from 50% to 60% to 70%"]
    assert lead["models"]["a"]["holds"] and not lead["models"]["b"]["holds"] and lead["transfers"] is False
    assert lead["models"]["b"]["detail"] == "1.00 → 0.90 → 0.80"
    worst = rows["Magnitude is the worst method at every sparsity from 30% to 70%"]
    assert worst["models"]["a"]["holds"] and worst["models"]["c"] is None and worst["transfers"] is None
    # 1.1 x dense: magnitude 1/(0.9^3) = 1.37 above at 10% (reach 0); Wanda, SparseGPT reach 0 too: not lower
    assert rows["Within 10% of dense, magnitude reaches a lower sparsity than Wanda and SparseGPT"]["models"]["a"] == {
        "holds": False, "detail": "0% / 0% / 0%"}
    table = reports.sweep_findings_table(records).splitlines()
    assert table[0] == "| finding | a | b | c | holds on all |"
    assert any(line.startswith("| Magnitude is the worst") and line.endswith("| pending | pending |") for line in table)


def test_relative_sweep_divides_each_model_by_its_own_dense_run():
    import matplotlib

    matplotlib.use("Agg")
    doubled = {spec: None if r is None else {**r, "ppl": 2 * r["ppl"]} for spec, r in _sweep_records("b", _hyperbolic).items()}
    ax = reports.plot_relative_sweep({**_sweep_records("a", _hyperbolic), **doubled})
    curves = [line for line in ax.get_lines() if line.get_label().startswith("SparseGPT")]
    assert [line.get_linestyle() for line in curves] == ["-", "--"]
    assert list(curves[0].get_ydata()) == list(curves[1].get_ydata())  # twice the perplexity, twice the dense
    assert curves[0].get_ydata()[-1] == pytest.approx(1 / 0.3)


def test_ppl_at_reads_a_grid_cell_by_pattern_or_percentage_and_none_while_pending(records):
    grid = reports.sweep_grid(records)
    assert reports.ppl_at(grid, "wanda", 50) == reports.ppl_at(grid, "wanda", "50%") == pytest.approx(40.0)
    assert reports.ppl_at(grid, "dense", "dense") == 20.0
    assert reports.ppl_at(grid, "magnitude", 50) is None  # pending
    assert reports.ppl_at(grid, "wanda", "2:4") is None  # pending N:M run
    assert reports.ppl_at(grid, "owl", 50) is None  # not in the grid at all


def test_ratio_by_sparsity_divides_stored_pairs_in_increasing_sparsity():
    records = _sweep_records("m", _hyperbolic, skip={("sparsegpt", 0.3)})
    found = reports.ratio_by_sparsity(records, "wanda", "sparsegpt")
    assert 30 not in found and list(found) == sorted(found)  # a pending run leaves its sparsity out
    # (1 - s)^-1.2 / (1 - s)^-1 = (1 - s)^-0.2
    for percent, ratio in found.items():
        assert ratio == pytest.approx((1 - percent / 100) ** -0.2)
    assert reports.ratio_by_sparsity(records, "owl", "wanda") == {}
