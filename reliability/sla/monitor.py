"""The SLA monitor: live SLA checks, metrics and runbooks, all driven by lifecycle events.

    monitor = SLAMonitor(load_slas("contracts/reference.sla.yaml"), runner.bus,
                         registry=registry, ledger=runner.ledger,
                         runbooks=RunbookRenderer(["runbooks"]))
    with monitor:
        runner.run(params)

It lives in the runner's process and only subscribes to the bus (the runner knows nothing of
it). A ``STEP_STARTED`` or ``RUN_STARTED`` event arms a timer on one background thread; if the
step or run is still going when its budget or deadline passes, an ``SLA_BREACHED`` event is
published at that moment -- while the step still runs -- not when the run ends. Freshness is
armed from the last success (seeded from the ledger), and the success-rate SLO's error budget
is recomputed from the ledger whenever a run ends. Breaches and failures (contract violation,
lost worker, failed step, unreachable dependency) are rendered to runbooks under
``<home>/runbooks/<run_id>/`` on a second background thread, so the run loop never waits for
disk or templates.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.events import Event, EventBus, EventKind
from reliability.runbooks.evidence import Evidence, LedgerView, iso
from reliability.sla.metrics import PipelineMetrics, is_production
from reliability.sla.spec import SLA, SLAKind, SLASet, format_duration
from reliability.sla.timers import TimerThread

__all__ = ["Breach", "SLAMonitor", "budgets", "deadline_applies", "deadline_of",
           "interval_of", "run_end_breaches"]

log = logging.getLogger("reliability.sla")

_NETWORK_ERRORS = frozenset({
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError",
    "ConnectionAbortedError", "URLError", "TimeoutError", "timeout", "gaierror",
    "RemoteDisconnected", "OSError", "HTTPError", "BrokenPipeError"})
_RUN_END = frozenset({EventKind.RUN_SUCCEEDED, EventKind.RUN_FAILED, EventKind.RUN_CANCELLED})
_STEP_END = frozenset({EventKind.STEP_SUCCEEDED, EventKind.STEP_FAILED,
                       EventKind.STEP_SKIPPED, EventKind.STEP_CANCELLED})


@record(frozen=True, slots=True)
class Breach:
    """One SLA breach, as published in the ``SLA_BREACHED`` event's details."""

    sla: SLAKind
    pipeline: str
    run_id: str
    step: str | None
    limit: float
    observed: float
    live: bool
    severity: str

    def details(self) -> dict[str, Any]:
        scope = f"step {self.step}" if self.step else "run"
        if self.sla == "success_rate":
            limit_text = f"error ratio <= {self.limit:.4g}"
            observed_text = f"error ratio {self.observed:.4g}"
        elif self.sla == "finish_by":
            limit_text, observed_text = f"finish by {iso(self.limit)}", f"at {iso(self.observed)}"
        else:
            limit_text = format_duration(self.limit)
            observed_text = format_duration(self.observed)
        return {"sla": self.sla, "scope": scope, "limit": self.limit,
                "observed": self.observed, "live": self.live, "severity": self.severity,
                "limit_text": limit_text, "observed_text": observed_text,
                "message": f"{self.sla} SLA of {scope} breached: {observed_text} "
                           f"(limit {limit_text})"}


@record
class _Run:
    pipeline: str
    run_id: str
    started: float
    interval: dict[str, str] | None
    deadline: bool = True  # finish_by counts (not for backfills)
    production: bool = True  # not a chaos or explore run: counts toward budgets, freshness
    step_started: dict[str, float] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    violated: set[str] = field(default_factory=set)
    breached: set[tuple[str | None, str]] = field(default_factory=set)
    took: dict[str | None, float] = field(default_factory=dict)  # step (None: run) -> secs
    runbooks: list[Evidence] = field(default_factory=list)  # rewritten when the run ends


