"""The core suites of issue 16: seeds on two models, and the zero-shot design that follows from the pilot."""

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


def test_seeds_suite_repeats_only_calibrated_runs_on_both_models():
    suite = suites.seeds_suite("cpu")
    assert len(suite) == len(set(suite)) == 2 * (3 + 4 * len(suites.SEEDS))
    assert {s.model for s in suite} == {"smollm2-135m", suites.TRANSFER["smollm2-135m"]}
    for spec in suite:
        assert ("seed" in spec.definition()) == spec.uses_calibration
        assert spec.zero_shot == () and spec.nsamples == 64 and spec.max_windows == 16
    first = suite[: len(suite) // 2]
    assert [s.seed for s in first if s.uses_calibration] == [s for s in suites.SEEDS for _ in range(4)]
    assert {s.model for s in suites.seeds_suite("ci")} == {"smollm2-135m"}


def test_transfer_suite_is_the_sweep_up_to_70_percent_on_the_second_model_sharing_the_seed_runs():
    suite = suites.transfer_suite("cpu")
    second = suites.TRANSFER["smollm2-135m"]
    assert {s.model for s in suite} == {second} and len(suite) == len(set(suite))
    # sparsity by sparsity, so that a partial suite settles the low-sparsity findings first
    assert [(s.method, s.sparsity) for s in suite[1:]] == [(m, s) for s in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
                                                          for m in suites.METHODS]
    shared = set(suite) & set(suites.core_suite("cpu", model=second, seeds=(0,)))
    assert {(s.method, s.sparsity) for s in shared} == {("dense", 0.0), *((m, 0.5) for m in suites.METHODS)}
    assert suites.transfer_suite("ci") == []
