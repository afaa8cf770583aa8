"""The local run loop: dispatch ready steps to supervised workers, retry, time out, commit.

One thread waits on the executor (for the local one: one ``multiprocessing.connection.wait``
over worker pipes, worker sentinels and a wake-up pipe). The loop owns retries, backoff,
deadlines, commits and the ledger; the executor only runs attempts. Everything it does is
recorded in the ledger and published on the bus.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from reliability._record import record
from reliability.errors import DefinitionError, LedgerError, RunCancelled, RunError, StepFailed
from reliability.events import Event, EventBus, EventKind
from reliability.pipeline import DataInterval, Pipeline, StepHook
from reliability.pipeline import code_version as pipeline_code_version
from reliability.runner.executor import Executor, Outcome, make_executor
from reliability.runner.ledger import Ledger, RunRecord
from reliability.runner.store import ArtifactStore, Store
from reliability.runner.worker import Result, Task
from reliability.runs import (
    AttemptStatus,
    RunStatus,
    StepStatus,
    Trigger,
    ledger_path,
    new_run_id,
    params_dict,
    run_key,
)

__all__ = ["RunResult", "Runner", "default_home", "new_run_id"]


def default_home() -> Path:
    return Path(os.environ.get("RELIABILITY_HOME", ".reliability"))


@record(frozen=True, slots=True)
class RunResult:
    """What a finished run produced. ``outputs`` maps step -> committed sha256."""

    run_id: str
    pipeline: str
    status: RunStatus
    outputs: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    resumed: bool = False
    ledger: Path | None = None
    store: Path | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def raise_for_status(self) -> RunResult:
        if self.status == RunStatus.CANCELLED:
            raise RunCancelled(f"run {self.run_id} was cancelled; resume it with "
                               f"`reliability resume {self.run_id}`", run_id=self.run_id)
        if self.failed:
            step, err = next(iter(self.failed.items()))
            raise StepFailed(f"run {self.run_id}: step {step!r} failed: {err}",
                             run_id=self.run_id, step=step)
        return self


_ACTIVE: set[tuple[str, str]] = set()  # (ledger file, run id) executing in this process
_ACTIVE_LOCK = threading.Lock()


class Runner:
    """Runs a :class:`Pipeline` on local supervised workers.

    ``home`` holds ``ledger.db`` and the artifact ``store/``. ``hooks`` run inside workers
    around each step (contracts, chaos); ``bus`` carries lifecycle events to subscribers.
    """

    def __init__(self, pipeline: Pipeline, *, home: str | Path | None = None,
                 workers: int | None = None, bus: EventBus | None = None,
                 hooks: Sequence[StepHook] = (), code_version: str | None = None,
                 ledger: Ledger | None = None, seed: int | None = None,
                 store: Store | None = None,
                 before_run: Iterable[Callable[[Runner, str], None]] = (),
                 executor: str | Executor | None = None, scheduler: str | None = None,
                 environment: str | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or workers < 1):
            raise DefinitionError(f"workers={workers!r} must be at least 1. "
                                  "Fix: pass --workers 1 or more, or leave it out")
        self.pipeline = pipeline
        self.order = pipeline.validate()
        self.home = Path(home) if home is not None else default_home()
        self.store: Store = store if store is not None else ArtifactStore(self.home / "store")
        self.ledger = ledger if ledger is not None else Ledger(ledger_path(self.home))
        self.bus = bus if bus is not None else EventBus()
        self.hooks = list(hooks)
        self.workers = workers or min(len(self.order), max(2, os.cpu_count() or 2))
        self.code_version = code_version or pipeline_code_version(pipeline)
        self.rng = random.Random(seed)
        self.before_run = list(before_run)
        self.executor = executor
        self.scheduler = scheduler
        self.environment = environment
        self._runs: set[str] = set()  # run ids this runner executed: it records their events
        self._unsubscribe_ledger = self.bus.subscribe(self._record_event)
        self._cancel_signal: int | None = None
        self._loop: _Loop | None = None
        self._state_lock = threading.Lock()
        self._starting = 0  # run()/resume() calls that have not built their loop yet
        self._cancel_pending = False

    def close(self) -> None:
        self._unsubscribe_ledger()

    # -- public API -------------------------------------------------------------------
    def run(self, params: Mapping[str, Any] | Any = None, *, interval: DataInterval | None = None,
            run_id: str | None = None, resume: bool = True,
            trigger: Trigger | str | None = None, source: str | None = None) -> RunResult:
        """Run the pipeline; resume the unfinished run with the same key if ``resume``.

        ``trigger`` says why the run exists (:class:`~reliability.runs.Trigger`; manual
        by default) and ``source`` which schedule, experiment or trigger started it.
        """
        with self._entering():
            return self._run(params, interval, run_id, resume, Trigger.parse(trigger), source)

    @contextlib.contextmanager
    def _entering(self) -> Iterator[None]:
        """Count a run()/resume() call until its loop exists, so that a cancel() arriving in
        between is kept for it rather than lost."""
        with self._state_lock:
            self._starting += 1
        try:
            yield
        finally:
            with self._state_lock:
                self._starting -= 1
                if not self._starting:
                    self._cancel_pending = False

    def _run(self, params: Any, interval: DataInterval | None, run_id: str | None,
             resume: bool, trigger: Trigger, source: str | None) -> RunResult:
        if run_id is not None:
            _check_run_id(run_id)
        p = self.pipeline.make_params(params)
        pdict = params_dict(p)
        if interval is not None:
            interval = interval.to_utc()
        key = run_key(self.pipeline.name, pdict, interval, trigger)
        if resume and run_id is not None:
            prev = self._existing(run_id)
            if prev is not None:
                return self._resume(prev.run_id)
        # find-or-create in one ledger transaction: two runners started at the same moment
        # agree on one run (the second is refused while the first runs it)
        rec, created = self.ledger.open_run(
            run_id if run_id is not None else new_run_id(self.pipeline.name),
            self.pipeline.name, key, pdict, self.order, code_version=self.code_version,
            interval=(interval.start.isoformat(), interval.end.isoformat()) if interval else None,
            trigger=trigger, trigger_source=source, environment=self.environment,
            reuse_open=resume)
        if not created:
            return self._resume(rec.run_id)
        return self._execute(rec, p, resumed=False)

    def cancel(self) -> None:
        """Stop the current run as SIGINT would (safe to call from another thread).

        A run that is still starting (between ``run()`` and its first step) is cancelled as
        soon as it can be; with no run in progress this does nothing.
        """
        with self._state_lock:
            loop = self._loop
            if loop is None and self._starting:
                self._cancel_pending = True
        if loop is not None:
            loop.request_cancel(signal.SIGINT)

    def _existing(self, run_id: str) -> RunRecord | None:
        try:
            rec = self.ledger.get_run(run_id)
        except LedgerError:
            return None
        return rec if rec.run_id == run_id else None  # a prefix names another run

    def resume(self, run_id: str) -> RunResult:
        """Finish an interrupted run: committed steps are kept, the rest run again."""
        with self._entering():
            return self._resume(run_id)

    def _resume(self, run_id: str) -> RunResult:
        rec = self.ledger.get_run(run_id)
        if rec.pipeline != self.pipeline.name:
            raise LedgerError(f"run {run_id} belongs to pipeline {rec.pipeline!r}, not "
                              f"{self.pipeline.name!r}. Fix: load the right pipeline")
        if rec.status == RunStatus.SUCCEEDED and all(
                self.store.intact(s["output_hash"]) for s in self.ledger.steps(run_id)
                if s["output_hash"]):
            return self._result_from_ledger(rec, resumed=True)
        # unfinished, or a succeeded run whose outputs were damaged since: redo what is not
        # intact (corrupt objects are moved aside by the check)
        return self._execute(rec, self.pipeline.make_params(rec.params), resumed=True)

    # -- the loop ---------------------------------------------------------------------
    def _execute(self, rec: RunRecord, params: Any, *, resumed: bool) -> RunResult:
        active = (str(self.ledger.path.resolve()), rec.run_id)
        with _ACTIVE_LOCK:
            holder = os.getpid() if active in _ACTIVE else None
            if holder is None:
                holder = self.ledger.claim_run(rec.run_id)
            if holder is not None:
                raise RunError(f"run {rec.run_id} is being run by live process {holder}; "
                               "never two runners on one run. Fix: wait for it or stop it",
                               run_id=rec.run_id)
            _ACTIVE.add(active)
        self._runs.add(rec.run_id)
        try:
            interval = (DataInterval.parse(f"{rec.interval_start}/{rec.interval_end}")
                        if rec.interval_start and rec.interval_end else None)
            loop = _Loop(self, rec, params, interval, resumed)
            with self._state_lock:
                self._loop = loop
                if self._cancel_pending:
                    self._cancel_pending = False
                    loop.request_cancel(signal.SIGINT)
            for fn in self.before_run:  # a cancel() from here on is not lost
                fn(self, rec.run_id)
            return loop.run()
        except Exception as exc:  # a bug or a broken disk: never leave the run 'running'
            with contextlib.suppress(Exception):
                self.ledger.finish_run(rec.run_id, RunStatus.FAILED,
                                       f"runner error: {type(exc).__name__}: {exc}")
            raise
        finally:
            with self._state_lock:
                self._loop = None
            with _ACTIVE_LOCK:
                _ACTIVE.discard(active)

    def _result_from_ledger(self, rec: RunRecord, resumed: bool) -> RunResult:
        steps = self.ledger.steps(rec.run_id)
        return RunResult(
            run_id=rec.run_id, pipeline=rec.pipeline, status=rec.status,
            outputs={s["step"]: s["output_hash"] for s in steps if s["output_hash"]},
            failed={s["step"]: s["error"] or "" for s in steps
                    if s["status"] == StepStatus.FAILED},
            skipped=tuple(s["step"] for s in steps
                          if s["status"] == StepStatus.UPSTREAM_FAILED),
            resumed=resumed, ledger=self.ledger.path, store=self.store.root,
            duration=rec.duration or 0.0)

    def _record_event(self, ev: Event) -> None:
        # several runners may share one bus (parallel runs of a schedule): each records
        # the events of the runs it executes, so each event is written once
        if ev.kind in _AUDITED and ev.run_id in self._runs:
            self.ledger.record(ev)


# step starts and successes are rows of their own (attempts, commits); OUTPUT_LOST is
# written by the ledger itself in the transaction that releases the commit
_AUDITED = frozenset(EventKind) - {EventKind.STEP_STARTED, EventKind.STEP_SUCCEEDED,
                                   EventKind.OUTPUT_LOST}


_QUEUE_DEPTH = 3  # attempts queued ahead along a chain of dependent steps (``follow``)

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}")


def _check_run_id(run_id: str) -> None:
    """A run id names directories in the store: no separators, no ``..``, no markup."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise DefinitionError(
            f"run id {run_id!r} must be 1-200 letters, digits and . _ : @ + - (starting "
            "with a letter or digit, no '..'). Fix: pick such an id, or leave it out for a "
            "fresh one")