class SLAMonitor:
    """Subscribes to ``bus``: metrics, live SLA checks, ``SLA_BREACHED`` events, runbooks.

    ``slas`` is one :class:`SLASet`, several, or None (metrics and runbooks only).
    ``ledger`` (a ``Ledger``, a :class:`LedgerView` or the ledger file's path) gives the last
    good run, seeds freshness and counts outcomes for success-rate SLOs. Runbooks go to
    ``runbook_dir`` (default ``<ledger dir>/runbooks``) when ``runbooks`` is given.
    """

    def __init__(self, slas: SLASet | Iterable[SLASet] | None, bus: EventBus, *,
                 registry: Any = None, metrics: PipelineMetrics | None = None,
                 ledger: Any = None, runbooks: Any = None,
                 runbook_dir: str | Path | None = None) -> None:
        sets = [] if slas is None else [slas] if isinstance(slas, SLASet) else list(slas)
        self.slas: dict[str, SLASet] = {s.pipeline: s for s in sets}
        self.bus = bus
        self.metrics = metrics or PipelineMetrics(registry=registry)
        self.ledger = _ledger_view(ledger)
        self.runbooks = runbooks
        home = self.ledger.path.parent if self.ledger else None
        self.runbook_dir = Path(runbook_dir) if runbook_dir else (
            home / "runbooks" if home else None)
        self.breaches: list[Event] = []
        self.rendered: list[Path] = []
        self.errors: list[str] = []
        self._runs: dict[str, _Run] = {}
        self._exhausted: set[tuple[str, str | None]] = set()
        self._lock = threading.RLock()
        self._timers = TimerThread()
        self._jobs: queue.Queue[Evidence | None] = queue.Queue()
        self._renderer_thread: threading.Thread | None = None
        self._unsubscribe: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> SLAMonitor:
        if self._unsubscribe:
            return self
        self._unsubscribe.append(self.metrics.attach(self.bus))
        self._unsubscribe.append(self.bus.subscribe(self._on_event))
        self._timers.start()
        if self.runbooks is not None and self.runbook_dir is not None:
            self._renderer_thread = threading.Thread(
                target=self._render_loop, name="reliability-runbooks", daemon=True)
            self._renderer_thread.start()
        for sset in self.slas.values():
            self.metrics.declare(sset)
            self._arm_freshness(sset.pipeline, self._seed_last_success(sset.pipeline))
        return self

    def stop(self) -> None:
        """Unsubscribe, stop the timers and finish writing pending runbooks."""
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()
        self._timers.stop()
        if self._renderer_thread is not None:
            self._jobs.put(None)
            self._renderer_thread.join(timeout=30)
            self._renderer_thread = None

    def __enter__(self) -> SLAMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every runbook queued so far is written."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    # -- events -------------------------------------------------------------------------
    def _on_event(self, ev: Event) -> None:
        kind = ev.kind
        if kind is EventKind.RUN_STARTED:
            self._run_started(ev)
        elif kind is EventKind.STEP_STARTED:
            self._step_started(ev)
        elif kind in _STEP_END:
            self._step_ended(ev)
        elif kind in _RUN_END:
            self._run_ended(ev)
        elif kind is EventKind.FAULT_INJECTED:
            with self._lock:
                run = self._runs.get(ev.run_id)
                if run is not None:
                    run.faults.append({"fault": _fault_name(ev.details), "step": ev.step,
                                       "attempt": ev.attempt, **dict(ev.details)})
        elif kind is EventKind.SLA_BREACHED:
            self.breaches.append(ev)
        self._maybe_runbook(ev)

    def _sla(self, pipeline: str, step: str | None) -> SLA | None:
        sset = self.slas.get(pipeline)
        if sset is None:
            return None
        return sset.run if step is None else sset.for_step(step)

    def _run_started(self, ev: Event) -> None:
        interval = interval_of(ev.details)
        with self._lock:
            run = self._runs[ev.run_id] = _Run(
                ev.pipeline, ev.run_id, ev.time, interval, deadline_applies(ev.details),
                is_production(ev.details.get("trigger")))
        sla = self._sla(ev.pipeline, None)
        if sla is None:
            return
        if sla.max_duration is not None:
            limit = sla.max_duration
            self._timers.schedule(ev.time + limit, (ev.run_id, None, "max_duration"),
                                  lambda: self._live_duration(run, None, limit))
        if sla.finish_by is not None and run.deadline:
            due = _deadline(sla, run)
            self.metrics.set_deadline(ev.pipeline, due, ev.run_id)
            self._timers.schedule(due, (ev.run_id, None, "finish_by"),
                                  lambda: self._live_deadline(run, due))

    def _step_started(self, ev: Event) -> None:
        with self._lock:
            run = self._runs.get(ev.run_id)
            if run is None or ev.step is None or ev.step in run.step_started:
                return
            run.step_started[ev.step] = ev.time
        sla = self._sla(ev.pipeline, ev.step)
        if sla is not None and sla.max_duration is not None:
            limit, step = sla.max_duration, ev.step
            self._timers.schedule(ev.time + limit, (ev.run_id, step, "max_duration"),
                                  lambda: self._live_duration(run, step, limit))

    def _step_ended(self, ev: Event) -> None:
        if ev.step is None:
            return
        self._timers.cancel((ev.run_id, ev.step, "max_duration"))
        with self._lock:
            run = self._runs.get(ev.run_id)
            started = run.step_started.get(ev.step) if run else None
            if run is not None and started is not None:
                run.took[ev.step] = ev.time - started
        sla = self._sla(ev.pipeline, ev.step)
        if run is None or started is None or sla is None or sla.max_duration is None:
            return
        if ev.time - started > sla.max_duration:
            self._breach(run, ev.step, "max_duration", sla.max_duration, ev.time - started,
                         live=False)

    def _run_ended(self, ev: Event) -> None:
        run_id = ev.run_id
        self._timers.cancel_where(lambda k: isinstance(k, tuple) and k[0] == run_id)
        with self._lock:
            run = self._runs.pop(run_id, None)
        sla = self._sla(ev.pipeline, None)
        if run is not None and sla is not None:
            due = _deadline(sla, run) if sla.finish_by is not None and run.deadline else None
            for kind, limit, observed in run_end_breaches(sla, run.started, ev.time, due):
                self._breach(run, None, kind, limit, observed, live=False)
        if run is not None and not run.production:
            return  # a chaos or explore run: no freshness, no budget
        if ev.kind is EventKind.RUN_SUCCEEDED:
            self._arm_freshness(ev.pipeline, ev.time)
        if run is not None and ev.kind is not EventKind.RUN_CANCELLED:
            self._check_budgets(run)
        if run is not None and run.runbooks:  # now the outcome and final durations are known
            with self._lock:
                run.took[None] = ev.time - run.started
                jobs, run.runbooks = run.runbooks, []
            outcome = ev.kind.value.removeprefix("run_")
            for job in jobs:
                self._jobs.put(job.settled(outcome, run.took))

    # -- live checks (timer thread) -----------------------------------------------------
    def _live_duration(self, run: _Run, step: str | None, limit: float) -> None:
        with self._lock:
            started = run.started if step is None else run.step_started.get(step)
        if started is not None:
            self._breach(run, step, "max_duration", limit, time.time() - started, live=True)

    def _live_deadline(self, run: _Run, due: float) -> None:
        self._breach(run, None, "finish_by", due, time.time(), live=True)

    def _arm_freshness(self, pipeline: str, last: float | None) -> None:
        sla = self._sla(pipeline, None)
        if sla is None or sla.freshness is None:
            return
        limit = sla.freshness
        since = last if last is not None else time.time()

        def fire() -> None:
            seen = self.metrics.last_success_time(pipeline)
            if seen is not None and seen > since:
                return
            run = _Run(pipeline, f"{pipeline}-stale", since, None)
            self._breach(run, None, "freshness", limit, time.time() - since, live=True)

        self._timers.schedule(since + limit, ("freshness", pipeline), fire)

    def _seed_last_success(self, pipeline: str) -> float | None:
        if self.ledger is None or not self.ledger.path.exists():
            return None  # a new home: no history yet, nothing to seed
        try:
            last = self.ledger.last_success_time(pipeline)
        except Exception as exc:  # a missing/locked ledger must not stop the monitor
            log.warning("cannot read last success of %s from the ledger: %s", pipeline, exc)
            return None
        if last is not None:
            self.metrics.seed_last_success(pipeline, last)
        return last

    def _check_budgets(self, run: _Run) -> None:
        sset = self.slas.get(run.pipeline)
        if sset is None or self.ledger is None:
            return
        ledger = self.ledger
        for sla, ratio, remaining in budgets(
                sset, lambda since, step: ledger.outcome_counts(run.pipeline, since, step)):
            slo = sla.success_rate
            assert slo is not None
            self.metrics.set_budget(run.pipeline, sla.step, remaining)
            key = (run.pipeline, sla.step)
            if remaining >= 0:
                self._exhausted.discard(key)
            elif key not in self._exhausted:
                self._exhausted.add(key)
                self._breach(run, sla.step, "success_rate", slo.error_budget, ratio,
                             live=False)

    def _breach(self, run: _Run, step: str | None, kind: SLAKind, limit: float,
                observed: float, *, live: bool) -> None:
        with self._lock:
            if (step, kind) in run.breached:
                return
            run.breached.add((step, kind))
        sla = self._sla(run.pipeline, step)
        breach = Breach(kind, run.pipeline, run.run_id, step, limit, observed, live,
                        sla.severity if sla else "page")
        details = breach.details()
        self.bus.publish(Event(kind=EventKind.SLA_BREACHED, pipeline=run.pipeline,
                               run_id=run.run_id, step=step, error=details["message"],
                               details=details))

    # -- runbooks -----------------------------------------------------------------------
    def _maybe_runbook(self, ev: Event) -> None:
        if self._renderer_thread is None:
            return
        with self._lock:
            run = self._runs.get(ev.run_id)
            if run is not None and ev.kind is EventKind.CONTRACT_VIOLATED and ev.step:
                run.violated.add(ev.step)
            violated = run.violated if run else set()
            faults = list(run.faults) if run else []
            interval = run.interval if run else None
        family = family_for(ev, violated)
        if family is not None:
            home = str(self.runbook_dir.parent) if self.runbook_dir else None
            job = evidence_for(ev, family, faults=faults, interval=interval, home=home)
            if run is not None:
                with self._lock:
                    run.runbooks.append(job)
            self._jobs.put(job)

    def _render_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._render(job)
            except Exception as exc:
                self.errors.append(f"{job.slug} of run {job.run_id}: {exc}")
                log.error("runbook %s for run %s not rendered: %s", job.slug, job.run_id, exc)
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _render(self, job: Evidence) -> None:
        assert self.runbook_dir is not None
        if self.ledger is not None and job.last_good_run is None:
            try:
                good = self.ledger.last_good_run(job.pipeline, before=job.run_id)
            except Exception as exc:
                log.warning("no last good run for the runbook: %s", exc)
                good = None
            job = dataclasses.replace(job, last_good_run=good)
        written = self.runbooks.write(job, self.runbook_dir / job.run_id)
        self.rendered.extend(p for p in written if p not in self.rendered)  # rewritten: once


