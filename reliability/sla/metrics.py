"""Prometheus metrics fed from lifecycle events: :class:`PipelineMetrics`.

Metrics are updated ONLY by subscribing to the :class:`~reliability.events.EventBus` in the
runner's process. Workers never touch a metric: their events are relayed to the runner, so
counts are exact however many worker processes run, and no multiprocess mode is needed.

Naming follows Prometheus conventions: one ``reliability_`` prefix, base units (seconds),
``_total`` counters, ``_seconds`` durations, ``_timestamp_seconds`` Unix times. Labels are
bounded -- ``pipeline``, ``step``, ``status``, ``contract``, ``check``, ``fault``, ``sla``,
``trigger`` -- and never carry run ids.

Every series about runs carries the run's ``trigger`` (manual, schedule, backfill, trigger,
chaos-baseline, chaos, explore): chaos and explore runs count in their own series, which
the generated alerts and SLOs leave out. The last-success, deadline and error-budget gauges
follow production runs only. Histogram buckets span one second to six hours, fit for pipeline
steps. Every metric lives in the ``registry`` you pass (a fresh one per test).

Exporting: a long-lived process (a scheduler, ``reliability sla serve``) exposes
``/metrics`` (:func:`reliability.sla.exporter.serve_metrics`); a short batch run should push
its registry to a Pushgateway when it ends (:func:`reliability.sla.exporter.push_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from reliability._lazy import require
from reliability.errors import ReliabilityError
from reliability.events import Event, EventBus, EventKind
from reliability.runs import Trigger
from reliability.sla.exposition import Family, SeriesCollector

__all__ = ["DURATION_BUCKETS", "EXPERIMENTS", "RUN_SCOPE", "PipelineMetrics", "is_production",
           "trigger_label"]

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
                    3600.0, 7200.0, 14400.0, 21600.0)
RUN_SCOPE = ""  # the `step` label value of pipeline-level SLA series
_FINAL_RUN = {EventKind.RUN_SUCCEEDED: "succeeded", EventKind.RUN_FAILED: "failed",
              EventKind.RUN_CANCELLED: "cancelled"}
_BREACH_KINDS = ("max_duration", "finish_by")  # the breaches the SLABreached alert pages on
EXPERIMENTS = frozenset(t.value for t in Trigger if not t.production)


def trigger_label(value: object) -> str:
    """The ``trigger`` label of a run from its ``RUN_STARTED`` detail: a
    :class:`~reliability.runs.Trigger` value (none, or one we cannot read, is ``manual``)."""
    try:
        return Trigger.parse(value if isinstance(value, str | Trigger) else None).value
    except ReliabilityError:
        return Trigger.MANUAL.value


def is_production(trigger: object) -> bool:
    """Whether a run with this trigger counts toward SLOs, budgets, alerts, last success."""
    return trigger_label(trigger) not in EXPERIMENTS


_ENDED_ATTEMPT = {EventKind.STEP_TIMED_OUT: "timed_out", EventKind.WORKER_LOST: "worker_lost",
                  EventKind.CONTRACT_VIOLATED: "contract_violated",
                  EventKind.STEP_CANCELLED: "cancelled"}


class PipelineMetrics:
    """The event subscriber that keeps the ``reliability_*`` metrics.

    ``metrics = PipelineMetrics(registry=reg); metrics.attach(bus)``. Usable without SLAs.
    The values live in one :class:`~reliability.sla.exposition.SeriesCollector` registered
    in ``registry``; it caches the exposition text, so a ``/metrics`` scrape served by
    :func:`~reliability.sla.exporter.serve_metrics` re-renders only the series that changed.
    No ``_created`` series are exported (see :mod:`reliability.sla.exposition`).
    Thread-safe: events and the SLA monitor's setters may arrive from any thread.
    """

    def __init__(self, registry: Any = None, *, buckets: tuple[float, ...] = DURATION_BUCKETS
                 ) -> None:
        pc = require("prometheus_client", "prometheus", "Prometheus metrics")
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        c, g = "counter", "gauge"
        self.step_duration = Family("reliability_step_duration_seconds",
                                    "Duration of successful step attempts.", "histogram",
                                    ["pipeline", "step", "trigger"], buckets)
        self.run_duration = Family("reliability_run_duration_seconds",
                                   "Duration of finished runs.", "histogram",
                                   ["pipeline", "status", "trigger"], buckets)
        self.runs = Family("reliability_runs_total", "Finished runs by final status.", c,
                           ["pipeline", "status", "trigger"])
        self.runs_in_progress = Family("reliability_runs_in_progress",
                                       "Runs started, not ended.", g, ["pipeline", "trigger"])
        self.steps = Family("reliability_steps_total",
                            "Final step outcomes per run (succeeded, failed, skipped).", c,
                            ["pipeline", "step", "status", "trigger"])
        self.attempts = Family("reliability_step_attempts_total",
                               "Step attempts by how they ended.", c,
                               ["pipeline", "step", "status", "trigger"])
        self.retries = Family("reliability_step_retries_total", "Retries scheduled.", c,
                              ["pipeline", "step", "trigger"])
        self.worker_lost = Family("reliability_worker_lost_total",
                                  "Worker processes that died mid-attempt.", c,
                                  ["pipeline", "step", "trigger"])
        self.violations = Family("reliability_contract_violations_total",
                                 "Failed contract checks.", c,
                                 ["pipeline", "step", "contract", "check", "trigger"])
        self.faults = Family("reliability_faults_injected_total", "Chaos faults injected.", c,
                             ["pipeline", "step", "fault", "trigger"])
        self.breaches = Family("reliability_sla_breaches_total",
                               "SLA breaches (step '' = run).", c,
                               ["pipeline", "step", "sla", "trigger"])
        self.last_success = Family("reliability_last_success_timestamp_seconds",
                                   "Unix time of the pipeline's last successful run.", g,
                                   ["pipeline"])
        self.step_last_success = Family("reliability_step_last_success_timestamp_seconds",
                                        "Unix time of the step's last committed output.", g,
                                        ["pipeline", "step"])
        self.deadline = Family("reliability_run_deadline_timestamp_seconds",
                               "Unix time by which the current run must finish (finish_by SLA).",
                               g, ["pipeline"])
        self.budget = Family("reliability_error_budget_remaining_ratio",
                             "Share of the success-rate SLO error budget left in its window.", g,
                             ["pipeline", "step"])
        self.collector = SeriesCollector([
            self.step_duration, self.run_duration, self.runs, self.runs_in_progress,
            self.steps, self.attempts, self.retries, self.worker_lost, self.violations,
            self.faults, self.breaches, self.last_success, self.step_last_success,
            self.deadline, self.budget])
        self.registry.register(self.collector)
        self._lock = self.collector.lock
        self._last_ok: dict[str, float] = {}
        self._open: dict[str, dict[str, str]] = {}  # pipeline -> open run id -> trigger
        self._triggers: dict[str, str] = {}  # run id -> trigger label (open, recently ended)
        self._declared: dict[str, list[tuple[str, str]]] = {}  # pipeline -> (step, sla)
        self._due: dict[str, dict[str, float]] = {}  # pipeline -> run id -> deadline
        self._closed: dict[str, None] = {}  # recently ended run ids, oldest first
        self._ended: set[tuple[str, str, str, int | None]] = set()
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
            with self._lock:
                handler(event)

    # -- runs (handlers run under self._lock) -------------------------------------------
    def _trigger_of(self, run_id: str) -> str:
        """The trigger label of a run seen starting (``manual`` for one never seen)."""
        return self._triggers.get(run_id, "manual")

    def _production(self, run_id: str) -> bool:
        return self._triggers.get(run_id, "manual") not in EXPERIMENTS

    def _run_started(self, ev: Event) -> None:
        # Zero series for every outcome, so rate()/increase() see the first one: a series
        # born at 1 has no earlier sample, and the error ratios of the burn-rate alerts
        # would miss the first failure of a pipeline (or of a step) entirely.
        # a set, not a count: a run resumed after its runner died starts twice, ends once
        trigger = self._triggers[ev.run_id] = trigger_label(ev.details.get("trigger"))
        self._open.setdefault(ev.pipeline, {})[ev.run_id] = trigger
        self._closed.pop(ev.run_id, None)  # resumed
        self._publish_in_progress(ev.pipeline, trigger)
        for status in _FINAL_RUN.values():
            self.runs.touch((ev.pipeline, status, trigger))
        for step in ev.details.get("steps", ()):
            key = (ev.pipeline, str(step))
            self.retries.touch((*key, trigger))
            self.worker_lost.touch((*key, trigger))
            self.attempts.touch((*key, "contract_violated", trigger))
            for status in ("succeeded", "failed"):
                self.steps.touch((*key, status, trigger))
        for step, sla in self._declared.get(ev.pipeline, ()):
            self.breaches.touch((ev.pipeline, step, sla, trigger))

    def _publish_in_progress(self, pipeline: str, trigger: str) -> None:
        running = self._open.get(pipeline, {})
        self.runs_in_progress.set((pipeline, trigger),
                                  sum(1 for t in running.values() if t == trigger))

    def _run_ended(self, ev: Event) -> None:
        status = _FINAL_RUN[ev.kind]
        trigger = self._trigger_of(ev.run_id)
        self._open.setdefault(ev.pipeline, {}).pop(ev.run_id, None)
        self._publish_in_progress(ev.pipeline, trigger)
        self._closed[ev.run_id] = None
        if len(self._closed) > 4096:
            old = next(iter(self._closed))
            del self._closed[old]
            self._triggers.pop(old, None)
        dues = self._due.get(ev.pipeline)
        if dues is not None and dues.pop(ev.run_id, None) is not None:
            self._publish_deadline(ev.pipeline)
        self.runs.inc((ev.pipeline, status, trigger))
        if ev.duration is not None:
            self.run_duration.observe((ev.pipeline, status, trigger), ev.duration)
        if status == "succeeded" and trigger not in EXPERIMENTS:
            self._last_ok[ev.pipeline] = ev.time
            self.last_success.set((ev.pipeline,), ev.time)

    # -- steps and attempts -------------------------------------------------------------
    def _step_ok(self, ev: Event) -> None:
        step, trigger = ev.step or RUN_SCOPE, self._trigger_of(ev.run_id)
        self._ended.discard((ev.pipeline, ev.run_id, step, ev.attempt))
        self.attempts.inc((ev.pipeline, step, "succeeded", trigger))
        self.steps.inc((ev.pipeline, step, "succeeded", trigger))
        if ev.duration is not None:
            self.step_duration.observe((ev.pipeline, step, trigger), ev.duration)
        if trigger not in EXPERIMENTS:
            self.step_last_success.set((ev.pipeline, step), ev.time)

    def _attempt_ended(self, ev: Event) -> None:
        step, trigger = ev.step or RUN_SCOPE, self._trigger_of(ev.run_id)
        if ev.kind is EventKind.WORKER_LOST:
            self.worker_lost.inc((ev.pipeline, step, trigger),
                                 int(ev.details.get("attempts", 1)) if ev.step is None else 1)
            if ev.step is None:
                return
        self._ended.add((ev.pipeline, ev.run_id, step, ev.attempt))
        self.attempts.inc((ev.pipeline, step, _ENDED_ATTEMPT[ev.kind], trigger))

    def _count_failed_attempt(self, ev: Event) -> None:
        key = (ev.pipeline, ev.run_id, ev.step or RUN_SCOPE, ev.attempt)
        if key in self._ended:
            self._ended.discard(key)
        else:
            self.attempts.inc((ev.pipeline, key[2], "failed", self._trigger_of(ev.run_id)))

    def _step_retrying(self, ev: Event) -> None:
        self._count_failed_attempt(ev)
        self.retries.inc((ev.pipeline, ev.step or RUN_SCOPE, self._trigger_of(ev.run_id)))

    def _step_failed(self, ev: Event) -> None:
        self._count_failed_attempt(ev)
        self.steps.inc((ev.pipeline, ev.step or RUN_SCOPE, "failed",
                        self._trigger_of(ev.run_id)))

    def _step_skip(self, ev: Event) -> None:
        if ev.details.get("reason") == "upstream failed":
            self.steps.inc((ev.pipeline, ev.step or RUN_SCOPE, "skipped",
                            self._trigger_of(ev.run_id)))

    # -- contracts, chaos, SLAs ---------------------------------------------------------
    def _violated(self, ev: Event) -> None:
        step, trigger = ev.step or RUN_SCOPE, self._trigger_of(ev.run_id)
        if ev.attempt is not None and "quarantined" in ev.details:  # the runner's own event
            self._ended.add((ev.pipeline, ev.run_id, step, ev.attempt))
            self.attempts.inc((ev.pipeline, step, "contract_violated", trigger))
        failures = ev.details.get("failures") or [{}]
        for f in failures:
            contract = str(f.get("contract") or ev.details.get("contract") or "unknown")
            check = str(f.get("check") or "unknown")
            self.violations.inc((ev.pipeline, step, contract, check, trigger))

    def _fault(self, ev: Event) -> None:
        d = ev.details
        fault = str(d.get("type") or d.get("fault") or d.get("kind") or "unknown")  # the kind
        self.faults.inc((ev.pipeline, ev.step or RUN_SCOPE, fault, self._trigger_of(ev.run_id)))

    def _breach(self, ev: Event) -> None:
        sla = str(ev.details.get("sla", "unknown"))
        # a freshness breach belongs to no run: it counts as production
        self.breaches.inc((ev.pipeline, ev.step or RUN_SCOPE, sla, self._trigger_of(ev.run_id)))

    # -- declared SLAs, history ---------------------------------------------------------
    def declare(self, slas: Any) -> None:
        """Note the SLAs of a pipeline (an :class:`~reliability.sla.spec.SLASet`): every run
        of it starts with a zero breach series per max_duration/finish_by SLA, so Prometheus
        sees the first breach as an increase."""
        scopes = [(sla.step or RUN_SCOPE, kind) for sla in slas for kind in _BREACH_KINDS
                  if getattr(sla, kind) is not None]
        with self._lock:
            self._declared[slas.pipeline] = scopes

    def replaying(self) -> Any:
        """A context: events published within it rebuild state (runs in progress, last
        success, deadlines) and create their series at zero, but count nothing. For an
        exporter fed from the run ledger, which starts counting when it starts."""
        return self.collector.replaying()

    # -- set by the SLA monitor (any thread) ----------------------------------------------
    def set_deadline(self, pipeline: str, when: float, run_id: str | None = None) -> None:
        """Record a run's finish-by deadline. The gauge shows the earliest deadline of the
        pipeline's runs in progress, and +Inf while none of them has one (a backfill, or no
        run): the past-deadline alert compares it with the time."""
        with self._lock:
            if run_id is None:
                self.deadline.set((pipeline,), when)
                return
            if run_id in self._closed or not self._production(run_id):
                return  # already ended (a late timer), or a chaos run: no deadline
            self._due.setdefault(pipeline, {})[run_id] = when
            self._publish_deadline(pipeline)

    def _publish_deadline(self, pipeline: str) -> None:
        dues = self._due.get(pipeline) or {}
        self.deadline.set((pipeline,), min(dues.values(), default=math.inf))

    def set_budget(self, pipeline: str, step: str | None, remaining: float) -> None:
        with self._lock:
            self.budget.set((pipeline, step or RUN_SCOPE), remaining)

    def seed_last_success(self, pipeline: str, when: float) -> None:
        """Set the last-success time (from the ledger) when this process has seen none."""
        with self._lock:
            if self._last_ok.get(pipeline, 0.0) < when:
                self._last_ok[pipeline] = when
                self.last_success.set((pipeline,), when)

    def last_success_time(self, pipeline: str) -> float | None:
        with self._lock:
            return self._last_ok.get(pipeline)
