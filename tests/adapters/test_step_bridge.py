"""The adapter core every orchestrator adapter calls, driven the way a host drives it: one
``run_step`` per try, with the host's try number. Real ledger, store and worker processes;
no orchestrator needed (this runs in the main suite)."""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import threading
from pathlib import Path
from typing import Any

import host_pipelines as hp
import pandas as pd
import pytest
from helpers import wait_for
from ledger_checks import (
    assert_contract_stop,
    attempt_rows,
    attempts_metric,
    outputs,
    run_status,
    runner_outputs,
    step_states,
)

from reliability import DataInterval, Pipeline, Retry
from reliability.adapters import (
    AttemptFailed,
    AttemptNotRetryable,
    HostAttempt,
    Ref,
    StepBridge,
    host_run_id,
)
from reliability.chaos.faults import ExceptionFault
from reliability.chaos.hook import ChaosHook
from reliability.contracts import ContractHook, load_contracts
from reliability.errors import DefinitionError

pytestmark = pytest.mark.integration

HOST_RUN = "manual__2026-01-01T00:00:00+00:00"


def _at(step: str, attempt: int = 1, params: dict[str, Any] | None = None,
        retries_left: bool = True) -> HostAttempt:
    return HostAttempt(host_run_id=HOST_RUN, step=step, attempt=attempt,
                       retries_left=retries_left, params=params or {})


def _run_all(bridge: StepBridge, params: dict[str, Any] | None = None) -> dict[str, Ref]:
    """What a host does when every try succeeds: each step once, in dependency order."""
    refs: dict[str, Ref] = {}
    for step in bridge.order:
        refs[step] = bridge.run_step(_at(step, params=params), refs)
    return refs


def test_a_failed_try_is_retryable_and_the_next_try_commits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="transform", error="ConnectionError",
                                      attempts=[1])])
    bridge = StepBridge(hp.small, home=home, hooks=[chaos], contracts=False)
    try:
        refs = {"extract": bridge.run_step(_at("extract"), {})}
        with pytest.raises(AttemptFailed) as info:
            bridge.run_step(_at("transform"), refs)
        assert not isinstance(info.value, AttemptNotRetryable)
        assert bridge.retryable(info.value)
        refs["transform"] = bridge.run_step(_at("transform", 2), refs)
        for step in ("summary", "fingerprint"):
            refs[step] = bridge.run_step(_at(step), refs)
    finally:
        bridge.close()
    run_id = host_run_id("small", HOST_RUN)
    assert [a["status"] for a in attempt_rows(home, run_id, "transform")] == [
        "failed", "succeeded"]
    assert run_status(home, run_id) == "succeeded"
    assert attempts_metric(home, run_id, "small", "transform") == {"failed": 1.0,
                                                                  "succeeded": 1.0}
    ours = runner_outputs(hp.small, tmp_path / "ours", {})
    assert {s: r["digest"] for s, r in refs.items()} == ours == outputs(home, run_id)
    from reliability.cli.main import main

    assert main(["runs", "show", run_id, "--home", str(home)]) == 0
    shown = capsys.readouterr().out
    assert "transform" in shown and "ConnectionError" in shown


def test_a_contract_violation_is_not_retryable_and_fails_downstream(tmp_path: Path) -> None:
    home = tmp_path / "home"
    contracts = load_contracts(hp.contract_dir(tmp_path), hp.small)
    bridge = StepBridge(hp.small, home=home, hooks=[ContractHook(contracts)],
                        contracts=False)
    try:
        with pytest.raises(AttemptNotRetryable) as info:
            bridge.run_step(_at("extract", params={"bad": True}), {})
    finally:
        bridge.close()
    assert not bridge.retryable(info.value)
    assert_contract_stop(home, host_run_id("small", HOST_RUN))
    # a host that retries every error (ZenML, Metaflow) runs the step again: refused,
    # nothing runs, no attempt is recorded
    unfiltered = dataclasses.replace(_at("extract", 2, params={"bad": True}),
                                     host_filters_errors=False)
    try:
        with pytest.raises(AttemptNotRetryable, match="already failed"):
            bridge.run_step(unfiltered, {})
    finally:
        bridge.close()
    assert_contract_stop(home, host_run_id("small", HOST_RUN))


def test_a_committed_step_tried_again_returns_its_output(tmp_path: Path) -> None:
    bridge = StepBridge(hp.small, home=tmp_path / "home", contracts=False, sla=False)
    try:
        first = bridge.run_step(_at("extract"), {})
        again = bridge.run_step(dataclasses.replace(  # a host that retries every error
            _at("extract", 2), host_filters_errors=False), {})
    finally:
        bridge.close()
    assert again == first
    run_id = host_run_id("small", HOST_RUN)
    assert [a["status"] for a in attempt_rows(tmp_path / "home", run_id, "extract")] == [
        "succeeded"]


