"""Cached experiment runs: the same definition reuses its file, any change recomputes."""

import contextlib
import dataclasses
import json

import pytest

from prunelib.cli import main
from prunelib.errors import PrunelibError
from prunelib.eval.zero_shot import ZERO_SHOT_TASKS
from prunelib.experiments import cache, executors, measurements, runs, suites
from prunelib.experiments.runs import Run
from prunelib.model.provenance import write_json


@pytest.fixture
def counted(monkeypatch):
    """Replace the expensive computation by a record of which runs were computed."""
    calls = []

    def fake_compute(spec, quiet=False):
        calls.append(spec)
        return {"name": spec.name, "key": spec.key, "run": spec.definition(), "ppl": float(len(calls))}

    monkeypatch.setattr(runs, "compute", fake_compute)
    return calls


def test_same_run_reuses_its_file(tmp_path, counted):
    spec = Run(method="wanda", sparsity=0.5)
    first = runs.run(spec, root=tmp_path)
    second = runs.run(Run(method="wanda", sparsity=0.5), root=tmp_path)
    assert len(counted) == 1 and not first["cached"] and second["cached"]
    assert second["ppl"] == first["ppl"]
    assert json.loads(spec.path(tmp_path).read_text())["run"] == spec.definition()


def _dead_pid() -> int:
    """The id of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_claimed_by_a_live_process_is_skipped_not_duplicated(tmp_path, counted):
    busy, free = Run(method="wanda", sparsity=0.5), Run(method="wanda", sparsity=0.6)
    lock = tmp_path / f"{busy.path(tmp_path).name}.lock"
    with cache.claim(busy.path(tmp_path)):  # held as a live worker holds it
        with pytest.raises(cache.Busy):
            runs.run(busy, root=tmp_path)
        records = executors.run_all([busy, free], root=tmp_path, quiet=True)
        assert [r["name"] for r in records] == [free.name] and counted == [free]
        assert lock.exists() and not busy.path(tmp_path).exists()


def test_a_stale_claim_is_taken_over_and_every_claim_is_released(tmp_path, counted):
    spec = Run(method="wanda", sparsity=0.5)
    lock = tmp_path / f"{spec.path(tmp_path).name}.lock"
    lock.write_text(str(_dead_pid()))
    assert not runs.run(spec, root=tmp_path)["cached"] and counted == [spec]
    assert not lock.exists()


def test_a_run_finished_by_another_worker_before_the_claim_is_read_not_recomputed(tmp_path, counted, monkeypatch):
    spec = Run(method="wanda", sparsity=0.5)
    real_claim = cache.claim

    @contextlib.contextmanager
    def claim_after_the_other_worker(path):
        write_json(path, {"run": spec.definition(), "code": spec.code, "ppl": 7.0})  # it finishes while we reach the claim
        with real_claim(path):
            yield

    monkeypatch.setattr(cache, "claim", claim_after_the_other_worker)
    record = runs.run(spec, root=tmp_path)
    assert record["cached"] and record["ppl"] == 7.0 and counted == []


def test_a_failed_run_releases_its_claim(tmp_path, monkeypatch):
    def failing(spec, quiet=False):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runs, "compute", failing)
    spec = Run(method="wanda", sparsity=0.5)
    with pytest.raises(RuntimeError):
        runs.run(spec, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change",
    [dict(sparsity=0.6), dict(seed=1), dict(nsamples=32), dict(max_windows=None), dict(version="9.9.9"),
     dict(nm="2:4"), dict(permute=True, nm="2:4"), dict(block_sparsity=(0.4, 0.6)), dict(group="matrix")],
)
def test_any_change_recomputes(tmp_path, counted, change):
    base = Run(method="wanda", sparsity=0.5)
    changed = dataclasses.replace(base, **change)
    runs.run(base, root=tmp_path)
    record = runs.run(changed, root=tmp_path)
    assert len(counted) == 2 and not record["cached"] and changed.key != base.key
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_quantization_fields_enter_the_key_only_when_set():
    plain = Run(method="wanda", sparsity=0.5)
    assert not {"quantize", "quant_method", "compact"} & set(plain.definition())
    stored16 = Run(method="wanda", sparsity=0.5, compact=True)
    assert stored16.definition()["compact"] and stored16.key != plain.key and stored16.name == "wanda-50-fp16"
    q = Run(method="wanda", nm="2:4", quantize="INT8")
    assert (q.quantize, q.quant_method, q.compact, q.name) == ("int8", "gptq", True, "wanda-2of4-int8-gptq")
    assert Run(quantize="int4-g64", quant_method="rtn").name == "dense-int4-g64-rtn"
    assert not Run(quantize="int4", quant_method="rtn").uses_calibration and Run(quantize="int4").uses_calibration
    for bad in (dict(quantize="int4", quant_method="awq"), dict(quant_method="rtn"),
                dict(method="wanda", quantize="int4", quant_method="joint")):
        with pytest.raises(PrunelibError):
            Run(**bad)
    suite = suites.quantization_suite("ci")
    assert len({s.key for s in suite}) == len(suite) and all(s.compact for s in suite)


def test_stored_never_computes(tmp_path, counted):
    spec = Run(method="wanda", sparsity=0.5)
    assert runs.stored(spec, root=tmp_path) is None and not counted
    runs.run(spec, root=tmp_path)
    assert runs.stored(spec, root=tmp_path)["ppl"] == 1.0 and len(counted) == 1
    absent = measurements.sensitivity_result("ci", method="wanda", root=tmp_path, only_stored=True)
    assert absent is None and measurements.outlier_result("ci", root=tmp_path, only_stored=True) is None


def test_calibration_fields_do_not_matter_without_calibration(tmp_path, counted):
    assert Run(method="magnitude", sparsity=0.5, seed=0).key == Run(method="magnitude", sparsity=0.5, seed=7).key
    assert Run(method="wanda", sparsity=0.5, seed=0).key != Run(method="wanda", sparsity=0.5, seed=7).key


def test_force_recomputes_and_a_foreign_file_is_refused(tmp_path, counted):
    spec = Run(method="sparsegpt", nm="2:4")
    runs.run(spec, root=tmp_path)
    assert not runs.run(spec, root=tmp_path, force=True)["cached"] and len(counted) == 2
    spec.path(tmp_path).write_text(json.dumps({"run": {"method": "other"}}))
    with pytest.raises(PrunelibError, match="different run"):
        runs.run(spec, root=tmp_path)


def test_names_and_validation():
    assert Run().name == "dense"
    assert Run(method="wanda", sparsity=0.7).name == "wanda-70"
    assert Run(method="sparsegpt", nm="4:8", permute=True).name == "sparsegpt-4of8-permuted"
    assert Run(method="wanda", block_sparsity=(0.5, 0.5), label="owl").name.endswith("-owl")
    with pytest.raises(PrunelibError):
        Run(method="obd")
    with pytest.raises(PrunelibError):
        Run(method="wanda", sparsity=1.2)
    with pytest.raises(PrunelibError):
        Run(method="wanda", zero_shot=("mmlu",))


def test_profile_protocol_and_the_sweep_suite():
    ci = Run.from_profile("ci", method="wanda", sparsity=0.5)
    assert (ci.nsamples, ci.calib_seqlen, ci.eval_seqlen, ci.max_windows) == (4, 128, 256, 2)
    suite = suites.sweep_suite("ci")
    assert len(suite) == 1 + 3 * (8 + 2) and len({s.key for s in suite}) == len(suite)
    assert {s.nm for s in suite} == {None, "2:4", "4:8"}
    accuracy = [s.name for s in suite if s.zero_shot]
    assert accuracy == ["dense", "magnitude-50", "magnitude-2of4", "wanda-50", "wanda-2of4", "sparsegpt-50",
                        "sparsegpt-2of4"]
    assert all(s.zero_shot == ZERO_SHOT_TASKS and s.zero_shot_limit == 4 for s in suite if s.zero_shot)


def test_list_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert main(["experiments", "--profile", "ci", "--suite", "sweep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 31 and all(line.startswith("missing") for line in lines)


def test_listing_everything_computes_nothing(tmp_path, monkeypatch, capsys, counted):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert main(["experiments", "--profile", "ci", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:5] == ["missing  sensitivity-wanda-block", "missing  sensitivity-sparsegpt-block",
                         "missing  sensitivity-wanda-type", "missing  sensitivity-wanda-linear", "missing  outliers"]
    assert "listed once" in lines[5] and len(lines) == 6 + 31 + len(suites.quantization_suite("ci"))
    assert not counted and not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_a_real_run_on_the_embedded_model(tmp_path):
    spec = Run(method="magnitude", sparsity=0.5, eval_seqlen=128, max_windows=1)
    record = runs.run(spec, root=tmp_path, quiet=True)
    assert record["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert record["eval"]["windows"] == 1 and record["ppl"] > 1
    for key in ("versions", "model", "eval_data", "finished"):
        assert key in record
    dense = runs.run(Run(eval_seqlen=128, max_windows=1), root=tmp_path, quiet=True)
    assert dense["ppl"] < record["ppl"]  # the cached model was restored to its dense weights


def test_allocation_suite_feeds_the_rules_and_hits_each_target(monkeypatch):
    from prunelib.core.allocate import weighted_mean

    blocks = 30
    weights = [1000 + 10 * b for b in range(blocks)]
    monkeypatch.setattr(suites, "outlier_result", lambda *a, **k: {"ratios": [0.01 * (b % 7) for b in range(blocks)]})
    monkeypatch.setattr(suites, "sensitivity_result", lambda *a, **k: {
        "increase": {str(b): 1.0 + (b % 5) for b in range(blocks)}, "block_parameters": weights})
    suite = suites.allocation_suite("ci")
    assert len(suite) == 2 * 3 * 3
    for spec in suite:
        if spec.block_sparsity is not None:
            assert len(spec.block_sparsity) == blocks
            assert weighted_mean(spec.block_sparsity, weights) == pytest.approx(spec.sparsity, abs=1e-9)
    assert {spec.label for spec in suite} == {None, "inverse-sensitivity", "owl"}
    sweep = set(suites.sweep_suite("ci"))
    assert all(spec in sweep for spec in suite if spec.label is None)  # uniform runs are the sweep's


@pytest.mark.slow
def test_a_quantized_compact_run_reloads_exactly_and_counts_its_bytes(tmp_path):
    spec = Run(method="magnitude", nm="2:4", quantize="int4-g64", quant_method="rtn", eval_seqlen=128, max_windows=1)
    record = runs.run(spec, root=tmp_path, quiet=True)
    storage = record["storage"]
    assert storage["round_trip_exact"] and storage["layout"] == "nm"
    assert storage["linear_bytes"] == storage["formula_linear_bytes"]
    assert storage["bits_per_linear_weight"] == pytest.approx(0.5 * 4 + 0.5 * 2 + 16 / 64)
    assert storage["file_bytes"] < storage["float16_dense_bytes"] / 2
    assert record["sparsity"] >= 0.5 and record["ppl"] > 1


@pytest.mark.slow
def test_sensitivity_and_outliers_are_cached_on_the_embedded_model(tmp_path):
    first = measurements.sensitivity_result("ci", method="magnitude", units="type", eval_seqlen=128, eval_windows=1,
                                           root=tmp_path, quiet=True)
    assert len(first["ppl"]) == 7 and not first["cached"]
    assert first["eval_data"]["split"] == "validation"  # never the test text the runs are scored on
    assert all(value > 0 for value in first["increase"].values())  # pruning any type to 50% hurts
    again = measurements.sensitivity_result("ci", method="magnitude", units="type", eval_seqlen=128, eval_windows=1,
                                           root=tmp_path, quiet=True)
    assert again["cached"] and again["ppl"] == first["ppl"]
    outliers = measurements.outlier_result("ci", root=tmp_path, quiet=True)
    assert len(outliers["ratios"]) == 30 and all(0 <= r < 1 for r in outliers["ratios"])
