"""Chapter 9's findings per model: the quantities they rest on, and when they hold, fail or wait."""

import pytest

from prunelib.report import layerwise
from prunelib.report.runs import findings_table


def _sensitivity(values):
    return {"increase": {str(b): v for b, v in enumerate(values)}, "block_parameters": [100] * len(values)}


def _runs(owl_ppl, inverse_ppl, uniform=40.0):
    """Allocation runs of both methods at 50% and 70%: uniform ``uniform``, the rules as given."""
    found = {}
    for method in ("wanda", "sparsegpt"):
        for target in (0.5, 0.7):
            found[method, target, None] = {"ppl": uniform}
            found[method, target, "owl"] = None if owl_ppl is None else {"ppl": owl_ppl[method, target]}
            found[method, target, "inverse-sensitivity"] = {"ppl": inverse_ppl[method, target]}
    return found


WANDA = [9.0, 1.0, 2.0, 3.0, 4.0, 8.0]
OWL_MIXED = {("wanda", 0.5): 39.0, ("wanda", 0.7): 30.0, ("sparsegpt", 0.5): 41.0, ("sparsegpt", 0.7): 35.0}
INVERSE_MIXED = {("wanda", 0.5): 44.0, ("wanda", 0.7): 20.0, ("sparsegpt", 0.5): 42.0, ("sparsegpt", 0.7): 48.0}


def test_facts_are_the_closed_forms_of_the_stored_results():
    facts = layerwise.layerwise_facts({"wanda": _sensitivity(WANDA), "sparsegpt": _sensitivity([2 * v for v in WANDA])},
                                      {"ratios": [0.1 * b for b in range(6)]}, _runs(OWL_MIXED, INVERSE_MIXED))
    assert facts["blocks"] == 6
    assert facts["top_wanda"] == [0, 5, 4]
    assert facts["max_over_median_wanda"] == pytest.approx(9.0 / 3.5)  # median of six: (3 + 4) / 2
    assert facts["methods_rank"]["rho"] == pytest.approx(1.0)  # the same order, doubled
    assert facts["outliers_depth"]["rho"] == pytest.approx(1.0)
    # ranks of WANDA are 6 1 2 3 4 5 against 1 .. 6: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 30 / 210
    assert facts["outliers_wanda"]["rho"] == pytest.approx(1 - 6 * 30 / 210)
    assert sorted(facts["owl"]) == sorted([("wanda", 0.5, -0.025), ("wanda", 0.7, -0.25), ("sparsegpt", 0.5, 0.025),
                                           ("sparsegpt", 0.7, -0.125)])


def test_findings_hold_fail_or_wait_per_model():
    holds = layerwise.layerwise_facts({"wanda": _sensitivity(WANDA), "sparsegpt": _sensitivity(WANDA)},
                                      {"ratios": [0.1 * b for b in range(6)]}, _runs(OWL_MIXED, INVERSE_MIXED))
    falls = layerwise.layerwise_facts({"wanda": _sensitivity(sorted(WANDA)), "sparsegpt": _sensitivity(WANDA)},
                                      {"ratios": [0.1 * (6 - b) for b in range(6)]}, _runs(None, INVERSE_MIXED))
    waits = layerwise.layerwise_facts({"wanda": _sensitivity(WANDA), "sparsegpt": None}, None, {})
    rows = {row["claim"]: row for row in layerwise.layerwise_findings({"a": holds, "b": falls, "c": waits})}
    first = rows["The first block is among the three most sensitive, for Wanda and SparseGPT"]["models"]
    assert first["a"]["holds"] and not first["b"]["holds"] and first["c"] is None  # b: block 0 is Wanda's least sensitive
    depth = rows["The outlier ratio rises with depth"]
    assert depth["models"]["a"]["holds"] and not depth["models"]["b"]["holds"]
    assert depth["models"]["c"] is None and depth["transfers"] is None  # c's outlier ratios still to compute
    assert all(row["transfers"] is False for row in layerwise.layerwise_findings({"a": holds, "b": falls})
               if row["claim"] == "The outlier ratio rises with depth")
    owl = rows["OWL beats uniform sparsity in most settings"]["models"]
    assert owl["a"] == {"holds": True, "detail": "3 of 4"} and owl["b"] is None  # b: OWL runs pending
    inverse = rows["Inverse-sensitivity beats uniform at the highest target, for both methods"]["models"]["a"]
    assert inverse == {"holds": False, "detail": "Wanda -50.0%, SparseGPT +20.0%"}
    table = findings_table(layerwise.layerwise_findings({"a": holds, "c": waits})).splitlines()
    assert table[0] == "| finding | a | c | holds on all |" and len(table) == 2 + len(layerwise.LAYERWISE_FINDINGS)