def family_for(ev: Event, violated_steps: Iterable[str] = ()) -> str | None:
    """The runbook family an event calls for, or None."""
    kind = ev.kind
    if kind is EventKind.SLA_BREACHED:
        return "stale_pipeline" if ev.details.get("sla") == "freshness" else "sla_breach"
    if kind is EventKind.CONTRACT_VIOLATED:
        return "contract_violation"
    if kind is EventKind.WORKER_LOST:
        return "worker_lost" if ev.step else None
    if kind is EventKind.STEP_FAILED:
        etype = str(ev.details.get("error_type", ""))
        if ev.step in set(violated_steps) or etype == "WorkerLost":
            return None  # its contract_violation / worker_lost runbook says more
        return "dependency_unreachable" if etype in _NETWORK_ERRORS else "step_failed"
    return None


def evidence_for(ev: Event, family: str, *, faults: Iterable[Mapping[str, Any]] = (),
                 interval: Mapping[str, str] | None = None, home: str | None = None
                 ) -> Evidence:
    """The evidence of ``ev`` for a runbook of ``family`` (last good run filled later)."""
    d = ev.details
    return Evidence(
        family=family, pipeline=ev.pipeline, run_id=ev.run_id, step=ev.step,
        attempt=ev.attempt, summary=_summary(family, ev), error=ev.error,
        error_type=d.get("error_type"), occurred_at=iso(ev.time),
        failures=[dict(f) for f in d.get("failures") or ()], faults=[dict(f) for f in faults],
        breach=dict(d) if ev.kind is EventKind.SLA_BREACHED else None,
        interval=dict(interval) if interval else None, home=home)


