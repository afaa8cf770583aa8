"""Chaos specs, schedules, corruptions, journals and reports: fast, no processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reliability import Pipeline, Retry, StepContext
from reliability.chaos.corruptions import corrupt
from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.chaos.faults import ExceptionFault, KillWorker, Latency, fires, resolve_after
from reliability.chaos.hook import ChaosHook
from reliability.chaos.journal import Journal, resilience_score
from reliability.chaos.report import render_report
from reliability.errors import BlastRadiusError, ConfigError

pipe = Pipeline("spec_t")


@pipe.step(retry=Retry(attempts=3, backoff=0), timeout=5)
def load() -> list[int]:
    return [1, 2]


@pipe.step
def use(load: list[int]) -> int:
    return sum(load)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


BASE = "title: t\nmethod:\n"


def test_unknown_fault_type_names_file_path_and_fix(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE + "  - {type: kill_workr, step: load}\n")
    with pytest.raises(ConfigError) as exc:
        load_experiment(p)
    assert exc.value.file == str(p)
    assert exc.value.key_path == "method[0].type"
    assert "kill_worker" in str(exc.value.fix)


def test_step_not_in_pipeline_is_a_config_error(tmp_path: Path) -> None:
    spec, file = load_experiment(_write(tmp_path, BASE + "  - {type: kill_worker, step: lod}\n"))
    with pytest.raises(ConfigError) as exc:
        check_experiment(spec, pipe, file=file)
    assert exc.value.key_path == "method[0].step"
    assert "load" in str(exc.value)


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    cases = {
        "  - {type: latency, step: load, seconds: -1}\n": "method[0].seconds",
        "  - {type: exception, step: load, error: SystemExit}\n": "method[0].error",
        "  - {type: network, proxy: p, toxic: latency, attributes: {rate: 1}}\n": "method[0]",
        "  - {type: kill_worker, step: load, after: 'soon'}\n": "method[0].after",
        "  - {type: kill_worker, step: load, colour: red}\n": "method[0].colour",
    }
    for body, path in cases.items():
        with pytest.raises(ConfigError) as exc:
            load_experiment(_write(tmp_path, BASE + body))
        assert exc.value.key_path.startswith(path), (body, str(exc.value))
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_experiment(_write(tmp_path, "title: [unclosed\n"))
    with pytest.raises(ConfigError, match="method"):
        load_experiment(_write(tmp_path, "title: no method\n"))


def test_hang_without_end_needs_a_timeout(tmp_path: Path) -> None:
    spec, file = load_experiment(_write(tmp_path, BASE + "  - {type: hang, step: use}\n"))
    with pytest.raises(ConfigError, match="never ends"):
        check_experiment(spec, pipe, file=file)


def test_blast_radius_refuses_loudly(tmp_path: Path) -> None:
    spec, file = load_experiment(_write(
        tmp_path, BASE + "  - {type: kill_worker, step: use}\nblast_radius: {steps: [load]}\n"))
    with pytest.raises(BlastRadiusError, match="outside the blast radius"):
        check_experiment(spec, pipe, file=file)
    remote = BASE + "  - {type: network, proxy: db, toxic: down}\n" + \
        "target: {proxy_api: 'http://10.1.2.3:8474'}\nblast_radius: {proxies: [db]}\n"
    spec, file = load_experiment(_write(tmp_path, remote))
    with pytest.raises(BlastRadiusError, match=r"10\.1\.2\.3"):
        check_experiment(spec, pipe, file=file)
    declared = BASE + "  - {type: network, proxy: db, toxic: down}\n" + \
        "target: {services: [{name: db, upstream: '127.0.0.1:9'}]}\n" + \
        "blast_radius: {proxies: []}\n"
    spec, file = load_experiment(_write(tmp_path, declared))
    with pytest.raises(BlastRadiusError, match="proxy 'db'"):
        check_experiment(spec, pipe, file=file)
    spec, file = load_experiment(_write(tmp_path, BASE + "  - {type: kill_worker, step: use}\n"))
    with pytest.raises(BlastRadiusError, match="environment 'prod'"):
        check_experiment(spec, pipe, file=file, env="prod")


def test_fault_names_default_and_must_be_unique(tmp_path: Path) -> None:
    spec, _ = load_experiment(_write(tmp_path, BASE + "  - {type: kill_worker, step: use}\n"
                                                      "  - {type: latency, step: use, "
                                                      "seconds: 1}\n"))
    assert [f.name for f in spec.method] == ["kill_worker-0", "latency-1"]
    with pytest.raises(ConfigError, match="used twice"):
        load_experiment(_write(tmp_path, BASE + "  - {type: kill_worker, step: use, name: x}\n"
                                                "  - {type: kill_worker, step: load, name: x}\n"))


def test_fires_is_a_pure_function_of_the_seed() -> None:
    f = KillWorker(name="k", step="use", probability=0.5, attempts="all")
    a = [fires(f, 1, n) for n in range(1, 200)]
    assert a == [fires(f, 1, n) for n in range(1, 200)]
    assert 60 < sum(a) < 140
    assert a != [fires(f, 2, n) for n in range(1, 200)]
    assert not fires(KillWorker(name="k", step="use"), 1, 2)  # attempts default to [1]


def test_percent_after_resolves_from_baseline_durations() -> None:
    f = KillWorker(name="k", step="use", after="50%")
    assert resolve_after(f, {"use": 0.8}).after == 0.4
    assert resolve_after(KillWorker(name="k", step="use", after=0.1), {}).after == 0.1


def test_corruptions_change_frames_without_mutating_them() -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 2, 3, 4], "s": list("wxyz")})
    before = frame.copy()
    assert corrupt(frame, "nulls", ["a"], 0.5)["a"].isna().sum() == 2
    assert (corrupt(frame, "out_of_range", ["b"], 1.0)["b"] < 0).all()
    assert "a" not in corrupt(frame, "drop_column", ["a"]).columns
    assert "a_v2" in corrupt(frame, "rename_column", ["a"]).columns
    assert "extra" in corrupt(frame, "add_column", ["extra"]).columns
    assert corrupt(frame, "dtype_flip", ["b"])["b"].dtype == "string"
    assert len(corrupt(frame, "duplicates", [], 0.5)) == 6
    assert len(corrupt(frame, "empty")) == 0
    assert len(corrupt(frame, "late_partition", [], 0.25)) == 3
    assert len(corrupt(frame, "duplicate_partition", [], 0.5)) == 6
    pd.testing.assert_frame_equal(frame, before)
    assert corrupt([1, 2], "empty") == []


def test_hook_is_inert_for_steps_without_faults() -> None:
    hook = ChaosHook([Latency(name="l", step="load", seconds=0.5)], seed=0)
    ctx = StepContext(pipeline="p", run_id="r", step="use", attempt=1, interval=None,
                      staging_dir=Path("."))
    t = time.perf_counter()
    assert hook.before(ctx, pipe.steps["use"], {"load": [1]}) == {"load": [1]}
    assert hook.after(ctx, pipe.steps["use"], 3) == 3
    assert time.perf_counter() - t < 0.05
    assert ctx._emitted == []


def test_hook_raises_the_configured_error_and_reports_it() -> None:
    hook = ChaosHook([ExceptionFault(name="boom", step="use", error="ConnectionError")], seed=0)
    ctx = StepContext(pipeline="p", run_id="r", step="use", attempt=1, interval=None,
                      staging_dir=Path("."))
    with pytest.raises(ConnectionError, match="boom"):
        hook.before(ctx, pipe.steps["use"], {})
    assert ctx._emitted[0][0] == "fault_injected"
    assert ctx._emitted[0][1]["fault"] == "boom"
    ctx2 = StepContext(pipeline="p", run_id="r", step="use", attempt=2, interval=None,
                       staging_dir=Path("."))
    assert hook.before(ctx2, pipe.steps["use"], {}) == {}  # attempt 2 is spared


def _journal(**over: object) -> Journal:
    data = {
        "format": "reliability.chaos.journal/1", "experiment": {"title": "<script>x</script>"},
        "seed": 1, "status": "passed", "run": {"run_id": "r1", "status": "succeeded",
                                              "outputs": {"a": "h"}, "duration": 1.0},
        "baseline": {"run_id": "r0", "status": "succeeded", "outputs": {"a": "h"}},
        "faults": [{"fault": "k", "type": "kill_worker", "step": "a", "attempt": 1,
                    "source": "controller", "t": 0.1, "time": 5.0, "worker_pid": 42}],
        "attempts": [{"step": "a", "attempt": 1, "status": "worker_lost", "start": 0.0,
                      "end": 0.2, "error_type": "WorkerLost", "error": "<b>died</b>"},
                     {"step": "a", "attempt": 2, "status": "succeeded", "start": 0.2,
                      "end": 0.5, "error_type": None, "error": None}],
        "steady_state": {"before": [], "during": [],
                         "after": [{"probe": "run_succeeds", "ok": True, "detail": "ok"}]},
        "rollbacks": [], "started_at": time.time(),
    }
    data.update(over)
    return Journal(data)


def test_journal_normalized_ignores_times_and_ids(tmp_path: Path) -> None:
    a, b = _journal(), _journal(started_at=1.0, run={"run_id": "other", "status": "succeeded",
                                                     "outputs": {"a": "h"}, "duration": 9.0})
    assert a.normalized() == b.normalized()
    assert a.normalized() != _journal(status="deviated").normalized()
    path = a.save(tmp_path / "j.json")
    assert Journal.load(path).normalized() == a.normalized()
    with pytest.raises(ConfigError, match="not a chaos journal"):
        Journal.load(_write(tmp_path, "{}"))


def test_score_and_report_escape_everything() -> None:
    j = _journal()
    assert resilience_score(j.data) == 100.0
    assert resilience_score({**j.data, "status": "aborted"}) == 50.0
    html = render_report(j)
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert "<b>died</b>" not in html
    assert "<svg" in html and "worker_lost" in html
