"""SLA checks and runbooks around the steps one host task process runs.

Hosts such as KFP and Metaflow start a process per task, so no process sees a whole run:
the SLA monitor of our runner (:class:`~reliability.sla.monitor.SLAMonitor`: Prometheus
metrics, timer and renderer threads, freshness timers) has nothing to watch there, and
building it per task costs more than most steps. :class:`TaskWatch` does the part a task
process can do, and loads the rest only when it is needed:

* a step's ``max_duration`` SLA: a timer armed when the step starts publishes a live
  ``sla_breached`` while the step still runs, and the step's end checks its duration (the
  run's likewise, in the process that started the run, for as long as it lives);
* runbooks for the events that call for one (contract violation, lost worker, failed step,
  SLA breach), rendered at once -- the host may end the process right after the task;
* the run's SLAs (its ``max_duration`` and ``finish_by``, success-rate budgets), checked by
  the process that settles the run, from the run's times in the ledger.

Metrics need no process of their own: ``reliability sla serve`` computes them from the
ledger's events, which the bridge records. Freshness is left to a long-lived monitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.events import Event, EventBus, EventKind
from reliability.runner.ledger import Ledger, LedgerView

__all__ = ["Limits", "TaskWatch"]

_STEP_END = frozenset({EventKind.STEP_SUCCEEDED, EventKind.STEP_FAILED,
                       EventKind.STEP_SKIPPED, EventKind.STEP_CANCELLED})
_RUN_END = {EventKind.RUN_SUCCEEDED: "succeeded", EventKind.RUN_FAILED: "failed"}
# the events a runbook family may answer (reliability.sla.monitor.family_for decides)
_RUNBOOK_KINDS = frozenset({EventKind.SLA_BREACHED, EventKind.CONTRACT_VIOLATED,
                            EventKind.WORKER_LOST, EventKind.STEP_FAILED})


@record(frozen=True)
class Limits:
    """What a task process needs of a pipeline's SLA file, as plain data (it is cached)."""

    steps: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    """step -> (max_duration in seconds, severity)"""
    settle: bool = False
    """the run has SLAs checked when it ends (a run SLA, or a success-rate SLO)"""
    run: float | None = None
    """the run's max_duration in seconds"""

    def to_json(self) -> dict[str, Any]:
        return {"steps": {k: list(v) for k, v in self.steps.items()}, "settle": self.settle,
                "run": self.run}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Limits:
        return cls({k: (float(v[0]), str(v[1])) for k, v in data["steps"].items()},
                   bool(data["settle"]), data["run"])

    @classmethod
    def of(cls, slas: Any) -> Limits:
        """From an :class:`~reliability.sla.spec.SLASet` (None: no SLAs)."""
        if slas is None:
            return cls()
        steps = {name: (float(s.max_duration), str(s.severity))
                 for name, s in slas.steps.items() if s.max_duration is not None}
        run = slas.run.max_duration if slas.run is not None else None
        return cls(steps, slas.run is not None or any(s.success_rate for s in slas),
                   float(run) if run is not None else None)


@record
class _Run:
    step_started: dict[str, float] = field(default_factory=dict)
    took: dict[str | None, float] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    violated: set[str] = field(default_factory=set)
    breached: set[tuple[str | None, str]] = field(default_factory=set)
    runbooks: list[Any] = field(default_factory=list)  # Evidence rendered here


