"""The SLA monitor on real runs: live breaches, error budgets, runbooks on failures."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from reliability import EventBus, EventKind, Pipeline, Retry, Runner, StepHook
from reliability.errors import ContractViolation
from reliability.events import Event
from reliability.runbooks import RunbookRenderer
from reliability.sla import SLA, SLO, Deadline, SLAMonitor, SLASet

pytestmark = pytest.mark.integration  # forks real worker processes

slow = Pipeline("slowpipe")


@slow.step
def quick() -> int:
    return 1


@slow.step
def sleepy(quick: int) -> int:
    time.sleep(1.2)
    return quick


flaky = Pipeline("flakypipe")


@flaky.step(retry=Retry(attempts=2, backoff=0))
def fetch() -> bytes:
    raise ConnectionRefusedError("data service at 127.0.0.1:9 refused the connection")


@flaky.step
def use(fetch: bytes) -> int:
    return len(fetch)


guarded = Pipeline("guarded")


@guarded.step
def produce() -> list[int]:
    return [1, -2, 3]


class Positive(StepHook):
    def after(self, ctx: Any, spec: Any, output: Any) -> Any:
        bad = [v for v in output if v < 0]
        if bad:
            raise ContractViolation("values must be positive", contract="positives",
                                    step=ctx.step, failures=[{
                                        "contract": "positives", "column": "value",
                                        "check": "greater_than(0)",
                                        "failure_count": len(bad), "failure_cases": bad}])
        return output


def record(bus: EventBus) -> list[tuple[float, Event]]:
    seen: list[tuple[float, Event]] = []
    lock = threading.Lock()

    def sub(e: Event) -> None:
        with lock:
            seen.append((time.monotonic(), e))

    bus.subscribe(sub)
    return seen


def test_live_duration_breach_arrives_while_the_step_still_runs(tmp_path: Path) -> None:
    bus = EventBus()
    seen = record(bus)
    runner = Runner(slow, home=tmp_path, bus=bus, workers=1)
    slas = SLASet("slowpipe", [SLA(step="sleepy", max_duration=0.3)])
    reg = CollectorRegistry()
    with SLAMonitor(slas, bus, registry=reg, ledger=runner.ledger) as mon:
        result = runner.run()
    assert result.ok
    kinds = [(e.kind, e.step) for _, e in seen]
    breach_at = kinds.index((EventKind.SLA_BREACHED, "sleepy"))
    assert breach_at < kinds.index((EventKind.STEP_SUCCEEDED, "sleepy"))
    t_start = next(t for t, e in seen if e.kind is EventKind.STEP_STARTED and e.step == "sleepy")
    t_breach, breach = seen[breach_at]
    t_done = next(t for t, e in seen if e.kind is EventKind.STEP_SUCCEEDED and e.step == "sleepy")
    assert 0.25 < t_breach - t_start < 0.9          # at the budget, not at the end
    assert t_done - t_breach > 0.3                  # the step was still running
    assert breach.details["live"] is True and breach.details["sla"] == "max_duration"
    assert breach.details["limit"] == 0.3
    assert len(mon.breaches) == 1                   # reported once, not again at the end
    assert reg.get_sample_value("reliability_sla_breaches_total", {
        "pipeline": "slowpipe", "step": "sleepy", "sla": "max_duration",
        "trigger": "manual"}) == 1
    # the breach is in the audit trail too
    assert [e["step"] for e in runner.ledger.events(result.run_id, "sla_breached")] == ["sleepy"]


def test_deadline_relative_to_run_start_fires_live(tmp_path: Path) -> None:
    bus = EventBus()
    seen = record(bus)
    runner = Runner(slow, home=tmp_path, bus=bus, workers=1)
    slas = SLASet("slowpipe", [SLA(finish_by=Deadline(offset=0.4, relative_to="run_start"))])
    reg = CollectorRegistry()
    during: list[float | None] = []
    bus.subscribe(lambda e: during.append(reg.get_sample_value(
        "reliability_run_deadline_timestamp_seconds", {"pipeline": "slowpipe"})),
        kinds={EventKind.SLA_BREACHED})
    with SLAMonitor(slas, bus, registry=reg):
        runner.run()
    kinds = [e.kind for _, e in seen]
    assert kinds.index(EventKind.SLA_BREACHED) < kinds.index(EventKind.RUN_SUCCEEDED)
    started = next(e.time for _, e in seen if e.kind is EventKind.RUN_STARTED)
    assert during == [pytest.approx(started + 0.4)]  # while the run was late
    after = reg.get_sample_value("reliability_run_deadline_timestamp_seconds",
                                 {"pipeline": "slowpipe"})
    assert after == math.inf  # no run in progress: nothing can be past its deadline



def test_a_backfill_is_not_held_to_a_passed_deadline(tmp_path: Path) -> None:
    from reliability import DataInterval

    bus = EventBus()
    runner = Runner(slow, home=tmp_path, bus=bus, workers=1)
    # due one hour after the interval ends: a year ago for this interval
    slas = SLASet("slowpipe", [SLA(finish_by=Deadline(offset=3600, relative_to="interval_end")),
                               SLA(step="sleepy", max_duration=0.3)])
    old = DataInterval.parse("2025-01-01T00:00:00+00:00/2025-01-02T00:00:00+00:00")
    reg = CollectorRegistry()
    with SLAMonitor(slas, bus, registry=reg) as mon:
        assert runner.run(interval=old, trigger="backfill").ok
        backfill = [(b.step, b.details["sla"]) for b in mon.breaches]
        assert runner.run(interval=old, trigger="manual", resume=False).ok
        manual = [(b.step, b.details["sla"]) for b in mon.breaches][len(backfill):]
    assert backfill == [("sleepy", "max_duration")]  # durations still count
    assert sorted(manual, key=str) == sorted([(None, "finish_by"), ("sleepy", "max_duration")],
                                             key=str)
    assert reg.get_sample_value("reliability_run_deadline_timestamp_seconds",
                                {"pipeline": "slowpipe"}) is not None  # set by the manual run


def test_no_breach_within_budget(tmp_path: Path) -> None:
    bus = EventBus()
    runner = Runner(slow, home=tmp_path, bus=bus, workers=1)
    slas = SLASet("slowpipe", [SLA(step="sleepy", max_duration=30), SLA(max_duration=60)])
    with SLAMonitor(slas, bus, registry=CollectorRegistry()) as mon:
        assert runner.run().ok
    assert mon.breaches == []


def test_failures_render_runbooks_with_evidence(tmp_path: Path) -> None:
    bus = EventBus()
    runner = Runner(flaky, home=tmp_path, bus=bus, workers=1)
    slas = SLASet("flakypipe", [SLA(success_rate=SLO(target=0.9))])
    reg = CollectorRegistry()
    with SLAMonitor(slas, bus, registry=reg, ledger=runner.ledger,
                    runbooks=RunbookRenderer()) as mon:
        result = runner.run()
        mon.flush()
    assert result.status == "failed"
    assert mon.errors == []
    folder = tmp_path / "runbooks" / result.run_id
    dep = (folder / "dependency_unreachable-fetch.md").read_text()
    assert "refused the connection" in dep
    assert f"reliability resume {result.run_id}" in dep
    assert "## Mitigation" in dep and "## Escalation" in dep
    assert (folder / "dependency_unreachable-fetch.html").read_text().startswith("<!doctype")
    budget = (folder / "sla_breach-run-success_rate.md").read_text()
    assert "error budget" in budget
    assert reg.get_sample_value("reliability_error_budget_remaining_ratio",
                                {"pipeline": "flakypipe", "step": ""}) == pytest.approx(-9.0)


def test_contract_violation_runbook_lists_failure_cases_and_last_good_run(tmp_path: Path
                                                                         ) -> None:
    bus = EventBus()
    ok_runner = Runner(guarded, home=tmp_path, bus=bus, workers=1)
    good = ok_runner.run()
    assert good.ok
    ok_runner.close()
    runner = Runner(guarded, home=tmp_path, bus=bus, workers=1, hooks=[Positive()])
    with SLAMonitor(None, bus, registry=CollectorRegistry(), ledger=runner.ledger,
                    runbooks=RunbookRenderer()) as mon:
        bad = runner.run(resume=False, run_id="guarded-bad")
        mon.flush()
    assert bad.status == "failed"
    folder = tmp_path / "runbooks" / "guarded-bad"
    assert sorted(p.name for p in folder.iterdir()) == [
        "contract_violation-produce.html", "contract_violation-produce.md"]
    text = (folder / "contract_violation-produce.md").read_text()
    assert "greater_than(0)" in text and "`-2`" in text
    assert good.run_id in text  # last good run, from the ledger


def test_freshness_breach_from_the_ledger(tmp_path: Path) -> None:
    bus = EventBus()
    runner = Runner(slow, home=tmp_path, bus=bus, workers=1)
    runner.run()
    slas = SLASet("slowpipe", [SLA(freshness=0.2)])
    seen = record(bus)
    with SLAMonitor(slas, bus, registry=CollectorRegistry(), ledger=runner.ledger) as mon:
        deadline = time.monotonic() + 5
        while not mon.breaches and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [e.details["sla"] for _, e in seen] == ["freshness"]
    assert seen[0][1].run_id == "slowpipe-stale"