def test_the_last_try_fails_the_step_for_good(tmp_path: Path) -> None:
    home = tmp_path / "home"
    chaos = ChaosHook([ExceptionFault(step="extract", error="ConnectionError",
                                      attempts="all")])
    bridge = StepBridge(hp.small, home=home, hooks=[chaos], contracts=False, sla=False)
    try:
        with pytest.raises(AttemptNotRetryable):
            bridge.run_step(_at("extract", 3, retries_left=False), {})
    finally:
        bridge.close()
    run_id = host_run_id("small", HOST_RUN)
    assert step_states(home, run_id)["extract"] == "failed"
    assert run_status(home, run_id) == "failed"


def _killed_try(home: str, signals: str) -> None:
    bridge = StepBridge(hp.small, home=home, contracts=False, sla=False)
    bridge.run_step(_at("extract", params={"hold": "extract", "signal_dir": signals}), {})


def test_a_try_whose_process_was_killed_is_recorded_as_worker_lost(tmp_path: Path) -> None:
    home, signals = tmp_path / "home", tmp_path / "signals"
    signals.mkdir()
    proc = mp.get_context("spawn").Process(target=_killed_try, args=(str(home), str(signals)))
    proc.start()
    try:
        wait_for((signals / "extract.running").exists, timeout=120, what="the first try")
        os.kill(proc.pid, signal.SIGKILL)  # the host's task process dies mid-step
    finally:
        proc.join(30)
    bridge = StepBridge(hp.small, home=home, contracts=False, sla=False)
    try:  # the host retries the step: try 2
        bridge.run_step(_at("extract", 2, params={"hold": "extract",
                                                  "signal_dir": str(signals)}), {})
    finally:
        bridge.close()
    run_id = host_run_id("small", HOST_RUN)
    rows = attempt_rows(home, run_id, "extract")
    assert [(a["attempt"], a["status"]) for a in rows] == [(1, "worker_lost"),
                                                           (2, "succeeded")]
    assert rows[0]["worker_pid"] == proc.pid
    assert attempts_metric(home, run_id, "small", "extract") == {"worker_lost": 1.0,
                                                                "succeeded": 1.0}


def test_isolated_step_survives_a_killed_worker(tmp_path: Path) -> None:
    home, signals = tmp_path / "home", tmp_path / "signals"
    signals.mkdir()
    params = {"hold": "extract", "signal_dir": str(signals)}
    bridge = StepBridge(hp.small, home=home, contracts=False, sla=False, isolate=True)
    errors: list[BaseException] = []

    def first_try() -> None:
        try:
            bridge.run_step(_at("extract", params=params), {})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first_try)
    thread.start()
    try:
        wait_for((signals / "extract.running").exists, timeout=120, what="the first try")
        victim = int((signals / "extract.running").read_text())
        assert victim != os.getpid()
        os.kill(victim, signal.SIGKILL)
    finally:
        thread.join(120)
    [err] = errors
    assert isinstance(err, AttemptFailed) and bridge.retryable(err)
    assert err.error_type == "WorkerLost"
    try:
        bridge.run_step(_at("extract", 2, params=params), {})
    finally:
        bridge.close()
    run_id = host_run_id("small", HOST_RUN)
    rows = attempt_rows(home, run_id, "extract")
    assert (rows[0]["status"], rows[0]["worker_pid"]) == ("worker_lost", victim)
    assert rows[1]["status"] == "succeeded" and rows[1]["worker_pid"] != os.getpid()


slow = Pipeline("slow")


@slow.step(timeout=0.5, retry=Retry(attempts=2, backoff=0))
def stuck() -> None:
    threading.Event().wait(60)


def test_isolated_step_past_its_timeout_is_killed_and_timed_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bridge = StepBridge(slow, home=home, contracts=False, sla=False, isolate=True)
    try:
        with pytest.raises(AttemptFailed) as info:
            bridge.run_step(_at("stuck"), {})
    finally:
        bridge.close()
    assert info.value.error_type == "Timeout" and bridge.retryable(info.value)
    run_id = host_run_id("slow", HOST_RUN)
    assert [a["status"] for a in attempt_rows(home, run_id, "stuck")] == ["timed_out"]


