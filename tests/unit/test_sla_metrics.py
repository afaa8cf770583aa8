"""PipelineMetrics: counts fed only from events, in a fresh registry per test."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from reliability.events import Event, EventBus, EventKind
from reliability.sla import PipelineMetrics, serve_metrics

K = EventKind


def ev(kind: EventKind, step: str | None = None, attempt: int | None = None,
       run_id: str = "r1", **kw: object) -> Event:
    return Event(kind=kind, pipeline="p", run_id=run_id, step=step, attempt=attempt,
                 **kw)  # type: ignore[arg-type]


@pytest.fixture
def fed() -> tuple[CollectorRegistry, EventBus]:
    reg = CollectorRegistry()
    bus = EventBus()
    PipelineMetrics(registry=reg).attach(bus)
    return reg, bus


PRODUCTION_GAUGES = ("reliability_last_success_timestamp_seconds",
                     "reliability_step_last_success_timestamp_seconds")


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    """A sample of a run started with no trigger (``trigger="manual"``)."""
    trigger = {} if name in PRODUCTION_GAUGES else {"trigger": "manual"}
    return reg.get_sample_value(name, {"pipeline": "p", **trigger, **labels})


def test_a_run_with_retries_loss_timeout_and_violation(fed: tuple[CollectorRegistry, EventBus]
                                                       ) -> None:
    reg, bus = fed
    for e in [
        ev(K.RUN_STARTED, details={"steps": ["a", "b", "c"]}),
        ev(K.STEP_STARTED, "a", 1),
        ev(K.STEP_RETRYING, "a", 1, error="boom", details={"error_type": "Boom"}),
        ev(K.STEP_STARTED, "a", 2),
        ev(K.WORKER_LOST, "a", 2, error="died"),
        ev(K.STEP_RETRYING, "a", 2, details={"error_type": "WorkerLost"}),
        ev(K.STEP_STARTED, "a", 3),
        ev(K.FAULT_INJECTED, "a", 3, details={"fault": "latency"}),
        ev(K.STEP_SUCCEEDED, "a", 3, duration=2.5, time=1000.0),
        ev(K.STEP_STARTED, "b", 1),
        ev(K.STEP_TIMED_OUT, "b", 1, duration=9.0),
        ev(K.STEP_RETRYING, "b", 1, details={"error_type": "Timeout"}),
        ev(K.STEP_STARTED, "b", 2),
        ev(K.CONTRACT_VIOLATED, "b", 2, details={"quarantined": True, "failures": [
            {"contract": "wine", "column": "x", "check": "ge", "failure_count": 3},
            {"contract": "wine", "column": "y", "check": "not_null", "failure_count": 1}]}),
        ev(K.STEP_FAILED, "b", 2, details={"error_type": "ContractViolation"}),
        ev(K.STEP_SKIPPED, "c", details={"reason": "upstream failed"}),
        ev(K.RUN_FAILED, duration=20.0),
    ]:
        bus.publish(e)
    att = "reliability_step_attempts_total"
    assert value(reg, att, step="a", status="failed") == 1
    assert value(reg, att, step="a", status="worker_lost") == 1
    assert value(reg, att, step="a", status="succeeded") == 1
    assert value(reg, att, step="b", status="timed_out") == 1
    assert value(reg, att, step="b", status="contract_violated") == 1
    assert value(reg, att, step="b", status="failed") is None  # not counted twice
    assert value(reg, "reliability_step_retries_total", step="a") == 2
    assert value(reg, "reliability_step_retries_total", step="c") == 0  # pre-created
    assert value(reg, "reliability_worker_lost_total", step="a") == 1
    assert value(reg, "reliability_contract_violations_total", step="b", contract="wine",
                 check="ge") == 1
    assert value(reg, "reliability_faults_injected_total", step="a", fault="latency") == 1
    assert value(reg, "reliability_steps_total", step="a", status="succeeded") == 1
    assert value(reg, "reliability_steps_total", step="b", status="failed") == 1
    assert value(reg, "reliability_steps_total", step="c", status="skipped") == 1
    assert value(reg, "reliability_step_duration_seconds_count", step="a") == 1
    assert value(reg, "reliability_step_duration_seconds_bucket", step="a", le="5.0") == 1
    assert value(reg, "reliability_step_last_success_timestamp_seconds", step="a") == 1000.0
    assert value(reg, "reliability_runs_total", status="failed") == 1
    assert value(reg, "reliability_runs_in_progress") == 0
    assert value(reg, "reliability_run_duration_seconds_sum", status="failed") == 20.0
    assert value(reg, "reliability_last_success_timestamp_seconds") is None


def test_success_sets_last_success_and_no_run_id_label(fed: tuple[CollectorRegistry, EventBus]
                                                       ) -> None:
    reg, bus = fed
    bus.publish(ev(K.RUN_STARTED, details={"steps": ["a"]}))
    bus.publish(ev(K.SLA_BREACHED, "a", details={"sla": "max_duration"}))
    bus.publish(ev(K.RUN_SUCCEEDED, duration=1.0, time=1234.0))
    assert value(reg, "reliability_last_success_timestamp_seconds") == 1234.0
    assert value(reg, "reliability_sla_breaches_total", step="a", sla="max_duration") == 1
    for metric in reg.collect():
        assert metric.name.startswith("reliability_")
        for sample in metric.samples:
            assert "run_id" not in sample.labels
            assert "r1" not in sample.labels.values()


def test_histogram_buckets_span_seconds_to_hours() -> None:
    from reliability.sla.metrics import DURATION_BUCKETS

    assert DURATION_BUCKETS[0] <= 1 and DURATION_BUCKETS[-1] >= 6 * 3600
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


def test_serve_metrics_on_loopback_and_close() -> None:
    reg = CollectorRegistry()
    metrics = PipelineMetrics(registry=reg)
    metrics.seed_last_success("p", 42.0)
    server, port = serve_metrics(reg)
    try:
        assert server.host == "127.0.0.1" and port > 0
        body = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'reliability_last_success_timestamp_seconds{pipeline="p"} 42.0' in body
    finally:
        server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
