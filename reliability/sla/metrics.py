"""Prometheus metrics fed from lifecycle events: :class:`PipelineMetrics`.

Metrics are updated ONLY by subscribing to the :class:`~reliability.events.EventBus` in the
runner's process. Workers never touch a metric: their events are relayed to the runner, so
counts are exact however many worker processes run, and no multiprocess mode is needed.

Naming follows Prometheus conventions: one ``reliability_`` prefix, base units (seconds),
``_total`` counters, ``_seconds`` durations, ``_timestamp_seconds`` Unix times. Labels are
bounded -- ``pipeline``, ``step``, ``status``, ``contract``, ``check``, ``fault``, ``sla`` --
and never carry run ids. Histogram buckets span one second to six hours, fit for pipeline
steps. Every metric lives in the ``registry`` you pass (a fresh one per test).

Exporting: a long-lived process (a scheduler, ``reliability sla serve``) exposes
``/metrics`` (:func:`reliability.sla.exporter.serve_metrics`); a short batch run should push
its registry to a Pushgateway when it ends (:func:`reliability.sla.exporter.push_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reliability._lazy import require
from reliability.events import Event, EventBus, EventKind

__all__ = ["DURATION_BUCKETS", "RUN_SCOPE", "PipelineMetrics"]

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
                    3600.0, 7200.0, 14400.0, 21600.0)
RUN_SCOPE = ""  # the `step` label value of pipeline-level SLA series
_FINAL_RUN = {EventKind.RUN_SUCCEEDED: "succeeded", EventKind.RUN_FAILED: "failed",
              EventKind.RUN_CANCELLED: "cancelled"}
_ENDED_ATTEMPT = {EventKind.STEP_TIMED_OUT: "timed_out", EventKind.WORKER_LOST: "worker_lost",
                  EventKind.CONTRACT_VIOLATED: "contract_violated",
                  EventKind.STEP_CANCELLED: "cancelled"}


class PipelineMetrics:
    """The event subscriber that keeps the ``reliability_*`` metrics.

    ``metrics = PipelineMetrics(registry=reg); metrics.attach(bus)``. Usable without SLAs.
    """

    def __init__(self, registry: Any = None, *, buckets: tuple[float, ...] = DURATION_BUCKETS
                 ) -> None:
        pc = require("prometheus_client", "prometheus", "Prometheus metrics")
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        r = self.registry
        c, g, h = pc.Counter, pc.Gauge, pc.Histogram
        self.step_duration = h("reliability_step_duration_seconds",
                               "Duration of successful step attempts.", ["pipeline", "step"],
                               buckets=buckets, registry=r)
        self.run_duration = h("reliability_run_duration_seconds",
                              "Duration of finished runs.", ["pipeline", "status"],
                              buckets=buckets, registry=r)
        self.runs = c("reliability_runs_total", "Finished runs by final status.",
                      ["pipeline", "status"], registry=r)
        self.runs_in_progress = g("reliability_runs_in_progress", "Runs started, not ended.",
                                  ["pipeline"], registry=r)
        self.steps = c("reliability_steps_total",
                       "Final step outcomes per run (succeeded, failed, skipped).",
                       ["pipeline", "step", "status"], registry=r)
        self.attempts = c("reliability_step_attempts_total", "Step attempts by how they ended.",
                          ["pipeline", "step", "status"], registry=r)
        self.retries = c("reliability_step_retries_total", "Retries scheduled.",
                         ["pipeline", "step"], registry=r)
        self.worker_lost = c("reliability_worker_lost_total",
                             "Worker processes that died mid-attempt.", ["pipeline", "step"],
                             registry=r)
        self.violations = c("reliability_contract_violations_total",
                            "Failed contract checks.", ["pipeline", "step", "contract", "check"],
                            registry=r)
        self.faults = c("reliability_faults_injected_total", "Chaos faults injected.",
                        ["pipeline", "step", "fault"], registry=r)
        self.breaches = c("reliability_sla_breaches_total", "SLA breaches (step '' = run).",
                          ["pipeline", "step", "sla"], registry=r)
        self.last_success = g("reliability_last_success_timestamp_seconds",
                              "Unix time of the pipeline's last successful run.", ["pipeline"],
                              registry=r)
        self.step_last_success = g("reliability_step_last_success_timestamp_seconds",
                                   "Unix time of the step's last committed output.",
                                   ["pipeline", "step"], registry=r)
        self.deadline = g("reliability_run_deadline_timestamp_seconds",
                          "Unix time by which the current run must finish (finish_by SLA).",
                          ["pipeline"], registry=r)
        self.budget = g("reliability_error_budget_remaining_ratio",
                        "Share of the success-rate SLO error budget left in its window.",
                        ["pipeline", "step"], registry=r)
        self._last_ok: dict[str, float] = {}
        self._ended: set[tuple[str, str, str, int | None]] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._dispatch: dict[EventKind, Callable[[Event], None]] = {
            EventKind.RUN_STARTED: self._run_started, EventKind.STEP_SUCCEEDED: self._step_ok,
            EventKind.STEP_FAILED: self._step_failed, EventKind.STEP_SKIPPED: self._step_skip,
            EventKind.STEP_RETRYING: self._step_retrying,
            EventKind.CONTRACT_VIOLATED: self._violated,
            EventKind.FAULT_INJECTED: self._fault, EventKind.SLA_BREACHED: self._breach,
        }
        for kind in _FINAL_RUN:
            self._dispatch[kind] = self._run_ended
        for kind in (EventKind.STEP_TIMED_OUT, EventKind.WORKER_LOST, EventKind.STEP_CANCELLED):
            self._dispatch[kind] = self._attempt_ended

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to ``bus``; returns the unsubscribe function."""
        return bus.subscribe(self, kinds=self._dispatch)

    def __call__(self, event: Event) -> None:
        handler = self._dispatch.get(event.kind)
        if handler is not None:
            handler(event)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- runs ---------------------------------------------------------------------------
    def _run_started(self, ev: Event) -> None:
        self._child(self.runs_in_progress, ev.pipeline).inc()
        for step in ev.details.get("steps", ()):  # zero series, so increase() sees the first
            for metric in (self.retries, self.worker_lost):
                self._child(metric, ev.pipeline, str(step))

    def _run_ended(self, ev: Event) -> None:
        status = _FINAL_RUN[ev.kind]
        self._child(self.runs_in_progress, ev.pipeline).dec()
        self._child(self.runs, ev.pipeline, status).inc()
        if ev.duration is not None:
            self._child(self.run_duration, ev.pipeline, status).observe(ev.duration)
        if status == "succeeded":
            self._last_ok[ev.pipeline] = ev.time
            self._child(self.last_success, ev.pipeline).set(ev.time)

    # -- steps and attempts -------------------------------------------------------------
    def _step_ok(self, ev: Event) -> None:
        step = ev.step or RUN_SCOPE
        self._ended.discard((ev.pipeline, ev.run_id, step, ev.attempt))
        self._child(self.attempts, ev.pipeline, step, "succeeded").inc()
        self._child(self.steps, ev.pipeline, step, "succeeded").inc()
        if ev.duration is not None:
            self._child(self.step_duration, ev.pipeline, step).observe(ev.duration)
        self._child(self.step_last_success, ev.pipeline, step).set(ev.time)

    def _attempt_ended(self, ev: Event) -> None:
        step = ev.step or RUN_SCOPE
        if ev.kind is EventKind.WORKER_LOST:
            self._child(self.worker_lost, ev.pipeline, step).inc(
                int(ev.details.get("attempts", 1)) if ev.step is None else 1)
            if ev.step is None:
                return
        self._ended.add((ev.pipeline, ev.run_id, step, ev.attempt))
        self._child(self.attempts, ev.pipeline, step, _ENDED_ATTEMPT[ev.kind]).inc()

    def _count_failed_attempt(self, ev: Event) -> None:
        key = (ev.pipeline, ev.run_id, ev.step or RUN_SCOPE, ev.attempt)
        if key in self._ended:
            self._ended.discard(key)
        else:
            self._child(self.attempts, ev.pipeline, key[2], "failed").inc()

    def _step_retrying(self, ev: Event) -> None:
        self._count_failed_attempt(ev)
        self._child(self.retries, ev.pipeline, ev.step or RUN_SCOPE).inc()

    def _step_failed(self, ev: Event) -> None:
        self._count_failed_attempt(ev)
        self._child(self.steps, ev.pipeline, ev.step or RUN_SCOPE, "failed").inc()

    def _step_skip(self, ev: Event) -> None:
        if ev.details.get("reason") == "upstream failed":
            self._child(self.steps, ev.pipeline, ev.step or RUN_SCOPE, "skipped").inc()

    # -- contracts, chaos, SLAs ---------------------------------------------------------
    def _violated(self, ev: Event) -> None:
        step = ev.step or RUN_SCOPE
        if ev.attempt is not None and "quarantined" in ev.details:  # the runner's own event
            self._ended.add((ev.pipeline, ev.run_id, step, ev.attempt))
            self._child(self.attempts, ev.pipeline, step, "contract_violated").inc()
        failures = ev.details.get("failures") or [{}]
        for f in failures:
            contract = str(f.get("contract") or ev.details.get("contract") or "unknown")
            check = str(f.get("check") or "unknown")
            self._child(self.violations, ev.pipeline, step, contract, check).inc()

    def _fault(self, ev: Event) -> None:
        d = ev.details
        fault = str(d.get("type") or d.get("fault") or d.get("kind") or "unknown")  # the kind
        self._child(self.faults, ev.pipeline, ev.step or RUN_SCOPE, fault).inc()

    def _breach(self, ev: Event) -> None:
        sla = str(ev.details.get("sla", "unknown"))
        self._child(self.breaches, ev.pipeline, ev.step or RUN_SCOPE, sla).inc()

    # -- set by the SLA monitor ---------------------------------------------------------
    def set_deadline(self, pipeline: str, when: float) -> None:
        self._child(self.deadline, pipeline).set(when)

    def set_budget(self, pipeline: str, step: str | None, remaining: float) -> None:
        self._child(self.budget, pipeline, step or RUN_SCOPE).set(remaining)

    def seed_last_success(self, pipeline: str, when: float) -> None:
        """Set the last-success time (from the ledger) when this process has seen none."""
        if self._last_ok.get(pipeline, 0.0) < when:
            self._last_ok[pipeline] = when
            self._child(self.last_success, pipeline).set(when)

    def last_success_time(self, pipeline: str) -> float | None:
        return self._last_ok.get(pipeline)