def _ledger_view(ledger: Any) -> LedgerView | None:
    if ledger is None or isinstance(ledger, LedgerView):
        return ledger
    if isinstance(ledger, str | Path):
        return LedgerView(ledger)
    return LedgerView(ledger.path)  # a runner Ledger: read it on our own connection


def _deadline(sla: SLA, run: _Run) -> float:
    return deadline_of(sla, run.started, run.interval)


def run_end_breaches(sla: SLA, started: float, ended: float, deadline: float | None
                     ) -> list[tuple[SLAKind, float, float]]:
    """What a run that started at ``started`` and ended at ``ended`` breached of its run
    ``sla``: ``(kind, limit, observed)`` for ``max_duration`` and, when ``deadline`` is
    given (see :func:`deadline_applies`), ``finish_by``."""
    found: list[tuple[SLAKind, float, float]] = []
    if sla.max_duration is not None and ended - started > sla.max_duration:
        found.append(("max_duration", sla.max_duration, ended - started))
    if deadline is not None and ended > deadline:
        found.append(("finish_by", deadline, ended))
    return found


def budgets(slas: SLASet, window_counts: Callable[[float, str | None], tuple[int, int]]
            ) -> Iterator[tuple[SLA, float, float]]:
    """``(sla, success ratio, error budget left)`` of each success-rate SLO in ``slas``;
    ``window_counts(since, step)`` is the (succeeded, failed) count of production runs
    (of ``step``, or whole runs for None) since ``since``, as the ledger's
    ``outcome_counts`` gives it. A negative budget is exhausted."""
    now = time.time()
    for sla in slas:
        slo = sla.success_rate
        if slo is None:
            continue
        ok, failed = window_counts(now - slo.window, sla.step)
        ratio, remaining = slo.budget_left(ok, failed)
        yield sla, ratio, remaining