class TaskWatch:
    """Subscribed to a bridge session's ``bus``; see the module's description.

    ``slas`` loads the pipeline's :class:`~reliability.sla.spec.SLASet` (or None) and
    ``renderer`` the runbook renderer; both are called only when needed.
    """

    def __init__(self, pipeline: str, bus: EventBus, ledger: Ledger, limits: Limits, *,
                 runbooks: bool, slas: Callable[[], Any], renderer: Callable[[], Any]
                 ) -> None:
        self.pipeline = pipeline
        self.bus = bus
        self.ledger = ledger
        self.view = LedgerView(ledger.path)  # reads on its own connection
        self.limits = limits
        self.runbook_dir = Path(ledger.path).parent / "runbooks"
        self.runbooks = runbooks
        self.rendered: list[Path] = []
        self._slas = slas
        self._renderer = renderer
        self._runs: dict[str, _Run] = {}
        self._timers: dict[tuple[str, str | None], threading.Timer] = {}
        self._lock = threading.RLock()
        self._unsubscribe = bus.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()

    def _run(self, run_id: str) -> _Run:
        with self._lock:
            return self._runs.setdefault(run_id, _Run())

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        if ev.pipeline != self.pipeline:
            return
        kind = ev.kind
        if kind is EventKind.RUN_STARTED and self.limits.run is not None:
            self._arm(ev.run_id, None, ev.time, self.limits.run)
        elif kind is EventKind.STEP_STARTED and ev.step:
            self._step_started(ev, ev.step)
        elif kind in _STEP_END and ev.step:
            self._step_ended(ev, ev.step)
        elif kind is EventKind.FAULT_INJECTED:
            self._run(ev.run_id).faults.append({
                "fault": str(ev.details.get("fault") or ev.details.get("kind") or "unknown"),
                "step": ev.step, "attempt": ev.attempt, **dict(ev.details)})
        elif kind is EventKind.CONTRACT_VIOLATED and ev.step:
            self._run(ev.run_id).violated.add(ev.step)
        if kind in _RUNBOOK_KINDS and self.runbooks:
            self._runbook(ev)
        if kind in _RUN_END:
            self._run_ended(ev, _RUN_END[kind])

    def _step_started(self, ev: Event, step: str) -> None:
        run = self._run(ev.run_id)
        with self._lock:
            if step in run.step_started:  # a retry in the same process: the step goes on
                return
            started = ev.time
            if (ev.attempt or 1) > 1:  # earlier tries ran in other processes
                started = min([ev.time, *(float(a["started_at"]) for a in
                                          self.ledger.attempts(ev.run_id, step)
                                          if a["started_at"] is not None)])
            run.step_started[step] = started
        limit = self.limits.steps.get(step)
        if limit is not None:
            self._arm(ev.run_id, step, started, limit[0])

    def _arm(self, run_id: str, step: str | None, started: float, limit: float) -> None:
        """A live ``max_duration`` check of ``step`` (None: the run)."""
        timer = threading.Timer(max(0.0, started + limit - time.time()), self._live,
                                (run_id, step, started, limit))
        timer.daemon = True
        with self._lock:
            self._timers[(run_id, step)] = timer
        timer.start()

    def _live(self, run_id: str, step: str | None, started: float, limit: float) -> None:
        if step is None and self.ledger.get_run(run_id).status not in ("pending", "running"):
            return  # another process settled the run
        self._breach(run_id, step, "max_duration", limit, time.time() - started, live=True)

    def _step_ended(self, ev: Event, step: str) -> None:
        with self._lock:
            timer = self._timers.pop((ev.run_id, step), None)
            run = self._run(ev.run_id)
            started = run.step_started.get(step)
            if started is not None:
                run.took[step] = ev.time - started
        if timer is not None:
            timer.cancel()
        limit = self.limits.steps.get(step)
        if started is not None and limit is not None and ev.time - started > limit[0]:
            self._breach(ev.run_id, step, "max_duration", limit[0], ev.time - started,
                         live=False)

    def _run_ended(self, ev: Event, outcome: str) -> None:
        with self._lock:
            timer = self._timers.pop((ev.run_id, None), None)
        if timer is not None:
            timer.cancel()
        if self.limits.settle:
            self._check_run(ev.run_id)
        with self._lock:
            run = self._runs.pop(ev.run_id, None)
        if run is None or not run.runbooks:
            return
        if ev.duration is not None:
            run.took[None] = ev.duration
        for job in run.runbooks:  # now the outcome and final durations are known
            self._render(job.settled(outcome, run.took), record=False)

    # -- SLAs ---------------------------------------------------------------------------
    def _check_run(self, run_id: str) -> None:
        """The run's SLAs, as the monitor checks them when a run ends."""
        from reliability.sla.monitor import (
            budgets,
            deadline_applies,
            deadline_of,
            run_end_breaches,
        )

        slas = self._slas()
        if slas is None:
            return
        rec = self.ledger.get_run(run_id)
        sla = slas.run
        if sla is not None and rec.started_at is not None and rec.ended_at is not None:
            interval = ({"start": rec.interval_start, "end": rec.interval_end}
                        if rec.interval_start and rec.interval_end else None)
            due = (deadline_of(sla, rec.started_at, interval) if sla.finish_by is not None
                   and deadline_applies({"trigger": rec.trigger.value}) else None)
            for kind, limit, observed in run_end_breaches(sla, rec.started_at, rec.ended_at,
                                                          due):
                self._breach(run_id, None, kind, limit, observed, live=False)
        if not rec.production:
            return  # a chaos or explore run: no budget
        for each, ratio, remaining in budgets(
                slas, lambda since, step: self.view.outcome_counts(self.pipeline, since, step)):
            if remaining < 0:
                assert each.success_rate is not None
                self._breach(run_id, each.step, "success_rate", each.success_rate.error_budget,
                             ratio, live=False)

    def _breach(self, run_id: str, step: str | None, kind: Any, limit: float,
                observed: float, *, live: bool) -> None:
        from reliability.sla.monitor import Breach

        run = self._run(run_id)
        with self._lock:
            if (step, kind) in run.breached:
                return
            run.breached.add((step, kind))
        limit_of = self.limits.steps.get(step) if step is not None else None
        severity = limit_of[1] if limit_of is not None else None
        if severity is None:
            slas = self._slas()
            sla = (slas.run if step is None else slas.for_step(step)) if slas else None
            severity = sla.severity if sla is not None else "page"
        details = Breach(kind, self.pipeline, run_id, step, limit, observed, live,
                         severity).details()
        self.bus.publish(Event(kind=EventKind.SLA_BREACHED, pipeline=self.pipeline,
                               run_id=run_id, step=step, error=details["message"],
                               details=details))

    # -- runbooks -------------------------------------------------------------------------
    def _runbook(self, ev: Event) -> None:
        from reliability.sla.monitor import evidence_for, family_for

        run = self._run(ev.run_id)
        family = family_for(ev, run.violated)
        if family is None:
            return
        try:
            rec = self.ledger.get_run(ev.run_id)
            interval = ({"start": rec.interval_start, "end": rec.interval_end}
                        if rec.interval_start and rec.interval_end else None)
        except Exception:  # the runbook goes without the interval
            interval = None
        job = evidence_for(ev, family, faults=list(run.faults), interval=interval,
                           home=str(self.runbook_dir.parent))
        self._render(job, record=True)
        with self._lock:
            run.runbooks.append(job)

    def _render(self, job: Any, *, record: bool) -> None:
        import dataclasses
        import logging

        log = logging.getLogger("reliability.sla")
        try:
            if job.last_good_run is None:
                job = dataclasses.replace(job, last_good_run=self.view.last_good_run(
                    job.pipeline, before=job.run_id))
            written = self._renderer().write(job, self.runbook_dir / job.run_id)
        except Exception as exc:  # a runbook must not fail the step
            log.error("runbook %s for run %s not rendered: %s", job.slug, job.run_id, exc)
            return
        if record:
            self.rendered.extend(p for p in written if p not in self.rendered)
