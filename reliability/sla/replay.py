"""Lifecycle events read back from the run ledger.

The ledger records every event except ``step_started`` and ``step_succeeded``; a committed
step is rebuilt from the ``commits`` and ``steps`` tables. Replaying them onto an
:class:`~reliability.events.EventBus` lets a separate long-lived process (``reliability sla
serve``) keep the same event-fed metrics as the runner, and lets ``reliability runbooks
render --run`` rebuild a run's evidence.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from reliability._record import record
from reliability.errors import LedgerError
from reliability.events import Event, EventBus, EventKind
from reliability.runbooks.evidence import LedgerView

__all__ = ["BudgetGauge", "DeadlineGauge", "LedgerFeed", "read_events"]


@record
class _Cursor:
    event_id: int = 0
    commit_rowid: int = 0


def _event(row: Mapping[str, Any], pipeline: str) -> Event | None:
    try:
        kind = EventKind(row["kind"])
    except ValueError:
        return None
    details: dict[str, Any] = json.loads(row["details"] or "{}")
    return Event(kind=kind, pipeline=pipeline, run_id=row["run_id"], step=row["step"],
                 attempt=row["attempt"], time=row["time"], duration=details.pop("duration", None),
                 error=details.pop("error", None), details=details)


def read_events(view: LedgerView, cursor: _Cursor | None = None,
                run_id: str | None = None) -> list[Event]:
    """Events after ``cursor`` (advanced in place), oldest first, with committed steps."""
    cur = cursor or _Cursor()
    out: list[tuple[float, int, Event]] = []
    rows, commits = view.changes_since(cur.event_id, cur.commit_rowid, run_id)
    for row in rows:
        cur.event_id = max(cur.event_id, row["id"])
        ev = _event(row, row["pipeline"])
        if ev is not None:
            out.append((ev.time, 1, ev))
    for c in commits:
        cur.commit_rowid = max(cur.commit_rowid, c["rid"])
        duration = c["committed_at"] - c["started_at"] if c["started_at"] else None
        out.append((c["committed_at"], 0, Event(
            kind=EventKind.STEP_SUCCEEDED, pipeline=c["pipeline"], run_id=c["run_id"],
            step=c["step"], attempt=c["attempts"], time=c["committed_at"], duration=duration,
            details={"output_hash": c["output_hash"], "replayed": True})))
    out.sort(key=lambda t: (t[0], t[1]))
    return [ev for _, _, ev in out]


class LedgerFeed:
    """Polls a ledger and publishes its new events on ``bus`` (from the beginning)."""

    def __init__(self, view: LedgerView, bus: EventBus, *, interval: float = 1.0) -> None:
        self.view = view
        self.bus = bus
        self.interval = interval
        self._cursor = _Cursor()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reliability-ledger-feed",
                                        daemon=True)

    def poll(self) -> int:
        """Publish what is new; return how many events."""
        if not self.view.path.exists():
            return 0
        events = read_events(self.view, self._cursor)
        for ev in events:
            self.bus.publish(ev)
        return len(events)

    def start(self) -> LedgerFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, LedgerError):  # locked: next tick
                self.poll()
            self._stop.wait(self.interval)


class DeadlineGauge:
    """Sets ``reliability_run_deadline_timestamp_seconds`` from replayed ``RUN_STARTED``
    events and the pipelines' ``finish_by`` SLAs.

    In the runner's process the SLA monitor sets it; a separate exporter (``reliability sla
    serve``) has no monitor, and without this the deadline alert could never fire there.
    """

    def __init__(self, slas: Any, metrics: Any) -> None:
        sets = [slas] if hasattr(slas, "pipeline") else list(slas)
        self.runs = {s.pipeline: s.run for s in sets if s.run and s.run.finish_by}
        self.metrics = metrics

    def attach(self, bus: EventBus) -> Any:
        return bus.subscribe(self, kinds=[EventKind.RUN_STARTED])

    def __call__(self, ev: Event) -> None:
        from reliability.sla.monitor import deadline_applies, deadline_of, interval_of

        sla = self.runs.get(ev.pipeline)
        if (ev.kind is EventKind.RUN_STARTED and sla is not None
                and deadline_applies(ev.details)):
            self.metrics.set_deadline(ev.pipeline,
                                      deadline_of(sla, ev.time, interval_of(ev.details)),
                                      ev.run_id)


class BudgetGauge:
    """Sets ``reliability_error_budget_remaining_ratio`` of every success-rate SLO from the
    ledger whenever a replayed run or step reaches a final outcome (and once at start).

    The runner's SLA monitor does the same in its own process; a separate exporter needs
    this, or the dashboard's error-budget panel stays empty there.
    """

    def __init__(self, slas: Any, metrics: Any, view: LedgerView) -> None:
        sets = [slas] if hasattr(slas, "pipeline") else list(slas)
        self.slos = [(s.pipeline, sla) for s in sets for sla in s
                     if sla.success_rate is not None]
        self.metrics = metrics
        self.view = view

    def attach(self, bus: EventBus) -> Any:
        return bus.subscribe(self, kinds=[EventKind.RUN_SUCCEEDED, EventKind.RUN_FAILED])

    def __call__(self, ev: Event) -> None:
        self.refresh(ev.pipeline)

    def refresh(self, pipeline: str | None = None, now: float | None = None) -> None:
        """Recompute the budgets of ``pipeline`` (default: all) over their windows."""
        import time

        at = time.time() if now is None else now
        for name, sla in self.slos:
            if pipeline is not None and name != pipeline:
                continue
            slo = sla.success_rate
            with contextlib.suppress(OSError, LedgerError):
                ok, failed = self.view.outcome_counts(name, at - slo.window, sla.step)
                self.metrics.set_budget(name, sla.step, slo.budget_left(ok, failed)[1])
