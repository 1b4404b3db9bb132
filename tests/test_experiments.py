"""Cached experiment runs: the same definition reuses its file, any change recomputes."""

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest
import torch

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
    runs = dict.fromkeys(spec for name in ("sweep", "seeds", "zero-shot", "quantization")
                         for spec in suites.SUITES[name]("ci"))  # allocation waits for its inputs
    assert "listed once" in lines[5] and len(lines) == 6 + len(runs)
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
    uniform = [spec for spec in suite if spec.label is None]
    assert all(not spec.zero_shot and spec.zero_shot_limit is None for spec in suite)  # perplexity only
    sweep = {dataclasses.replace(spec, zero_shot=(), zero_shot_limit=None) for spec in suites.sweep_suite("ci")}
    assert all(spec in sweep for spec in uniform)  # the sweep's runs, which share their results
    core = set(suites.core_suite("ci", seeds=(0,)))
    assert {spec for spec in uniform if spec.sparsity == 0.5} <= core  # at 50%: the core table's seed-0 runs


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


# ---- a cache that cannot lie: code hashes, stale records, exclusive claims, the results root ----


def _record_as_if_made_by(spec: Run, root, code):
    record = json.loads(spec.path(root).read_text())
    if code is None:
        record.pop("code")  # written before code hashes existed
    else:
        record["code"] = code
    spec.path(root).write_text(json.dumps(record))


@pytest.mark.parametrize("older", ["0123456789ab", None])
def test_a_record_computed_by_other_code_is_stale_recomputed_and_read_as_stale(tmp_path, counted, older):
    spec = Run(method="wanda", sparsity=0.5)
    runs.run(spec, root=tmp_path)
    assert json.loads(spec.path(tmp_path).read_text())["code"] == spec.code
    _record_as_if_made_by(spec, tmp_path, older)
    read = runs.stored(spec, root=tmp_path)  # reading never computes, and says what it read
    assert read["stale"] and read["ppl"] == 1.0 and len(counted) == 1
    assert cache.state(spec.path(tmp_path), spec.definition(), spec.code) == "stale"
    fresh = runs.run(spec, root=tmp_path)
    assert not fresh["cached"] and "stale" not in fresh and fresh["ppl"] == 2.0 and len(counted) == 2
    assert "stale" not in runs.stored(spec, root=tmp_path)


