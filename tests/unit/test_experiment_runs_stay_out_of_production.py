"""Chaos and explore runs share the ledger with production runs, but never count toward
production signals: their metrics carry their trigger, the last-success, deadline and
error-budget gauges follow production runs only, and the last good run is a production
run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reliability.events import Event, EventBus, EventKind
from reliability.runbooks.evidence import LedgerView
from reliability.runner import Ledger
from reliability.sla import SLA, SLO, PipelineMetrics, SLAMonitor, SLASet

K = EventKind


def test_experiment_runs_count_in_their_own_series_and_move_no_production_gauge() -> None:
    reg, bus = CollectorRegistry(), EventBus()
    metrics = PipelineMetrics(registry=reg)
    metrics.attach(bus)
    bus.publish(Event(K.RUN_STARTED, "p", "c1", details={"steps": ["a"], "trigger": "chaos"}))
    metrics.set_deadline("p", 123.0, "c1")
    for ev in (Event(K.WORKER_LOST, "p", "c1", "a", 1),
               Event(K.STEP_FAILED, "p", "c1", "a", 1),
               Event(K.SLA_BREACHED, "p", "c1", "a", details={"sla": "max_duration"}),
               Event(K.RUN_FAILED, "p", "c1", duration=3.0),
               Event(K.RUN_STARTED, "p", "c2", details={"steps": ["a"],
                                                        "trigger": "chaos-baseline"}),
               Event(K.STEP_SUCCEEDED, "p", "c2", "a", 1, time=50.0),
               Event(K.RUN_SUCCEEDED, "p", "c2", time=99.0)):
        bus.publish(ev)

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"pipeline": "p", **labels})

    assert value("reliability_worker_lost_total", step="a", trigger="chaos") == 1
    assert value("reliability_steps_total", step="a", status="failed", trigger="chaos") == 1
    assert value("reliability_sla_breaches_total", step="a", sla="max_duration",
                 trigger="chaos") == 1
    assert value("reliability_runs_total", status="failed", trigger="chaos") == 1
    assert value("reliability_runs_total", status="succeeded", trigger="chaos-baseline") == 1
    assert value("reliability_runs_in_progress", trigger="chaos") == 0
    for name in ("reliability_worker_lost_total", "reliability_steps_total"):
        assert all(s.labels.get("trigger") != "manual" for fam in reg.collect()
                   for s in fam.samples if s.name == name)
    # production gauges: no last success, no deadline from an experiment
    assert value("reliability_last_success_timestamp_seconds") is None
    assert value("reliability_step_last_success_timestamp_seconds", step="a") is None
    assert value("reliability_run_deadline_timestamp_seconds") is None


def _finished(led: Ledger, run_id: str, status: str, trigger: str | None) -> None:
    led.create_run(run_id, "p", run_id, {}, ["a"], trigger=trigger)
    led.mark_run_started(run_id)
    led.set_step(run_id, "a", status)
    led.finish_run(run_id, status)
    time.sleep(0.002)


def test_budget_freshness_and_last_good_run_follow_production_runs_only(tmp_path: Path
                                                                        ) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as led:
        _finished(led, "p-ok", "succeeded", "schedule:daily")
        for i, trigger in enumerate(("chaos", "chaos", "explore", "explore")):
            _finished(led, f"p-x{i}", "failed", trigger)
        _finished(led, "p-base", "succeeded", "chaos-baseline")
        _finished(led, "p-xbase", "succeeded", "explore-baseline")
        ok_ended = led.get_run("p-ok").ended_at
    view = LedgerView(path)
    assert view.outcome_counts("p", 0) == (1, 0)
    assert view.outcome_counts("p", 0, "a") == (1, 0)
    good = view.last_good_run("p")
    assert good is not None and good["run_id"] == "p-ok"
    assert view.last_success_time("p") == ok_ended

    # the monitor: an explore run that fails spends nothing and breaches nothing
    reg, bus = CollectorRegistry(), EventBus()
    slas = SLASet("p", [SLA(success_rate=SLO(target=0.9, window="1d"), freshness="1d"),
                        SLA(step="a", success_rate=SLO(target=0.9, window="1d"))])
    with SLAMonitor(slas, bus, registry=reg, ledger=view) as mon:
        bus.publish(Event(K.RUN_STARTED, "p", "p-x2", details={"steps": ["a"],
                                                               "trigger": "explore"}))
        bus.publish(Event(K.STEP_FAILED, "p", "p-x2", "a", 1))
        bus.publish(Event(K.RUN_FAILED, "p", "p-x2"))
        bus.publish(Event(K.RUN_STARTED, "p", "p-ok", details={"steps": ["a"],
                                                               "trigger": "schedule:daily"}))
        bus.publish(Event(K.RUN_SUCCEEDED, "p", "p-ok", time=ok_ended))
    assert [b.details["sla"] for b in mon.breaches] == []
    for step in ("", "a"):
        assert reg.get_sample_value("reliability_error_budget_remaining_ratio",
                                    {"pipeline": "p", "step": step}) == pytest.approx(1.0)
    assert reg.get_sample_value("reliability_last_success_timestamp_seconds",
                                {"pipeline": "p"}) == ok_ended