def test_guard_puts_hooks_and_the_ledger_around_a_host_task(tmp_path: Path) -> None:
    home = tmp_path / "home"
    contracts_dir = tmp_path / "contracts" / "etl"
    contracts_dir.mkdir(parents=True)
    (contracts_dir / "clean.output.yaml").write_text(
        "pipeline: etl\nstep: clean\ndirection: output\nschema:\n  columns:\n"
        "    x: {dtype: float64, in_range: {min_value: 0, max_value: 1}}\n")
    chaos = ChaosHook([ExceptionFault(step="clean", error="ConnectionError", attempts=[1])])
    bridge = StepBridge.for_tasks("etl", home=home, contracts=False)

    def clean(rows: list[float]) -> pd.DataFrame:  # a host task's own code
        return pd.DataFrame({"x": rows})

    bridge.register(clean, "clean", attempts=3)
    contracts = load_contracts(tmp_path / "contracts", bridge.pipeline)
    bridge.extra_hooks = [ContractHook(contracts), chaos]
    try:
        with pytest.raises(AttemptFailed):
            bridge.guard(clean, _at("clean"), ([0.1, 0.2],), {})
        out = bridge.guard(clean, _at("clean", 2), ([0.1, 0.2],), {})
        assert list(out["x"]) == [0.1, 0.2]  # the host gets the value itself
        bridge.close()
        bridge.extra_hooks = [ContractHook(contracts)]  # another run, without the fault
        other = HostAttempt(host_run_id="run-2", step="clean", attempt=1, retries_left=True)
        with pytest.raises(AttemptNotRetryable):
            bridge.guard(clean, other, (), {"rows": [0.5, 3.0]})
    finally:
        bridge.close()
    first, second = host_run_id("etl", HOST_RUN), host_run_id("etl", "run-2")
    assert [a["status"] for a in attempt_rows(home, first, "clean")] == ["failed",
                                                                        "succeeded"]
    assert run_status(home, first) == "succeeded"
    assert [a["status"] for a in attempt_rows(home, second, "clean")] == [
        "contract_violated"]
    assert (home / "store" / "quarantine" / second / "clean.1.out").is_file()


def test_a_task_process_is_assembled_like_a_run_contracts_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's session is the run assembly of a task process: the project's data
    contracts come first among the hooks, the bridge's own hooks after them, and turning
    contracts off is an option of the same assembly, not another path."""
    from reliability.assembly import RunOptions, TaskAssembly, assemble_task

    hp.contract_dir(tmp_path)
    (tmp_path / "reliability.yaml").write_text("home: home\n")
    monkeypatch.chdir(tmp_path)
    chaos = ChaosHook([], seed=1)
    bridge = StepBridge(hp.small, hooks=[chaos])
    try:
        s = bridge.session()
        assert isinstance(s.asm, TaskAssembly)
        hooks = bridge._hooks(s)
        assert [type(h) for h in hooks] == [ContractHook, ChaosHook]
        assert s.ledger.path == tmp_path / "home" / "ledger.db"
        with pytest.raises(AttemptNotRetryable):  # the project's contract, from the home
            bridge.run_step(_at("extract", params={"bad": True}), {})
    finally:
        bridge.close()
    assert_contract_stop(tmp_path / "home", host_run_id("small", HOST_RUN))
    off = assemble_task(hp.small, RunOptions(contracts=False, sla=False, hooks=[chaos]))
    try:
        assert off.hooks == [chaos]
        assert off.watch is None
    finally:
        off.close()


def test_a_bridge_of_something_else_than_a_pipeline_is_refused_with_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"not int\. Fix: pass e\.g\. 'pipelines"):
        StepBridge(42)  # type: ignore[arg-type]


def test_a_host_interval_in_another_time_zone_reaches_the_step_in_utc(tmp_path: Path) -> None:
    """A host may hand its data interval in its own time zone: the step sees the same
    instants in UTC, as under our runner, so the outputs are our runner's."""
    import datetime as dt

    tz = dt.timezone(dt.timedelta(hours=2))
    local = DataInterval(dt.datetime(2026, 3, 1, 2, tzinfo=tz), dt.datetime(2026, 3, 2, 2,
                                                                             tzinfo=tz))
    bridge = StepBridge(hp.daily, home=tmp_path / "host", contracts=False, sla=False)
    refs: dict[str, Ref] = {}
    for step in bridge.order:
        at = HostAttempt(host_run_id=HOST_RUN, step=step, attempt=1, retries_left=True,
                         interval=local)
        assert at.interval == local and at.interval.start.tzinfo is dt.UTC
        refs[step] = bridge.run_step(at, refs)
    bridge.close()
    ours = runner_outputs(hp.daily, tmp_path / "ours", {}, interval=local.to_utc())
    assert {s: r["digest"] for s, r in refs.items()} == ours