def test_listing_marks_stale_runs(tmp_path, monkeypatch, capsys, counted):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    spec = suites.sweep_suite("ci")[3]
    runs.run(spec, root=runs.profile_root("ci"))
    _record_as_if_made_by(spec, runs.profile_root("ci"), "0123456789ab")
    assert main(["experiments", "--profile", "ci", "--suite", "sweep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines].count("stale") == 1 and lines[3].startswith("stale")
    assert lines[3].endswith(spec.path(runs.profile_root("ci")).name)


def test_the_code_hash_follows_code_not_its_documentation(tmp_path):
    from prunelib.experiments.code import _module_digest

    versions = {
        "base": '"""Module."""\n\ndef f(x):\n    """Add one."""\n    return x + 1\n',
        "documented": '"""Another text."""\n\n\ndef f(x):  # a comment\n    """Add 1 to x."""\n    return x + 1\n',
        "changed": '"""Module."""\n\ndef f(x):\n    """Add one."""\n    return x + 2\n',
    }
    digests = {}
    for name, text in versions.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        digests[name] = _module_digest(path, 0)
    assert digests["base"] == digests["documented"] != digests["changed"]


def test_a_changed_module_invalidates_exactly_the_runs_that_execute_it(monkeypatch):
    from prunelib.experiments import code

    specs = {"dense": Run(), "wanda": Run(method="wanda", sparsity=0.5), "sparsegpt": Run(method="sparsegpt", nm="2:4"),
             "wanda-int4": Run(method="wanda", sparsity=0.5, quantize="int4-g64"),
             "dense-zero-shot": Run(zero_shot=("piqa",))}
    before = {name: spec.code for name, spec in specs.items()}
    assert len(set(before.values())) == len(before)
    real = code._module_digest

    def edited(*parts):
        monkeypatch.setattr(code, "_module_digest", lambda path, mtime: real(path, mtime) + (
            "edited" if path.parts[-len(parts):] == parts else ""))
        return {name for name, spec in specs.items() if spec.code != before[name]}

    assert edited("core", "wanda.py") == {"wanda", "wanda-int4"}
    assert edited("core", "gptq.py") == {"wanda-int4"}
    assert edited("eval", "zero_shot.py") == {"dense-zero-shot"}
    assert edited("model", "walk.py") == set(specs)
    assert edited("report", "runs.py") == set()  # rendering never changes a result


def _hold_claim(path, start_at, spans):
    import os
    import time

    time.sleep(max(0.0, start_at - time.time()))
    try:
        with cache.claim(path):
            began = time.time()
            time.sleep(0.2)
            with open(spans, "a") as out:
                out.write(f"{os.getpid()} {began} {time.time()}\n")
    except cache.Busy:
        pass


def test_claims_never_overlap_even_when_a_dead_workers_lock_is_left(tmp_path):
    import multiprocessing
    import time

    path = tmp_path / "run.json"
    Path(f"{path}.lock").write_text(str(_dead_pid()))  # left by a crashed worker: free to take, once
    spans = tmp_path / "spans.txt"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    workers = [context.Process(target=_hold_claim, args=(path, start_at + 0.05 * (i % 3), spans)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    held = sorted(tuple(map(float, line.split()[1:])) for line in spans.read_text().splitlines())
    assert held and all(end <= next_start for (_, end), (next_start, _) in zip(held, held[1:]))
    assert not Path(f"{path}.lock").exists()


def _compute_once(path, definition, start_at, computed):
    import time

    time.sleep(max(0.0, start_at - time.time()))

    def compute():
        with open(computed, "a") as out:
            out.write("computed\n")
        time.sleep(0.3)
        return {"run": definition, "ppl": 3.0}

    try:
        cache.cached(path, definition, "c0de", compute)
    except cache.Busy:
        pass


def test_concurrent_workers_compute_a_result_once(tmp_path):
    import multiprocessing
    import time

    definition = {"method": "wanda"}
    path, computed = tmp_path / "run.json", tmp_path / "computed.txt"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    workers = [context.Process(target=_compute_once, args=(path, definition, start_at + 0.2 * i, computed))
               for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert computed.read_text().splitlines() == ["computed"]
    assert cache.read(path, definition, "c0de")["ppl"] == 3.0


def test_the_results_root_is_one_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    checkout = cache.results_root()
    assert checkout.parts[-2:] == ("results", "experiments") and (checkout.parent.parent / "pyproject.toml").exists()
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "elsewhere"))
    assert cache.results_root() == tmp_path / "elsewhere"
    assert Run().path().parent == tmp_path / "elsewhere"
    assert runs.profile_root("ci") == tmp_path / "elsewhere" / "ci"
    assert cache.results_root(tmp_path / "given") == tmp_path / "given"


@pytest.mark.slow
def test_ray_on_a_local_two_worker_cluster_writes_the_files_of_a_serial_run(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra prunelib[ray]")
    import torch

    specs = [Run.from_profile("ci"), Run.from_profile("ci", method="magnitude", sparsity=0.5),
             Run.from_profile("ci", method="wanda", nm="2:4")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task runs (one CPU per task)
    try:
        serial = executors.run_all(specs, root=tmp_path / "serial", quiet=True)
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        spread = executors.run_all(specs, root=tmp_path / "ray", executor="ray", quiet=True)
    finally:
        ray.shutdown()
    names = sorted(p.name for p in (tmp_path / "serial").glob("*.json"))
    assert names == sorted(p.name for p in (tmp_path / "ray").glob("*.json")) and len(names) == 3
    for one, other in zip(serial, spread):
        assert (one["name"], one["run"], one["code"]) == (other["name"], other["run"], other["code"])
        assert one["ppl"] == other["ppl"] and one["sparsity"] == other["sparsity"]
        assert other["threads"] == 1


def test_a_record_whose_data_file_changed_is_stale(tmp_path, counted):
    from prunelib import data

    local = data.local_file(data.C4_FILE)
    if local is None:
        pytest.skip("no local data directory")
    spec = Run(method="wanda", sparsity=0.5)
    runs.run(spec, root=tmp_path)
    record = json.loads(spec.path(tmp_path).read_text())
    for sha, stale in ((data.sha256(local), False), ("0" * 64, True)):
        record["calibration"] = {"path": data.C4_FILE, "sha256": sha}
        spec.path(tmp_path).write_text(json.dumps(record))
        read = runs.stored(spec, root=tmp_path)
        assert ("stale" in read) == stale
    assert "inputs changed since: calibration c4/" in read["stale"] and "code" not in read["stale"]


def test_listing_computes_nothing_even_when_the_allocation_inputs_are_stale(tmp_path, monkeypatch, capsys, counted):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    keyed = []  # (path, definition) of every measurement, as the measurement functions key them
    with monkeypatch.context() as patch:
        patch.setattr(measurements, "cached", lambda path, definition, *args, **options: keyed.append((path, definition)))
        suites.sensitivity_suite("ci", only_stored=True)
    blocks = 30
    for path, definition in keyed:  # stored by older code
        write_json(path, {"run": definition, "code": "0123456789ab", "ratios": [0.01 * (b % 7) for b in range(blocks)],
                          "increase": {str(b): 1.0 + (b % 5) for b in range(blocks)}, "block_parameters": [1000] * blocks})

    def no_model(*args, **kwargs):
        raise AssertionError("listing loaded a model")

    monkeypatch.setattr(runs._MODELS, "get", no_model)
    assert main(["experiments", "--profile", "ci", "--suite", "allocation", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 3 * 3 and not counted


def test_every_run_of_a_suite_is_computed_with_the_fixed_thread_count(tmp_path, monkeypatch):
    seen = []

    def fake_compute(spec, quiet=False):
        seen.append(torch.get_num_threads())
        return {"name": spec.name, "key": spec.key, "run": spec.definition(), "ppl": 1.0}

    monkeypatch.setattr(runs, "compute", fake_compute)
    before = torch.get_num_threads()
    other = executors.RUN_THREADS + 1
    torch.set_num_threads(other)  # a caller's own count must not leak into the runs
    try:
        executors.run_all([Run(method="wanda", sparsity=0.5), Run(method="wanda", sparsity=0.6)], root=tmp_path, quiet=True)
        assert seen == [executors.RUN_THREADS] * 2
        assert torch.get_num_threads() == other  # and is restored after them
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_run_threads_refuses_a_bad_count_before_changing_anything(threads):
    before = torch.get_num_threads()
    with pytest.raises(PrunelibError, match="threads"):
        with executors.run_threads(threads):
            pass
    assert torch.get_num_threads() == before


def test_run_threads_restores_the_count_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError):
        with executors.run_threads(1):
            assert torch.get_num_threads() == 1
            1 / 0
    assert torch.get_num_threads() == before


def test_a_sequential_prune_is_reproduced_bit_for_bit_at_a_fixed_thread_count():
    """The premise of the run cache: one definition and one thread count give one number. Two
    SparseGPT walks of the same model on the same calibration give identical weights."""
    from prunelib.model.prune import prune_model
    from tiny_models import tiny_model

    calibration = torch.randint(0, 100, (4, 32), generator=torch.Generator().manual_seed(0))
    weights = []
    for _ in range(2):
        model = tiny_model("llama", seed=3)
        with executors.run_threads():
            prune_model(model, calibration, method="sparsegpt", nm="2:4", quiet=True)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any((v == 0).float().mean() > 0.4 for v in weights[0].values())  # it did prune