def deadline_of(sla: SLA, started: float, interval: Mapping[str, str] | None) -> float:
    """Unix time by which a run started at ``started`` must finish (``sla.finish_by``)."""
    import datetime as dt

    assert sla.finish_by is not None
    where = sla.finish_by.relative_to
    if where == "run_start" or interval is None:
        base = started
    else:
        key = "end" if where == "interval_end" else "start"
        base = dt.datetime.fromisoformat(interval[key]).timestamp()
    return base + sla.finish_by.offset


def deadline_applies(details: Mapping[str, Any]) -> bool:
    """Whether a run's ``finish_by`` deadline counts, from its ``RUN_STARTED`` details.

    A backfill reprocesses intervals whose deadlines passed long ago: holding it to them
    would report a breach for every interval the moment it starts. Its ``max_duration``
    still counts.
    """
    return not str(details.get("trigger") or "").startswith("backfill")


def interval_of(details: Mapping[str, Any]) -> dict[str, str] | None:
    """``{"start", "end"}`` from a ``RUN_STARTED`` event's ``interval`` detail, or None."""
    text = details.get("interval")
    return dict(zip(("start", "end"), str(text).split("/"), strict=False)) if text else None


def _fault_name(details: Mapping[str, Any]) -> str:
    return str(details.get("fault") or details.get("kind") or details.get("type") or "unknown")


def _summary(family: str, ev: Event) -> str:
    where = f"step {ev.step!r}" if ev.step else "the run"
    if family in ("sla_breach", "stale_pipeline"):
        return f"Pipeline {ev.pipeline!r}: {ev.details.get('message', 'SLA breached')}."
    if family == "contract_violation":
        n = len(ev.details.get("failures") or ())
        return f"Pipeline {ev.pipeline!r}: {where} broke its contract ({n} failed check(s))."
    if family == "worker_lost":
        return f"Pipeline {ev.pipeline!r}: the worker running {where} died ({ev.error})."
    return f"Pipeline {ev.pipeline!r}: {where} failed: {ev.error}."
