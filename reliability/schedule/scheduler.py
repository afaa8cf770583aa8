"""The scheduler: every fire becomes at most one run per (pipeline, data interval).

    sched = Scheduler([Schedule("daily", "reference", CronTimetable("30 2 * * *",
                                 "Europe/Berlin"), catchup=Catchup(CatchupPolicy.ALL))],
                      execute=RunnerExecutor(".reliability"), home=".reliability",
                      now=clock)
    sched.tick()                      # run what is due at clock() per the catch-up policy
    sched.trigger("daily")            # event/HTTP/CLI: run the latest complete interval
    sched.start()                     # live: APScheduler wakes tick() at each fire time

Planning takes the injected ``now`` function; only :class:`TriggerSource` (APScheduler) reads
the real clock, to know when to wake up. Runs are executed by an ``execute`` function taking a
:class:`RunRequest` -- :class:`RunnerExecutor` runs the pipeline with the local Runner.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.errors import DefinitionError, ReliabilityError
from reliability.pipeline import DataInterval
from reliability.schedule.catchup import Catchup, plan_catchup
from reliability.schedule.intervals import (
    Timetable,
    check_range,
    freshness_threshold,
    utc_key,
)
from reliability.schedule.state import Reprocess, ScheduleStore

__all__ = ["FileWatch", "RunOutcome", "RunRequest", "Schedule", "Scheduler",
           "TriggerOutcome"]

log = logging.getLogger("reliability.schedule")

Clock = Callable[[], dt.datetime]


@record(frozen=True, slots=True)
class FileWatch:
    """Fire when a file matching ``glob`` appears under ``path``.

    ``partition`` is a strptime pattern found in the file's relative path (``dt=%Y-%m-%d``);
    the run is for the interval containing that instant. Without it, the latest complete
    interval at the time of the event runs.
    """

    path: Path
    glob: str = "*"
    partition: str | None = None
    poll: float = 1.0


@record(frozen=True, slots=True)
class Schedule:
    """When a pipeline runs and over which data intervals."""

    name: str
    pipeline: str                      # the pipeline's name: the ledger key
    timetable: Timetable
    catchup: Catchup = field(default_factory=Catchup)
    params: Mapping[str, Any] = field(default_factory=dict)
    ref: str | None = None             # module:attr to load it, when it differs from name
    fire_on_time: bool = True          # False: intervals come from the timetable, fires
    watch: FileWatch | None = None     #        only from events (files, HTTP, CLI)
    http: bool = True
    missed_for_stale: int = 2

    def freshness_threshold(self) -> float | None:
        """Seconds after which the pipeline's output is stale (``missed_for_stale`` misses).

        None when the timetable has fewer intervals than that (a one-off ``at`` schedule, or
        a short ``start``..``end``): its data never goes stale by missed intervals.
        """
        try:
            return freshness_threshold(self.timetable, self.missed_for_stale,
                                       grace=self.catchup.grace)
        except DefinitionError:
            return None


@record(frozen=True, slots=True)
class RunRequest:
    schedule: str
    pipeline: str
    interval: DataInterval
    run_id: str
    resume: bool
    trigger: str
    params: Mapping[str, Any] = field(default_factory=dict)
    ref: str | None = None


@record(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    status: str  # succeeded | failed | cancelled
    error: str | None = None


Execute = Callable[[RunRequest], RunOutcome]


@record(slots=True)
class TriggerOutcome:
    """What one trigger did. ``started`` False: a no-op, and ``reason`` says why."""

    schedule: str
    interval: DataInterval | None
    started: bool
    reason: str
    run_id: str | None = None
    status: str | None = None
    future: Future[RunOutcome] | None = None

    def wait(self, timeout: float | None = None) -> TriggerOutcome:
        if self.future is not None:
            out = self.future.result(timeout)
            self.status = out.status
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "started": self.started, "reason": self.reason,
                "interval": self.interval.key() if self.interval else None,
                "run_id": self.run_id, "status": self.status}


class Scheduler:
    """Turns fires and events into claimed, recorded, bounded-concurrency runs."""

    def __init__(self, schedules: Sequence[Schedule], *, execute: Execute,
                 home: str | Path | None = None, store: ScheduleStore | None = None,
                 now: Clock, max_active: int = 4) -> None:
        names = [s.name for s in schedules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(f"schedule names {dupes} are used twice. Fix: rename them")
        if store is None and home is None:
            raise DefinitionError("Scheduler needs home= (ledger directory) or store=")
        self.schedules = {s.name: s for s in schedules}
        self.execute = execute
        self.store = store or ScheduleStore.at_home(Path(home or "."))
        self.now = now
        self.pool = ThreadPoolExecutor(max_workers=max_active, thread_name_prefix="schedule")
        # Runs wait in a queue per schedule and reach the pool only when their schedule has
        # a free slot: a backlog of one schedule never holds the threads of the others.
        self._queues: dict[str, deque[tuple[RunRequest, Future[RunOutcome]]]] = {
            s.name: deque() for s in schedules}
        self._running = dict.fromkeys(self.schedules, 0)
        self._queue_lock = threading.Lock()
        self._closing = False  # shut down without waiting: close the pool once idle
        self._watermark: dict[str, dt.datetime | None] = {}
        self._listeners: list[Callable[[TriggerOutcome], None]] = []
        self._source: Any = None
        self._watchers: list[Any] = []
        self._pending: dict[Future[RunOutcome], RunRequest] = {}
        self._stopping = threading.Event()

    def get(self, name: str) -> Schedule:
        try:
            return self.schedules[name]
        except KeyError:
            raise DefinitionError(
                f"no schedule named {name!r}. Fix: use one of {sorted(self.schedules)}"
            ) from None

    def on_trigger(self, fn: Callable[[TriggerOutcome], None]) -> None:
        """Call ``fn`` with every :class:`TriggerOutcome` (metrics, logs)."""
        self._listeners.append(fn)

    # -- planning ----------------------------------------------------------------------
    def plan(self, name: str) -> Any:
        """The :class:`CatchupPlan` for schedule ``name`` at ``now()``."""
        s = self.get(name)
        now = self.now()
        since = self._watermark.get(name) or s.timetable.start or \
            self.store.earliest_start(s.pipeline, schedule=name)
        rows = self.store.rows_between(s.pipeline, since, now) if since else {}
        if since is None:
            last = s.timetable.latest_complete(now)
            if last is not None:
                row = self.store.get(s.pipeline, last)
                rows = {(utc_key(last.start), utc_key(last.end)): row} if row else {}
        live = frozenset(k for k, r in rows.items() if self.store.is_live(r))
        return plan_catchup(s.timetable, s.catchup, now=now, since=since, rows=rows, live=live)

    def next_fires(self, name: str, count: int = 3) -> list[tuple[dt.datetime, DataInterval]]:
        """The next ``count`` fire times after ``now()`` with the interval each one runs."""
        s = self.get(name)
        out: list[tuple[dt.datetime, DataInterval]] = []
        t = self.now()
        while len(out) < count:
            f = s.timetable.next_fire(t)
            if f is None:
                break
            iv = s.timetable.interval_ending_at(f)
            if iv is not None:
                out.append((f, iv))
            t = f
        return out

    # -- firing ------------------------------------------------------------------------
    def tick(self, names: Sequence[str] | None = None, *, wait: bool = True
             ) -> list[TriggerOutcome]:
        """Run what is due now for each time-fired schedule, per its catch-up policy."""
        outcomes: list[TriggerOutcome] = []
        for name in names or [n for n, s in self.schedules.items() if s.fire_on_time]:
            s = self.schedules[name]
            plan = self.plan(name)
            if plan.skip:
                n = self.store.mark_skipped(s.pipeline, plan.skip, schedule=name,
                                            reason=f"missed; catch-up policy "
                                                   f"{s.catchup.policy.value}")
                log.info("schedule %s: %d missed interval(s) skipped by policy %s", name, n,
                         s.catchup.policy.value)
            for iv in plan.run:
                outcomes.append(self._fire(s, iv, "schedule", Reprocess.NONE))
            self._watermark[name] = plan.watermark
        if wait:
            for o in outcomes:
                o.wait()
        return outcomes

    def trigger(self, name: str, interval: DataInterval | None = None, *,
                source: str = "cli", reprocess: Reprocess = Reprocess.NONE,
                wait: bool = False) -> TriggerOutcome:
        """An event asks for a run of ``interval`` (default: the latest complete one)."""
        s = self.get(name)
        if interval is not None:
            interval = self._on_timetable(s, interval)
        iv = interval or s.timetable.latest_complete(self.now())
        if iv is None:
            out = TriggerOutcome(name, None, False,
                                 f"schedule {name!r} has no complete interval yet at "
                                 f"{self.now().isoformat()}")
            self._notify(out)
            return out
        now = self.now()
        if s.fire_on_time and iv.end > now:
            # its data is not complete; running it now would also mark it done, and its
            # own fire would then skip the part of it that arrives later
            out = TriggerOutcome(
                name, iv, False,
                f"interval {iv.key()} has not ended (it ends at {iv.end.isoformat()}, now "
                f"is {now.isoformat()}); not run. Fix: trigger it after it ends, or use "
                "fire_on: events for a schedule whose data says when it is complete")
            self._notify(out)
            return out
        out = self._fire(s, iv, source, reprocess)
        return out.wait() if wait else out

    @staticmethod
    def _on_timetable(s: Schedule, interval: DataInterval) -> DataInterval:
        """``interval`` in UTC if it is one of the schedule's data intervals, else an error:
        an interval cut differently would overlap others and run their data twice."""
        iv = interval.to_utc()
        try:
            check_range(iv.start, "interval start")
            check_range(iv.end, "interval end")
            tt = s.timetable
            is_fire = tt.next_fire(iv.end - dt.timedelta(microseconds=1)) == iv.end
            own = tt.interval_ending_at(iv.end) if is_fire else None
        except OverflowError:
            own = None
        if own != iv:
            near = s.timetable.interval_containing(iv.start)
            hint = f"e.g. {near.key()}" if near is not None else "see `reliability schedule list`"
            raise DefinitionError(
                f"interval {interval.key()} is not a data interval of schedule {s.name!r} "
                f"({s.timetable.describe()}). Fix: give one of its intervals, {hint}")
        return iv

    def _fire(self, s: Schedule, iv: DataInterval, source: str, reprocess: Reprocess
              ) -> TriggerOutcome:
        if self._closing:  # set by shutdown, with or without cancel
            out = TriggerOutcome(s.name, iv, False, "the scheduler is shutting down; not run")
            self._notify(out)
            return out
        claim = self.store.claim(s.pipeline, iv, schedule=s.name, trigger=source,
                                 reprocess=reprocess)
        if not claim.acquired:
            log.info("schedule %s: %s", s.name, claim.reason)  # listeners report it
            out = TriggerOutcome(s.name, iv, False, claim.reason, claim.run_id)
            self._notify(out)
            return out
        assert claim.run_id is not None
        req = RunRequest(s.name, s.pipeline, iv, claim.run_id, claim.resume, source,
                         s.params, s.ref)
        fut: Future[RunOutcome] = Future()
        self._pending[fut] = req
        fut.add_done_callback(lambda f: self._pending.pop(f, None))
        with self._queue_lock:
            self._queues[s.name].append((req, fut))
        self._dispatch(s.name)
        out = TriggerOutcome(s.name, iv, True, claim.reason, claim.run_id, future=fut)
        self._notify(out)
        return out

    def _dispatch(self, name: str) -> None:
        """Hand queued runs of schedule ``name`` to the pool while it has free slots."""
        limit = self.schedules[name].catchup.max_active
        unsent: list[tuple[RunRequest, Future[RunOutcome]]] = []
        with self._queue_lock:
            while self._queues[name] and self._running[name] < limit:
                req, fut = self._queues[name].popleft()
                self._running[name] += 1
                try:
                    self.pool.submit(self._run_queued, req, fut)
                except RuntimeError:  # the pool is shut down: the run never starts
                    self._running[name] -= 1
                    unsent.append((req, fut))
        for req, fut in unsent:  # outside the lock: done-callbacks may trigger again
            if fut.set_running_or_notify_cancel():
                fut.set_result(self._never_started(req))

    def _close_when_idle(self) -> None:
        with self._queue_lock:
            idle = self._closing and not any(self._queues.values()) \
                and not any(self._running.values())
        if idle:
            self.pool.shutdown(wait=False)

    def _run_queued(self, req: RunRequest, fut: Future[RunOutcome]) -> None:
        try:
            if not fut.set_running_or_notify_cancel():
                return  # cancelled while queued (shutdown recorded it)
            try:
                result = (self._never_started(req) if self._stopping.is_set()
                          else run_claimed(self.store, self.execute, req))
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
        finally:
            with self._queue_lock:
                self._running[req.schedule] -= 1
            self._dispatch(req.schedule)
            self._close_when_idle()

    def _never_started(self, req: RunRequest) -> RunOutcome:
        why = "scheduler stopped before the run began"
        self.store.finish(req.pipeline, req.interval, "cancelled", run_id=req.run_id,
                          error=why)
        return RunOutcome(req.run_id, "cancelled", why)

    def _notify(self, out: TriggerOutcome) -> None:
        for fn in self._listeners:
            try:
                fn(out)
            except Exception:  # a broken listener never breaks scheduling
                log.exception("trigger listener %r failed", fn)

    # -- live ----------------------------------------------------------------------------
    def start(self) -> None:
        """Catch up, then fire live: APScheduler for time, watchers for files."""
        from reliability.schedule.triggers import FileWatcher, TriggerSource

        self.tick(wait=False)
        self._source = TriggerSource()
        for s in self.schedules.values():
            if s.fire_on_time:
                self._source.add(s.name, s.timetable, self._wake(s.name))
            if s.watch is not None:
                w = FileWatcher(s.watch, self._file_fire(s.name), s.timetable, self.now)
                w.start()
                self._watchers.append(w)
        self._source.start()

    def _wake(self, name: str) -> Callable[[], None]:
        def wake() -> None:
            try:
                self.tick([name], wait=False)
            except ReliabilityError:
                log.exception("schedule %s: tick failed", name)
        return wake

    def _file_fire(self, name: str) -> Callable[[DataInterval | None, str], None]:
        def fire(iv: DataInterval | None, source: str) -> None:
            self.trigger(name, iv, source=source)
        return fire

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        """Stop firing. ``cancel``: runs waiting for a slot end 'cancelled' unstarted, runs
        in progress are cancelled through ``execute.cancel()`` (if it has one) -- both are
        resumed by the next start -- instead of being waited for to the end."""
        with self._queue_lock:
            self._closing = True  # no new runs; queued ones run unless cancelled
        for w in self._watchers:
            w.stop()
        if self._source is not None:
            self._source.shutdown()
        if cancel:
            self._stopping.set()
            for fut, req in list(self._pending.items()):
                if fut.cancel():
                    self._never_started(req)
            stop_runs = getattr(self.execute, "cancel", None)
            while stop_runs is not None and wait and self._pending:
                stop_runs()  # again until done: a run may start after an earlier call
                futures_wait(list(self._pending), timeout=0.2)
        if wait:
            while self._pending:  # queued runs reach the pool as slots free up
                futures_wait(list(self._pending), timeout=0.2)
            self.pool.shutdown(wait=True)
            close = getattr(self.execute, "close", None)
            if close is not None:  # the runs' monitors and metrics servers
                close()
            return
        self._close_when_idle()  # else the last queued run closes the pool


def run_claimed(store: ScheduleStore, execute: Execute, req: RunRequest) -> RunOutcome:
    """Execute a claimed interval and record how it ended (an exception is a failure)."""
    try:
        out = execute(req)
    except BaseException as exc:
        final = "failed" if isinstance(exc, Exception) else "cancelled"
        store.finish(req.pipeline, req.interval, final, run_id=req.run_id,
                     error=f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, Exception):
            raise
        log.exception("run %s of %s failed to execute", req.run_id, req.interval.key())
        return RunOutcome(req.run_id, "failed", f"{type(exc).__name__}: {exc}")
    store.finish(req.pipeline, req.interval, out.status, run_id=out.run_id, error=out.error)
    return out