def test_findings_text_counts_what_holds_fails_and_waits():
    from prunelib.report.runs import findings_text

    def row(claim, a, b):
        entries = {"a": a, "b": b}
        seen = [e["holds"] for e in entries.values() if e is not None]
        return {"claim": claim, "models": entries, "transfers": None if len(seen) < 2 else all(seen)}

    yes, no = {"holds": True, "detail": ""}, {"holds": False, "detail": ""}
    rows = [row("One", yes, yes), row("Two", yes, no), row("Three", yes, None)]
    assert findings_text(rows) == "1 of the 3 findings holds on both models; not on both: two; 1 waits for results still to compute"
    assert findings_text(rows[:1]) == "1 of the 1 findings holds on both models"
    named = [row("Wanda beats it", yes, no), row("OWL beats it", no, yes), row("SparseGPT's lead grows", no, no)]
    assert findings_text(named).endswith(": Wanda beats it; OWL beats it; SparseGPT's lead grows")  # names keep capitals


def test_stored_inputs_read_nothing_from_an_empty_results_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELIB_RESULTS_DIR", str(tmp_path))
    sensitivities, outliers, runs = layerwise.stored_inputs("cpu", "gemma3-270m")
    assert sensitivities == {"wanda": None, "sparsegpt": None} and outliers is None and runs == {}
    facts = layerwise.layerwise_facts(sensitivities, outliers, runs)
    assert facts["blocks"] is None and all(check(facts) is None for _, check in layerwise.LAYERWISE_FINDINGS)
    assert not list(tmp_path.iterdir())  # read only: nothing computed, nothing written


def test_a_finding_at_the_highest_target_waits_only_for_that_target():
    runs = _runs(OWL_MIXED, INVERSE_MIXED)
    for method in ("wanda", "sparsegpt"):
        runs[method, 0.5, "inverse-sensitivity"] = None  # the lower target still to compute
    runs["sparsegpt", 0.7, "owl"] = None
    facts = layerwise.layerwise_facts({}, None, runs)
    assert facts["inverse"] is None and facts["owl"] is None  # not every run of either rule is stored
    assert sorted(facts["inverse_highest"]) == sorted([("wanda", 0.7, -0.5), ("sparsegpt", 0.7, 0.2)])
    assert facts["owl_highest"] is None  # SparseGPT's OWL run at 70% is pending
    rows = {row["claim"]: row["models"]["a"] for row in layerwise.layerwise_findings({"a": facts})}
    assert rows["Inverse-sensitivity beats uniform at the highest target, for both methods"]["holds"] is False
    assert rows["OWL beats uniform sparsity in most settings"] is None
    runs["sparsegpt", 0.7, "inverse-sensitivity"] = {"ppl": 39.0}  # now both methods beat uniform at 70%
    found = layerwise.layerwise_findings({"a": layerwise.layerwise_facts({}, None, runs)})
    assert next(r for r in found if r["claim"].startswith("Inverse"))["models"]["a"]["holds"] is True


def test_allocation_table_names_the_lowest_rule_only_once_a_row_is_complete():
    def record(ppl, sparsity):
        return {"ppl": ppl, "prune": {"sparsity": sparsity}}

    runs = {("wanda", 0.5, None): record(45.0, 0.5), ("wanda", 0.5, "inverse-sensitivity"): record(46.0, 0.4993),
            ("wanda", 0.5, "owl"): record(44.5, 0.4992),
            ("sparsegpt", 0.7, None): record(300.0, 0.7), ("sparsegpt", 0.7, "inverse-sensitivity"): None,
            ("sparsegpt", 0.7, "owl"): record(301.0, 0.7)}
    assert layerwise.settings(runs) == [("wanda", 0.5), ("sparsegpt", 0.7)]
    assert layerwise.lowest_rule(runs, "wanda", 0.5) == "OWL"
    assert layerwise.lowest_rule(runs, "sparsegpt", 0.7) is None  # one rule pending: no verdict yet
    runs["sparsegpt", 0.7, "inverse-sensitivity"] = record(310.0, 0.7)
    assert layerwise.lowest_rule(runs, "sparsegpt", 0.7) == "uniform"  # uniform wins: a name, not None
    runs["sparsegpt", 0.7, "inverse-sensitivity"] = None
    table = layerwise.allocation_table(runs, dense=record(20.71, 0.0003)).splitlines()
    assert table[0] == "| method | target | uniform | inverse-sensitivity | OWL | lowest perplexity |"
    assert table[2] == "| dense | 0% | 20.71 (0.0003) | | | |"
    assert table[3] == "| Wanda | 50% | 45.00 (0.5000) | 46.00 (0.4993) | 44.50 (0.4992) | OWL |"
    assert table[4] == "| SparseGPT | 70% | 300.00 (0.7000) | pending | 301.00 (0.7000) | pending |"
    assert len(layerwise.allocation_table(runs).splitlines()) == 2 + 2  # no dense row when none is given
