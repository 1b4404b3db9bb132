"""The zero-shot suite's design follows from the committed 100-document pilot (the sweep's runs)."""

from prunelib.eval.zero_shot import documents
from prunelib.experiments import suites
from prunelib.experiments.runs import profile_root
from prunelib.report import runs as reports


def test_kept_tasks_and_document_count_are_what_the_pilot_calls_for():
    pilot = reports.lookup(suites.sweep_suite("cpu"), profile_root("cpu"))
    power = reports.zero_shot_power(pilot)
    assert power, "the pilot's dense and 50% zero-shot records must be committed"
    assert power["kept"] == list(suites.ZERO_SHOT_KEPT)
    needed = [entry["needed"] for entry in power["mean"].values()]
    assert all(n is not None and n <= suites.ZERO_SHOT_DOCUMENTS for n in needed)
    assert suites.ZERO_SHOT_DOCUMENTS <= min(documents(t) for t in suites.ZERO_SHOT_KEPT)


def test_zero_shot_suite_scores_the_core_runs_on_the_kept_tasks():
    suite = suites.zero_shot_suite("cpu")
    assert [(s.method, s.nm, s.sparsity) for s in suite] == [(s.method, s.nm, s.sparsity)
                                                             for s in suites.core_suite("cpu", seeds=(0,))]
    assert all(s.zero_shot == suites.ZERO_SHOT_KEPT and s.zero_shot_limit == suites.ZERO_SHOT_DOCUMENTS
               for s in suite)
    assert all(s.zero_shot_limit == 4 for s in suites.zero_shot_suite("ci"))