@record(slots=True)
class _Running:
    task: Task
    started: float
    deadline: float | None
    worker: str | None


@record(slots=True)
class _Queued:
    """An attempt queued to start on the worker of a running attempt of a step it depends
    on, the moment that one commits (executors with ``follow``)."""

    task: Task
    worker: str | None


class _Loop:
    """State of one execution of a run (fresh or resumed)."""

    def __init__(self, runner: Runner, rec: RunRecord, params: Any,
                 interval: DataInterval | None, resumed: bool) -> None:
        self.r = runner
        self.rec = rec
        self.run_id = rec.run_id
        self.params = params
        self.interval = interval
        self.resumed = resumed
        self.pipe = runner.pipeline
        self.outputs: dict[str, tuple[str, str]] = {}
        self.failed: dict[str, str] = {}
        self.skipped: list[str] = []
        self.passed: dict[str, str] = {}  # step -> why it is skipped (not run, not failed)
        self.attempt_no: dict[str, int] = {}  # ledger attempt numbers, across resumes
        self.tries: dict[str, int] = {}  # attempts in this execution: the retry budget
        self.waiting: dict[str, int] = {}
        self.children: dict[str, list[str]] = {s: [] for s in self.pipe.steps}
        self.ready: deque[str] = deque()
        self.retries: list[tuple[float, str]] = []
        self.running: dict[int, _Running] = {}  # id(task) -> attempt in flight
        self.queued: dict[int, _Queued] = {}  # id(task) of a running attempt -> what follows
        self.following: set[str] = set()  # steps queued behind a running attempt
        self.follow: Callable[..., bool] | None = None
        self.cancelled = False
        self.loop_done = False
        self.late_signal: int | None = None  # arrived after the last step ended
        self.executor: Executor | None = None

    def request_cancel(self, signum: int) -> None:
        self.cancelled = True
        self.r._cancel_signal = signum
        if self.executor is not None:
            self.executor.wake()

    def _emit(self, kind: EventKind, step: str | None = None, **kw: Any) -> None:
        self.r.bus.publish(Event(kind=kind, pipeline=self.pipe.name, run_id=self.run_id,
                                 step=step, **kw))

    def _prepare(self) -> None:
        led = self.r.ledger
        prior = {s["step"]: s for s in led.steps(self.run_id)} if self.resumed else {}
        if self.resumed:
            lost = led.abandon_running_attempts(self.run_id, "runner stopped before the "
                                                "attempt finished")
            self.r.store.clear_staging(self.run_id)
            if lost:
                self._emit(EventKind.WORKER_LOST, details={"reason": "runner lost",
                                                           "attempts": lost})
        for a in led.attempts(self.run_id) if self.resumed else ():
            self.attempt_no[a["step"]] = max(self.attempt_no.get(a["step"], 0), a["attempt"])
        for spec in self.pipe.steps.values():
            for dep in spec.upstream:
                self.children[dep].append(spec.name)
        for name in self.r.order:
            self._carry(name, prior.get(name))
        for name in self.r.order:
            if name in self.outputs or name in self.passed:
                continue
            self.waiting[name] = sum(1 for d in self.pipe.steps[name].upstream
                                     if d not in self.outputs and d not in self.passed)
            if self.waiting[name] == 0:
                self.ready.append(name)

    def _carry(self, name: str, row: Any) -> None:
        """What a resumed run keeps of step ``name`` (its ledger ``row``): an intact
        committed output; a skip (an orchestrator's branch not taken, or a step reading
        the output of such a step); else the step runs again."""
        led = self.r.ledger
        gone = [s for s in self.pipe.steps[name].inputs.values() if s in self.passed]
        if row and row["status"] == StepStatus.SKIPPED:
            self.passed[name] = row["error"] or "skipped"
            self._emit(EventKind.STEP_SKIPPED, name, details={"reason": self.passed[name]})
        elif (row and row["status"] == StepStatus.SUCCEEDED and row["output_hash"]
                and self.r.store.intact(row["output_hash"])):  # re-hashed, not trusted
            self.outputs[name] = (row["output_hash"], row["output_codec"])
            self._emit(EventKind.STEP_SKIPPED, name,
                       details={"reason": "already committed",
                                "output_hash": row["output_hash"]})
        elif gone:
            self.passed[name] = f"its input step {gone[0]!r} was skipped"
            led.set_step(self.run_id, name, StepStatus.SKIPPED, self.passed[name])
            self._emit(EventKind.STEP_SKIPPED, name, details={"reason": self.passed[name]})
        elif row and row["status"] != StepStatus.PENDING:
            if row["status"] == StepStatus.SUCCEEDED and row["output_hash"]:
                led.release_commit(self.run_id, name, "the committed object is missing "
                                   "or its bytes changed; the step runs again")
            led.set_step(self.run_id, name, StepStatus.PENDING)

    def run(self) -> RunResult:
        t0 = time.monotonic()
        self._prepare()
        self.r.ledger.mark_run_started(self.run_id)
        self.r.store.staging_dir(self.run_id)
        self._emit(EventKind.RUN_STARTED, details={
            "resumed": self.resumed, "steps": list(self.r.order),
            "interval": self.interval.key() if self.interval else None,
            "trigger": self.rec.trigger.value, "trigger_source": self.rec.trigger_source,
            "environment": self.rec.environment})
        executor = make_executor(self.r.executor, workers=self.r.workers,
                                 scheduler=self.r.scheduler)
        executor.start(self.pipe, self.r.hooks, self.r.store)
        self.executor = executor
        self.follow = getattr(executor, "follow", None)
        if self.cancelled:
            executor.wake()
        old = _install_signals(self)
        try:  # until the ledger says how the run ended, a second Ctrl-C only cancels
            try:
                self._loop(executor)
                self.loop_done = True  # signals from here on are the caller's
            finally:
                self.executor = None
                executor.shutdown(graceful=not self.cancelled)
            return self._finish(time.monotonic() - t0)
        finally:
            _restore_signals(old)
            if self.late_signal is not None and not self.cancelled:
                # the run ended on its own; the signal was meant for the caller. (After a
                # cancel, a second Ctrl-C is the same request: it stays with the runner.)
                signal.raise_signal(self.late_signal)

    def _loop(self, ex: Executor) -> None:
        outcomes: list[Outcome] = []
        while True:
            # Each ledger write commits on its own. A turn publishes events on a bus other
            # runners share (parallel backfills), whose subscribers write through their own
            # connections: a write transaction held across the turn would make them wait
            # for it while it waits for them.
            for outcome in outcomes:
                self._on_outcome(outcome)
            self._check_deadlines(ex)
            self._due_retries()
            if self.cancelled:
                self._cancel_all(ex)
                return
            self._dispatch(ex)
            if not self.running and not self.ready and not self.retries:
                return
            outcomes = ex.wait(self._next_wake())

    def _next_wake(self) -> float | None:
        times = [r.deadline for r in self.running.values() if r.deadline is not None]
        if self.retries:
            times.append(self.retries[0][0])
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _dispatch(self, ex: Executor) -> None:
        while self.ready and ex.slots() > 0:
            self._start(ex, self.ready.popleft())
        if self.follow is not None:
            for run in list(self.running.values()):
                task = run.task
                for _ in range(_QUEUE_DEPTH):  # along a chain of dependent steps
                    if id(task) not in self.queued and not self._queue_next(task):
                        break
                    task = self.queued[id(task)].task

    def _queue_next(self, after: Task) -> bool:
        """Queue a step whose last missing input is ``after``'s output behind it, on its
        worker: it starts when ``after`` commits, without waiting for this loop.

        Its attempt is in the ledger (``queued``) before it can start. If the runner dies
        before it records the commit of ``after``, resume finds ``after`` unfinished and
        runs both again (their objects, already in the store, are content-addressed)."""
        step = after.step
        child = next((c for c in self.children[step]
                      if self.waiting.get(c) == 1 and c not in self.following), None)
        if child is None:
            return False
        spec = self.pipe.steps[child]
        attempt = self.attempt_no.get(child, 0) + 1
        uses = tuple(p for p, s in spec.inputs.items() if s == step)
        task = self._task(child, attempt, after=step)  # uses: filled in on the worker
        placed: list[str | None] = []

        def queue(worker: str | None) -> None:
            self.r.ledger.queue_attempt(self.run_id, child, attempt, _pid(worker))
            placed.append(worker)

        assert self.follow is not None
        if self.follow(task, after, uses, queue):
            self.attempt_no[child] = attempt
            self.queued[id(after)] = _Queued(task, placed[0] if placed else None)
            self.following.add(child)
            return True
        if placed:
            self.r.ledger.drop_queued_attempt(self.run_id, child, attempt)
        return False

    def _unqueue(self, q: _Queued) -> None:
        """What followed an attempt never started: forget its attempt."""
        task = q.task
        then = self.queued.pop(id(task), None)
        if then is not None:  # queued behind it: never starts either
            self._unqueue(then)
        self.following.discard(task.step)
        self.r.ledger.drop_queued_attempt(self.run_id, task.step, task.attempt)
        if self.attempt_no.get(task.step) == task.attempt:
            self.attempt_no[task.step] = task.attempt - 1

    def _started_after(self, q: _Queued, at: tuple[float, float]) -> None:
        """The attempt queued behind one that committed has started (when the executor
        learnt of that commit: ``at``, monotonic and wall-clock)."""
        task = q.task
        step = task.step
        self.following.discard(step)
        spec = self.pipe.steps[step]
        self.tries[step] = self.tries.get(step, 0) + 1
        began, wall = at
        hashes = {p: self.outputs[s][0] for p, s in spec.inputs.items() if s in self.outputs}
        self.r.ledger.start_attempt(self.run_id, step, task.attempt, _pid(q.worker), hashes,
                                    queued=True, at=wall)
        self.running[id(task)] = _Running(task, began, began + spec.timeout if spec.timeout
                                          else None, q.worker)
        self._emit(EventKind.STEP_STARTED, step, attempt=task.attempt, time=wall,
                   details={"worker_pid": _pid(q.worker), "worker": q.worker,
                            "timeout": spec.timeout})

    def _kill(self, ex: Executor, run: _Running) -> None:
        """Stop a running attempt (SIGKILL or the executor's equivalent: it cannot ignore
        it); what was queued behind it never starts."""
        ex.kill(run.task)
        q = self.queued.pop(id(run.task), None)
        if q is not None:
            self._unqueue(q)

    def _task(self, step: str, attempt: int, after: str | None = None) -> Task:
        """An attempt's task; inputs from the step ``after`` are left blank (to be taken
        from that step's running attempt)."""
        inputs = {p: ("", "") if s == after else
                  (str(self.r.store.path(self.outputs[s][0])), self.outputs[s][1])
                  for p, s in self.pipe.steps[step].inputs.items()}
        staging_file, scratch_dir, quarantine_file = self.r.store.attempt_paths(
            self.run_id, step, attempt)
        return Task(
            run_id=self.run_id, step=step, attempt=attempt, inputs=inputs,
            params=self.params, interval=self.interval, staging_file=staging_file,
            quarantine_file=quarantine_file, scratch_dir=scratch_dir)

    def _start(self, ex: Executor, step: str) -> None:
        spec = self.pipe.steps[step]
        attempt = self.attempt_no.get(step, 0) + 1
        self.attempt_no[step] = attempt
        self.tries[step] = self.tries.get(step, 0) + 1
        task = self._task(step, attempt)
        hashes = {p: self.outputs[s][0] for p, s in spec.inputs.items()}

        def placed(worker: str | None) -> None:  # in the ledger before the attempt starts
            self.r.ledger.start_attempt(self.run_id, step, attempt, _pid(worker), hashes)

        worker = ex.submit(task, placed)
        pid = _pid(worker)
        now = time.monotonic()
        self.running[id(task)] = _Running(task, now, now + spec.timeout if spec.timeout
                                          else None, worker)
        self._emit(EventKind.STEP_STARTED, step, attempt=attempt,
                   details={"worker_pid": pid, "worker": worker, "timeout": spec.timeout})

    def _on_outcome(self, out: Outcome) -> None:
        run = self.running.pop(id(out.task), None)
        if run is None:  # killed by us (timeout, cancel): already recorded
            return
        q = self.queued.pop(id(out.task), None)
        if q is not None and not out.next_started:
            self._unqueue(q)
            q = None
        now = time.monotonic()
        at = min(out.at, now) if out.at is not None else now
        ended = (at, time.time() - (now - at))  # when the executor learnt how it ended
        self._ended(run, out, q, ended)
        if q is None:
            return
        self._started_after(q, ended)
        if not all(s in self.outputs for s in self.pipe.steps[q.task.step].upstream):
            # its worker committed the input, but this loop could not read that result:
            # stop it; the step runs again after its input is committed here
            again = self.running.pop(id(q.task))
            assert self.executor is not None
            self._kill(self.executor, again)
            self.tries[q.task.step] -= 1
            self.r.ledger.end_attempt(self.run_id, q.task.step, q.task.attempt,
                                      AttemptStatus.CANCELLED, "Cancelled",
                                      "the attempt it followed did not commit")

    def _ended(self, run: _Running, out: Outcome, q: _Queued | None,
               when: tuple[float, float]) -> None:
        task = out.task
        duration = when[0] - run.started
        if out.result is None:
            if out.lost and "before it received the task" in out.lost:
                self.tries[task.step] -= 1  # the step never ran: not a try of its budget
                self.r.store.discard_attempt(self.run_id, task.step, task.attempt)
                self.r.ledger.end_attempt(self.run_id, task.step, task.attempt,
                                          AttemptStatus.WORKER_LOST, "WorkerLost", out.lost)
                self._emit(EventKind.WORKER_LOST, task.step, attempt=task.attempt,
                           error=out.lost, details={"worker_pid": _pid(out.worker),
                                                    "worker": out.worker})
                self.ready.appendleft(task.step)
                return
            self._attempt_lost(run, AttemptStatus.WORKER_LOST,
                               out.lost or f"worker {out.worker} died", EventKind.WORKER_LOST)
            return
        res = out.result
        for kind, details, at in res.events:
            try:
                ev_kind, payload = EventKind(kind), details
            except ValueError:  # not from our step wrapper: keep it, as the user's own
                ev_kind, payload = EventKind.CUSTOM, {"name": str(kind), "data": details}
            self._emit(ev_kind, task.step, attempt=task.attempt, details=payload, time=at)
        if res.ok:
            self._commit(task, res, duration, run.worker, out.committed, when[1],
                         q.task.step if q is not None else None)
        else:
            self._attempt_failed(task, res, duration)

    def _commit(self, task: Task, res: Result, duration: float, worker: str | None,
                committed: bool = False, at: float | None = None,
                started: str | None = None) -> None:
        """Record a committed output (``started``: a dependent step already running)."""
        assert res.digest is not None and res.codec is not None
        if not committed:  # else its worker did: the object is in the store
            self.r.store.commit(task.staging_file, res.digest)  # moves the staged file
        if res.scratch_used:
            self.r.store.discard_attempt(self.run_id, task.step, task.attempt, output=False)
        self.r.ledger.commit_step(self.run_id, task.step, task.attempt, res.digest,
                                  res.codec, res.size, at=at)
        self.outputs[task.step] = (res.digest, res.codec)
        self._emit(EventKind.STEP_SUCCEEDED, task.step, attempt=task.attempt,
                   duration=duration, details={"output_hash": res.digest, "size": res.size,
                                               "worker_pid": _pid(worker)})
        for child in self.children[task.step]:
            if child in self.waiting:
                self.waiting[child] -= 1
                if self.waiting[child] == 0 and child != started:
                    self.ready.append(child)

    def _attempt_failed(self, task: Task, res: Result, duration: float) -> None:
        violated = bool(res.failures or res.quarantined)
        status = AttemptStatus.CONTRACT_VIOLATED if violated else AttemptStatus.FAILED
        self.r.store.discard_attempt(self.run_id, task.step, task.attempt)
        self.r.ledger.end_attempt(self.run_id, task.step, task.attempt, status,
                                  res.error_type, res.error, res.traceback)
        if violated:
            self._emit(EventKind.CONTRACT_VIOLATED, task.step, attempt=task.attempt,
                       error=res.error, details={"failures": res.failures,
                                                 "quarantined": res.quarantined})
        self._retry_or_fail(task, res.retryable and not violated,
                            f"{res.error_type}: {res.error}", duration,
                            res.error_type or "Error")

    def _attempt_lost(self, run: _Running, status: AttemptStatus, error: str,
                      kind: EventKind) -> None:
        task = run.task
        duration = time.monotonic() - run.started
        self.r.store.discard_attempt(self.run_id, task.step, task.attempt)
        lost = status == AttemptStatus.WORKER_LOST
        self.r.ledger.end_attempt(self.run_id, task.step, task.attempt, status,
                                  "WorkerLost" if lost else "Timeout", error)
        self._emit(kind, task.step, attempt=task.attempt, duration=duration, error=error,
                   details={"worker_pid": _pid(run.worker), "worker": run.worker})
        retry = self.pipe.steps[task.step].retry
        ok = retry.on_worker_lost if lost else retry.on_timeout
        self._retry_or_fail(task, ok, error, duration, "WorkerLost" if lost else "Timeout")

    def _retry_or_fail(self, task: Task, retryable: bool, error: str, duration: float,
                       error_type: str) -> None:
        retry = self.pipe.steps[task.step].retry
        tries = self.tries.get(task.step, 1)  # a resumed run gives the full budget again
        if retryable and tries < retry.attempts and self.cancelled:
            self._step_cancelled(task.step, task.attempt)  # resume retries it
            return
        if retryable and tries < retry.attempts:
            delay = retry.delay(tries, self.r.rng)
            heapq.heappush(self.retries, (time.monotonic() + delay, task.step))
            self._emit(EventKind.STEP_RETRYING, task.step, attempt=task.attempt, error=error,
                       duration=duration, details={"delay": delay, "error_type": error_type,
                                                   "next_attempt": task.attempt + 1})
            return
        self.failed[task.step] = error
        self.r.ledger.set_step(self.run_id, task.step, StepStatus.FAILED, error)
        self._emit(EventKind.STEP_FAILED, task.step, attempt=task.attempt, error=error,
                   duration=duration, details={"error_type": error_type})
        for down in sorted(self.pipe.downstream(task.step)):
            if down in self.waiting:
                del self.waiting[down]
                self.skipped.append(down)
                self.r.ledger.set_step(self.run_id, down, StepStatus.UPSTREAM_FAILED,
                                       f"upstream step {task.step!r} failed")
                self._emit(EventKind.STEP_SKIPPED, down,
                           details={"reason": "upstream failed", "upstream": task.step})

    def _check_deadlines(self, ex: Executor) -> None:
        now = time.monotonic()
        for key, run in list(self.running.items()):
            if run.deadline is not None and now >= run.deadline:
                del self.running[key]
                self._kill(ex, run)
                timeout = self.pipe.steps[run.task.step].timeout
                self._attempt_lost(run, AttemptStatus.TIMED_OUT,
                                   f"step ran past its timeout of {timeout}s and was killed",
                                   EventKind.STEP_TIMED_OUT)

    def _due_retries(self) -> None:
        now = time.monotonic()
        while self.retries and self.retries[0][0] <= now:
            self.ready.append(heapq.heappop(self.retries)[1])

    def _cancel_all(self, ex: Executor) -> None:
        for key, run in list(self.running.items()):
            del self.running[key]
            self._kill(ex, run)
            task = run.task
            self.r.store.discard_attempt(self.run_id, task.step, task.attempt)
            self.r.ledger.end_attempt(self.run_id, task.step, task.attempt,
                                      AttemptStatus.CANCELLED, "Cancelled",
                                      "run cancelled by signal")
            self._step_cancelled(task.step, task.attempt)
        while self.retries:  # waiting out a backoff: cancelled too, not left 'running'
            step = heapq.heappop(self.retries)[1]
            self._step_cancelled(step, self.attempt_no[step])

    def _step_cancelled(self, step: str, attempt: int) -> None:
        self.r.ledger.set_step(self.run_id, step, StepStatus.CANCELLED)
        self._emit(EventKind.STEP_CANCELLED, step, attempt=attempt)

    def _finish(self, duration: float) -> RunResult:
        led = self.r.ledger
        done = {*self.outputs, *self.failed, *self.skipped, *self.passed}
        if self.cancelled and any(s not in done for s in self.r.order):
            status = RunStatus.CANCELLED
            sig = signal.Signals(self.r._cancel_signal or signal.SIGINT).name
            led.finish_run(self.run_id, status, f"cancelled by {sig}")
            self._emit(EventKind.RUN_CANCELLED, duration=duration, details={"signal": sig})
        elif self.failed:
            status = RunStatus.FAILED
            step, err = next(iter(self.failed.items()))
            led.finish_run(self.run_id, status, f"step {step!r} failed: {err}")
            self._emit(EventKind.RUN_FAILED, duration=duration, error=err,
                       details={"failed": list(self.failed), "skipped": self.skipped})
        else:
            status = RunStatus.SUCCEEDED
            led.finish_run(self.run_id, status)
            self._emit(EventKind.RUN_SUCCEEDED, duration=duration)
        self.r.store.clear_staging(self.run_id)
        return RunResult(
            run_id=self.run_id, pipeline=self.pipe.name, status=status,
            outputs={s: h for s, (h, _) in self.outputs.items()}, failed=dict(self.failed),
            skipped=tuple(self.skipped), resumed=self.resumed, ledger=led.path,
            store=self.r.store.root, duration=duration)


def _pid(worker: str | None) -> int | None:
    """A local worker's id is its pid; other executors' ids (addresses) have none."""
    return int(worker) if worker is not None and worker.isdigit() else None


def _install_signals(loop: _Loop) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: object) -> None:
        if loop.loop_done:
            loop.late_signal = loop.late_signal or signum
        else:
            loop.request_cancel(signum)

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    return old


def _restore_signals(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)
