"""What every orchestrator adapter shares: one step wrapper around each host task.

An adapter turns a :class:`~reliability.pipeline.Pipeline` into the host's own graph (an
Airflow DAG, a Prefect flow, ...), one host task per step, and makes each host task call
:meth:`StepBridge.run_step` once. The bridge does what our own runner does around an
attempt, in the process the host runs the task in:

* assembles, once per process, what a task needs
  (:func:`~reliability.assembly.assemble_task`: the home's ledger and artifact store, the
  run's hooks -- contracts, chaos -- and the step and run SLA checks with their runbooks)
  -- cheaply, as hosts such as KFP and Metaflow start a process per task;
* records the run, the attempt (the host's try number), its outcome and the worker pid in
  the ledger, so ``reliability runs show``, runbooks and the ledger-fed ``/metrics`` read a
  host's run like one of ours;
* runs the step through :func:`~reliability.runner.worker.run_task` -- the same hooks,
  encoding and hashing as our runner, so outputs are byte-identical -- and commits the
  output to the content-addressed store;
* hands the host a :data:`Ref` (a small JSON dict naming the committed object) instead of
  the data, and resolves the upstream refs it is given back to store objects;
* raises :class:`AttemptFailed` (retryable) or :class:`AttemptNotRetryable` (a contract
  violation, an error the step's :class:`~reliability.pipeline.Retry` does not retry, or
  the last try), which adapters map onto the host's retry hooks.

An attempt whose process vanished (a SIGKILL of the host's task process) leaves its ledger
row ``running``; the next attempt of the step records it as ``worker_lost``. With
``isolate=True`` the step body runs in one of our supervised forked workers, so a killed
body is noticed at once and retried by the host even where the host itself cannot recover.

The reverse direction -- our hooks around a host task that keeps its own code -- is
:meth:`StepBridge.guard` (with :meth:`StepBridge.for_tasks` and :meth:`StepBridge.register`).

Writing an adapter is a translation of four things:

1. the graph: one host task per step of ``bridge.order``; data dependencies are
   ``spec.inputs.values()`` (pass their refs), ordering-only ones ``spec.after``;
2. the try: build a :class:`HostAttempt` from the host's context (its run id, try number,
   whether it will retry) and return ``bridge.run_step(attempt, upstream_refs)``;
3. retries: ``bridge.retries(step)`` tries more, ``bridge.retry_delay(step, n)`` apart,
   and the host's retry predicate is ``bridge.retryable(exc)`` (declaratively: no retry on
   :class:`AttemptNotRetryable`); a host that cannot filter sets
   ``HostAttempt.host_filters_errors=False``;
4. skipping: a failed step's downstream tasks must not run (the ledger already marks them
   ``upstream_failed``); steps on a branch the host did not take are recorded with
   :meth:`StepBridge.skip_steps`, so the run settles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from reliability._record import record
from reliability.errors import ContractViolation, DefinitionError, RunError
from reliability.events import Event, EventKind
from reliability.pipeline import (
    DataInterval,
    Pipeline,
    StepContext,
    StepHook,
    StepSpec,
    code_version,
)
from reliability.runner.store import encode
from reliability.runner.worker import Result, Task, run_task
from reliability.runs import Trigger, params_dict, run_key

if TYPE_CHECKING:
    from reliability.adapters._watch import TaskWatch
    from reliability.assembly import TaskAssembly

__all__ = [
    "AttemptFailed",
    "AttemptNotRetryable",
    "GuardedAttempt",
    "HostAttempt",
    "Ref",
    "StepBridge",
    "host_run_id",
]

Ref = dict[str, str]
"""What one host task hands the next: ``{"step", "digest", "codec"}`` of a committed object."""

# events the ledger keeps (the runner's rule): started/succeeded are rebuilt from its tables
_SESSIONS: dict[tuple[Any, ...], _Session] = {}  # this process's open sessions
_TERMINAL_RUN = {"succeeded": EventKind.RUN_SUCCEEDED, "failed": EventKind.RUN_FAILED}


class AttemptFailed(RunError):
    """A step attempt run by a host failed; ``retryable`` says if the host may try again."""

    retryable = True

    def __init__(self, message: str, *, run_id: str, step: str, attempt: int,
                 error_type: str) -> None:
        super().__init__(message, run_id=run_id)
        self.step = step
        self.attempt = attempt
        self.error_type = error_type

    def __reduce__(self) -> tuple[Any, ...]:  # hosts pickle task exceptions
        return (_rebuild, (type(self), str(self), self.run_id or "", self.step, self.attempt,
                           self.error_type))


class AttemptNotRetryable(AttemptFailed):
    """The host must not retry: a contract violation (the data will not change), an error
    the step's retry policy excludes, or the step's last try."""

    retryable = False


class _TimedOut(Exception):
    """An isolated attempt ran past its step's timeout (and was killed)."""


def _rebuild(cls: type[AttemptFailed], message: str, run_id: str, step: str, attempt: int,
             error_type: str) -> AttemptFailed:
    return cls(message, run_id=run_id, step=step, attempt=attempt, error_type=error_type)


@record(frozen=True, slots=True)
class HostAttempt:
    """One try of one step, as the host sees it.

    ``attempt`` is the host's try number (1-based); ``retries_left`` whether the host will
    run the step again if this try raises a retryable error (decides between a
    ``step_retrying`` and a final ``step_failed`` in the ledger). ``host_filters_errors``
    is False for hosts whose retries cannot consult :class:`AttemptNotRetryable` (ZenML's
    ``StepRetryConfig``, Metaflow's ``@retry``): the bridge then refuses a try of a step
    that already failed for good, and answers a try of a committed step with its output.
    """

    host_run_id: str
    step: str
    attempt: int
    retries_left: bool
    params: Mapping[str, Any] | None = None
    interval: DataInterval | None = None
    trigger: str = "manual"
    host_filters_errors: bool = True

    def __post_init__(self) -> None:
        if self.interval is not None:  # the instants our runner gives a step: in UTC
            object.__setattr__(self, "interval", self.interval.to_utc())


def not_run_here() -> None:
    """The function of a host task registered for its place in the host's graph that this
    process does not run (the host runs it elsewhere, or has not run it yet)."""


_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+-]+")


def host_run_id(pipeline: str, host_run: str) -> str:
    """Our run id for a host's run: ``<pipeline>-<host run id>`` made safe for paths."""
    safe = _UNSAFE.sub("-", str(host_run)).replace("..", ".").strip("-.") or "run"
    return f"{pipeline}-{safe}"[:200]


class _Session:
    """One process's assembly of the bridge's pipeline (ledger, store, bus, hooks, SLA
    watch) and the runs it has recorded."""

    def __init__(self, pid: int, asm: TaskAssembly) -> None:
        self.pid = pid
        self.asm = asm
        self.ledger = asm.ledger
        self.store = asm.store
        self.bus = asm.bus
        self.hooks = asm.hooks
        self.known_runs: set[tuple[str, tuple[str, ...]]] = set()

    @property
    def watch(self) -> TaskWatch | None:
        return self.asm.watch  # type: ignore[no-any-return]

    def close(self) -> None:
        self.asm.close()


class StepBridge:
    """The step wrapper every adapter's host tasks call.

    ``pipeline`` is a :class:`Pipeline` or a ``"module:attr"`` reference. The other
    options are those of :class:`~reliability.assembly.RunOptions`: ``home`` (default:
    the project's, or ``RELIABILITY_HOME``), extra worker-side ``hooks`` such as a
    :class:`~reliability.chaos.hook.ChaosHook`, the project's ``contracts`` and its ``sla``
    checks and runbooks, the run's ``environment``. Metrics come from the ledger's events
    (``reliability sla serve``), which the bridge records. ``isolate`` runs each step body
    in a supervised forked worker (:class:`~reliability.runner.executor.LocalExecutor`),
    which also enforces the step's timeout.
    """

    def __init__(self, pipeline: Pipeline | str, *, home: str | Path | None = None,
                 hooks: Sequence[StepHook] = (), contracts: bool = True, sla: bool = True,
                 isolate: bool = False, environment: str | None = None) -> None:
        if isinstance(pipeline, str):
            from reliability.pipeline import load_pipeline

            pipeline = load_pipeline(pipeline)
        if not isinstance(pipeline, Pipeline):
            raise DefinitionError(
                f"a step bridge runs a Pipeline or a 'module:attribute' reference to one, not "
                f"{type(pipeline).__name__}. Fix: pass e.g. 'pipelines.reference:pipeline'")
        self.pipeline = pipeline
        self.order = pipeline.validate() if pipeline.steps else []
        self.home = Path(home) if home is not None else None
        self.extra_hooks = list(hooks)
        self.contracts = contracts
        self.sla = sla
        self.isolate = isolate
        self.environment = environment
        self._tasks_mode = False
        self._code_version: str | None = None

    @classmethod
    def for_tasks(cls, name: str, **options: Any) -> StepBridge:
        """A bridge for host tasks that keep their own code (see :meth:`guard`): its steps
        are added one by one with :meth:`register` and have no dependencies of ours."""
        bridge = cls(Pipeline(name), **options)
        bridge._tasks_mode = True
        return bridge

    def register(self, fn: Callable[..., Any], step: str, *, attempts: int = 1,
                 inputs: Sequence[str] | None = None, after: Sequence[str] = ()) -> StepSpec:
        """Describe host task function ``fn`` as step ``step``: each parameter (or each of
        ``inputs``) is an input of that name (what contracts and faults address),
        ``attempts`` the host's tries, ``after`` the host tasks it runs after (a failure
        marks them ``upstream_failed``)."""
        import inspect

        from reliability.pipeline import Retry

        names = inspect.signature(fn).parameters if inputs is None else inputs
        spec = StepSpec(name=step, fn=fn, inputs={p: p for p in names}, after=tuple(after),
                        retry=Retry(attempts=max(1, attempts), backoff=0))
        if step not in self.order:
            self.order.append(step)
            self.close()  # a session opened before knew its steps without this one
        self.pipeline.steps[step] = spec
        return spec

    # -- what adapters translate -------------------------------------------------------
    def spec(self, step: str) -> StepSpec:
        return self.pipeline.steps[step]

    def retries(self, step: str) -> int:
        """How many retries the host should allow the step (its Retry's attempts - 1)."""
        return self.pipeline.steps[step].retry.attempts - 1

    def retry_delay(self, step: str, failed_attempt: int = 1) -> float:
        """Seconds the host should wait after ``failed_attempt`` failed (no jitter)."""
        retry = self.pipeline.steps[step].retry
        return min(retry.backoff * retry.multiplier ** (failed_attempt - 1), retry.max_backoff)

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        """The host's retry predicate: False for what the bridge says must not retry."""
        return not isinstance(exc, AttemptNotRetryable)

    # -- the per-process session ---------------------------------------------------------
    def session(self) -> _Session:
        """Open (once per process) the ledger, store, contracts and subscribers.

        Shared by every bridge of the same pipeline, home and options in the process:
        hosts re-import a DAG file or flow module per task, and each import builds a new
        bridge; they all reuse the first one's session.
        """
        key = self._key()
        s = _SESSIONS.get(key)
        if s is None or s.pid != os.getpid():
            s = _SESSIONS[key] = self._open()
        return s

    def close(self) -> None:
        """Close this process's session of the bridge's pipeline, home and options."""
        s = _SESSIONS.pop(self._key(), None)
        if s is not None and s.pid == os.getpid():
            s.close()

    def _key(self) -> tuple[Any, ...]:
        home = str(self.home.resolve()) if self.home is not None else None
        tasks = tuple(sorted(self.pipeline.steps)) if self._tasks_mode else None
        return (self.pipeline.name, home, self.contracts, self.sla, self.environment, tasks,
                id(self.pipeline) if self._tasks_mode else None)

    def _hooks(self, s: _Session) -> list[StepHook]:
        """The session's contract hook first (data is checked before chaos corrupts it or a
        step sees it), then this bridge's own hooks."""
        return [*s.hooks, *self.extra_hooks]

    def _open(self) -> _Session:
        from reliability.assembly import RunOptions, assemble_task

        graph = self.pipeline
        if self._tasks_mode:  # host tasks: their inputs come from the host, not our steps
            graph = Pipeline(self.pipeline.name, params=self.pipeline.params_model)
            for name, spec in self.pipeline.steps.items():
                graph.steps[name] = dataclasses.replace(spec, inputs={})
        # this bridge's own hooks are added per bridge (_hooks): bridges share a session
        asm = assemble_task(graph, RunOptions(home=self.home, contracts=self.contracts,
                                              sla=self.sla, environment=self.environment),
                            own_tasks=self._tasks_mode)
        if asm.code_version is not None and not self._tasks_mode:  # tasks: added later
            self._code_version = asm.code_version
        return _Session(os.getpid(), asm)

    def code_version(self) -> str:
        if self._code_version is None:
            self._code_version = code_version(self.pipeline)
        return self._code_version

    # -- one attempt -------------------------------------------------------------------
    def run_step(self, at: HostAttempt, upstream: Mapping[str, Ref]) -> Ref:
        """Run one attempt of ``at.step`` on the outputs named by ``upstream`` (step -> ref).

        Returns the committed output's ref; raises :class:`AttemptFailed` or
        :class:`AttemptNotRetryable`.
        """
        s = self.session()
        spec = self.pipeline.steps[at.step]
        params = self.pipeline.make_params(dict(at.params or {}))
        run_id = self._adopt(s, at, params, self.order)
        self._reconcile_lost(s, run_id, at.step, at.attempt)
        if not at.host_filters_errors:
            done = self._settled_step(s, run_id, at)
            if done is not None:
                return done
        refs = {p: upstream[src] for p, src in spec.inputs.items()}
        for p, ref in refs.items():
            if not s.store.has(ref["digest"]):
                raise AttemptNotRetryable(
                    f"step {at.step!r}: input {p!r} names object {ref['digest'][:16]} that "
                    f"is not in the store {s.store.root}. Fix: run every task of the run "
                    "against the same home", run_id=run_id, step=at.step, attempt=at.attempt,
                    error_type="InputMissing")
        staging, scratch, quarantine = s.store.attempt_paths(run_id, at.step, at.attempt)
        s.store.staging_dir(run_id)
        task = Task(run_id=run_id, step=at.step, attempt=at.attempt,
                    inputs={p: (s.store.location(r["digest"]), r["codec"])
                            for p, r in refs.items()},
                    params=params, interval=at.interval, staging_file=staging,
                    quarantine_file=quarantine, scratch_dir=scratch)
        hashes = {p: r["digest"] for p, r in refs.items()}
        t0 = time.monotonic()
        if self.isolate:
            try:
                res, lost, pid = self._run_isolated(s, task, hashes)
            except _TimedOut as exc:
                self._timed_out(s, task, str(exc), time.monotonic() - t0)
                self._retry_or_fail(s, at, run_id, spec.retry.on_timeout, "Timeout", str(exc),
                                    time.monotonic() - t0)
                raise AssertionError("unreachable") from None  # pragma: no cover
        else:
            pid = os.getpid()
            self._started(s, task, pid, hashes)
            res, lost = run_task(self.pipeline, self._hooks(s), task), None
        duration = time.monotonic() - t0
        if res is not None:
            for kind, details, stamp in res.events:
                self._emit(s, EventKind(kind), run_id, at.step, at.attempt, details=details,
                           time=stamp)
        if res is not None and res.ok:
            return self._commit(s, task, res, duration, pid)
        if res is None:
            assert lost is not None
            self._lost(s, task, lost, pid, duration)
            retryable = spec.retry.on_worker_lost
            error_type, error = "WorkerLost", lost
        else:
            retryable = self._failed(s, task, res)
            error_type, error = res.error_type or "Error", f"{res.error_type}: {res.error}"
        self._retry_or_fail(s, at, run_id, retryable, error_type, error, duration)
        raise AssertionError("unreachable")  # pragma: no cover

    def _adopt(self, s: _Session, at: HostAttempt, params: Any, steps: Sequence[str]) -> str:
        run_id = host_run_id(self.pipeline.name, at.host_run_id)
        seen = (run_id, tuple(steps))
        if seen in s.known_runs:
            return run_id
        if steps and set(steps) <= {r["step"] for r in s.ledger.steps(run_id)}:
            s.known_runs.add(seen)  # recorded by the process of an earlier task
            return run_id
        pdict = params_dict(params)
        interval = at.interval
        # one run per host run: the key names the host's run too, so two host runs with the
        # same parameters are two runs here, as they are in the host
        key = run_key(f"{self.pipeline.name}@{at.host_run_id}", pdict, interval)
        created = s.ledger.adopt_run(
            run_id, self.pipeline.name, key, pdict, steps, code_version=self.code_version(),
            interval=(interval.start.isoformat(), interval.end.isoformat()) if interval
            else None, trigger=at.trigger, environment=self.environment)
        s.known_runs.add(seen)
        if created:
            self._emit(s, EventKind.RUN_STARTED, run_id, details={
                "resumed": False, "steps": list(steps),
                "interval": interval.key() if interval else None,
                "trigger": Trigger.parse(at.trigger).value,
                "environment": s.ledger.get_run(run_id).environment})
        return run_id

    def _settled_step(self, s: _Session, run_id: str, at: HostAttempt) -> Ref | None:
        """A try of a step whose outcome is already final: its committed output, or
        :class:`AttemptNotRetryable` for a step that failed for good -- a host whose
        retries cannot filter errors runs it again after a contract violation."""
        row = next((r for r in s.ledger.steps(run_id) if r["step"] == at.step), None)
        if row is None:
            return None
        if row["status"] == "succeeded" and row["output_hash"] and s.store.has(
                row["output_hash"]):
            return {"step": at.step, "digest": row["output_hash"],
                    "codec": row["output_codec"]}
        if row["status"] in ("failed", "upstream_failed"):
            raise AttemptNotRetryable(
                f"run {run_id}: step {at.step!r} already {row['status'].replace('_', ' ')}"
                f" ({row['error']}); try {at.attempt} does not run it again",
                run_id=run_id, step=at.step, attempt=at.attempt, error_type="StepFailed")
        return None

    def _reconcile_lost(self, s: _Session, run_id: str, step: str, attempt: int) -> None:
        """Earlier attempts still ``running``: their process died; record them lost."""
        for a in s.ledger.attempts(run_id, step):
            if a["status"] != "running" or a["attempt"] >= attempt:
                continue
            error = (f"the process running attempt {a['attempt']} (pid {a['worker_pid']}) "
                     "died before it ended; the orchestrator retried the step")
            s.ledger.end_attempt(run_id, step, a["attempt"], "worker_lost", "WorkerLost", error)
            s.store.discard_attempt(run_id, step, a["attempt"])
            self._emit(s, EventKind.WORKER_LOST, run_id, step, a["attempt"], error=error,
                       details={"worker_pid": a["worker_pid"]})

    def _started(self, s: _Session, task: Task, pid: int | None, hashes: Mapping[str, str],
                 at: float | None = None) -> None:
        """Record ``task``'s attempt started by process ``pid`` (``at``: when, if earlier)."""
        s.ledger.start_attempt(task.run_id, task.step, task.attempt, pid, hashes, at=at)
        self._emit(s, EventKind.STEP_STARTED, task.run_id, task.step, task.attempt,
                   details={"worker_pid": pid, "timeout": None},
                   **({"time": at} if at is not None else {}))

    def _run_isolated(self, s: _Session, task: Task, hashes: Mapping[str, str]
                       ) -> tuple[Result | None, str | None, int]:
        from reliability.runner.executor import LocalExecutor

        executor = LocalExecutor(1)
        executor.start(self.pipeline, self._hooks(s))
        pid = 0

        def placed(worker: str | None) -> None:
            nonlocal pid
            pid = int(worker or 0)
            self._started(s, task, pid, hashes)

        timeout = self.pipeline.steps[task.step].timeout
        deadline = time.monotonic() + timeout if timeout else None
        try:
            executor.submit(task, placed)
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                outcomes = executor.wait(left)
                if outcomes:
                    out = outcomes[0]
                    return out.result, out.lost, pid
                if deadline is not None and time.monotonic() >= deadline:
                    executor.kill(task)
                    raise _TimedOut(f"step ran past its timeout of {timeout}s and was "
                                    "killed")
        finally:
            executor.shutdown(graceful=True)

    def _commit(self, s: _Session, task: Task, res: Result, duration: float, pid: int) -> Ref:
        assert res.digest is not None and res.codec is not None
        s.store.commit(Path(task.staging_file), res.digest)
        if res.scratch_used:
            s.store.discard_attempt(task.run_id, task.step, task.attempt, output=False)
        s.ledger.commit_step(task.run_id, task.step, task.attempt, res.digest, res.codec,
                             res.size)
        self._emit(s, EventKind.STEP_SUCCEEDED, task.run_id, task.step, task.attempt,
                   duration=duration, details={"output_hash": res.digest, "size": res.size,
                                               "worker_pid": pid})
        self._settle(s, task.run_id)
        return {"step": task.step, "digest": res.digest, "codec": res.codec}

    def _failed(self, s: _Session, task: Task, res: Result) -> bool:
        status = "contract_violated" if res.failures or res.quarantined else "failed"
        s.store.discard_attempt(task.run_id, task.step, task.attempt)
        s.ledger.end_attempt(task.run_id, task.step, task.attempt, status, res.error_type,
                             res.error, res.traceback)
        if status == "contract_violated":
            self._emit(s, EventKind.CONTRACT_VIOLATED, task.run_id, task.step, task.attempt,
                       error=res.error, details={"failures": res.failures,
                                                 "quarantined": res.quarantined})
        return res.retryable

    def _lost(self, s: _Session, task: Task, error: str, pid: int, duration: float) -> None:
        s.store.discard_attempt(task.run_id, task.step, task.attempt)
        s.ledger.end_attempt(task.run_id, task.step, task.attempt, "worker_lost",
                             "WorkerLost", error)
        self._emit(s, EventKind.WORKER_LOST, task.run_id, task.step, task.attempt,
                   duration=duration, error=error, details={"worker_pid": pid})

    def _timed_out(self, s: _Session, task: Task, error: str, duration: float) -> None:
        s.store.discard_attempt(task.run_id, task.step, task.attempt)
        s.ledger.end_attempt(task.run_id, task.step, task.attempt, "timed_out", "Timeout",
                             error)
        self._emit(s, EventKind.STEP_TIMED_OUT, task.run_id, task.step, task.attempt,
                   duration=duration, error=error)

    def _retry_or_fail(self, s: _Session, at: HostAttempt, run_id: str, retryable: bool,
                       error_type: str, error: str, duration: float) -> None:
        msg = f"run {run_id}: step {at.step!r} attempt {at.attempt} failed: {error}"
        if retryable and at.retries_left:
            self._emit(s, EventKind.STEP_RETRYING, run_id, at.step, at.attempt, error=error,
                       duration=duration, details={"delay": self.retry_delay(at.step,
                                                                             at.attempt),
                                                   "error_type": error_type,
                                                   "next_attempt": at.attempt + 1})
            raise AttemptFailed(msg, run_id=run_id, step=at.step, attempt=at.attempt,
                                error_type=error_type)
        self._step_failed(s, run_id, at.step, at.attempt, error, error_type, duration)
        raise AttemptNotRetryable(msg, run_id=run_id, step=at.step, attempt=at.attempt,
                                  error_type=error_type)

    def fail_step(self, host_run: str, step: str, attempt: int, exc: BaseException) -> None:
        """The host failed ``step`` of its run ``host_run`` after our attempt ended (its
        type check or IO manager refused the output the ledger committed): record the step
        failed, its downstream steps ``upstream_failed``, and settle the run."""
        s = self.session()
        name = type(exc).__name__
        self._step_failed(s, host_run_id(self.pipeline.name, host_run), step, attempt,
                          f"{name}: {exc}", name)

    def lost(self, at: HostAttempt, pid: int | None, error: str, *,
             started: float | None = None, run_steps: Sequence[str] | None = None) -> None:
        """Record try ``at`` of a host task whose process ``pid`` died before it ended (the
        host reported the end, not the task): the attempt ``worker_lost`` (started at
        ``started``, a Unix time), then the step retried or failed as ``at.retries_left``
        and the step's ``Retry.on_worker_lost`` say."""
        s = self.session()
        run_id = self._adopt(s, at, at.params, list(run_steps or [at.step]))
        when = time.time() if started is None else started
        staging, scratch, quarantine = s.store.attempt_paths(run_id, at.step, at.attempt)
        task = Task(run_id=run_id, step=at.step, attempt=at.attempt, inputs={},
                    params=at.params, interval=at.interval, staging_file=staging,
                    quarantine_file=quarantine, scratch_dir=scratch)
        self._started(s, task, pid, {}, at=when)
        duration = max(0.0, time.time() - when)
        self._lost(s, task, error, pid or 0, duration)
        with contextlib.suppress(AttemptFailed):
            self._retry_or_fail(s, at, run_id, self.spec(at.step).retry.on_worker_lost,
                                "WorkerLost", error, duration)

    def skip_pending(self, host_run: str, failed: str, reason: str) -> None:
        """The host stopped its run ``host_run`` after step ``failed`` failed, so the steps
        that have not started will not run: record them ``upstream_failed`` with
        ``reason``, and settle the run."""
        s = self.session()
        run_id = host_run_id(self.pipeline.name, host_run)
        for row in s.ledger.steps(run_id):
            if row["status"] == "pending":
                s.ledger.set_step(run_id, row["step"], "upstream_failed", reason)
                self._emit(s, EventKind.STEP_SKIPPED, run_id, row["step"],
                           details={"reason": reason, "upstream": failed})
        self._settle(s, run_id)

    def skip_steps(self, host_run: str, reasons: Mapping[str, str]) -> None:
        """Steps of the host's run ``host_run`` that will not run, with why (step ->
        reason; e.g. a conditional branch the host did not take): record each still
        pending one ``skipped`` and settle the run."""
        s = self.session()
        run_id = host_run_id(self.pipeline.name, host_run)
        for step in s.ledger.skip_steps(run_id, reasons):
            self._emit(s, EventKind.STEP_SKIPPED, run_id, step,
                       details={"reason": reasons[step]})
        self._settle(s, run_id)

    def carry_steps(self, host_run: str, origin: str, steps: Sequence[str]) -> None:
        """The host's run ``host_run`` resumes its run ``origin`` and copied ``steps``
        from it instead of running them: each still pending gets its outcome there (a
        commit, or a skip) and the run settles when nothing else is open."""
        s = self.session()
        run_id = host_run_id(self.pipeline.name, host_run)
        was = host_run_id(self.pipeline.name, origin)
        for row in s.ledger.carry_steps(run_id, was, steps):
            self._emit(s, EventKind.STEP_SKIPPED, run_id, row["step"], details=(
                {"reason": "already committed", "output_hash": row["output_hash"],
                 "from_run": was} if row["status"] == "succeeded"
                else {"reason": row["error"] or "skipped", "from_run": was}))
        self._settle(s, run_id)

    def _step_failed(self, s: _Session, run_id: str, step: str, attempt: int | None,
                     error: str, error_type: str, duration: float | None = None) -> None:
        s.ledger.set_step(run_id, step, "failed", error)
        self._emit(s, EventKind.STEP_FAILED, run_id, step, attempt, error=error,
                   duration=duration, details={"error_type": error_type})
        for down in sorted(self.pipeline.downstream(step)):
            if down in self.pipeline.steps:
                s.ledger.set_step(run_id, down, "upstream_failed",
                                  f"upstream step {step!r} failed")
                self._emit(s, EventKind.STEP_SKIPPED, run_id, down,
                           details={"reason": "upstream failed", "upstream": step})
        self._settle(s, run_id)

    def _settle(self, s: _Session, run_id: str) -> None:
        status = s.ledger.settle_run(run_id)
        if status is None:
            return
        rec = s.ledger.get_run(run_id)
        self._emit(s, _TERMINAL_RUN[status], run_id, duration=rec.duration, error=rec.error)

    def _emit(self, s: _Session, kind: EventKind, run_id: str, step: str | None = None,
              attempt: int | None = None, **kw: Any) -> None:
        s.bus.publish(Event(kind=kind, pipeline=self.pipeline.name, run_id=run_id, step=step,
                            attempt=attempt, **kw))

    # -- the reverse: our hooks around a host task's own code ------------------------------
    def guard(self, fn: Callable[..., Any], at: HostAttempt, args: Sequence[Any],
              kwargs: Mapping[str, Any]) -> Any:
        """Call a host task's own function ``fn`` as attempt ``at`` of step ``at.step``.

        Its arguments are the step's inputs: our hooks see them by parameter name (so
        contracts and chaos faults address them as for a declared step), the attempt is
        recorded in the ledger, the return value goes back to the host unchanged. A
        contract violation quarantines the bad output and raises
        :class:`AttemptNotRetryable`.
        """
        import inspect

        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        attempt = self.begin(at, dict(bound.arguments))
        try:
            output = fn(**attempt.inputs)
        except Exception as exc:
            attempt.fail(exc)
        return attempt.end(output)

    def begin(self, at: HostAttempt, inputs: Mapping[str, Any], *,
              run_steps: Sequence[str] | None = None) -> GuardedAttempt:
        """Start attempt ``at`` of a host task whose body the host runs itself (what
        :meth:`guard` does around a function, for hosts that call us before and after the
        body): records the attempt, opens the hooks' attempt scope and runs their
        ``before`` on ``inputs``. The body gets :attr:`GuardedAttempt.inputs`, then call
        :meth:`GuardedAttempt.end` with its output or :meth:`GuardedAttempt.fail`.
        ``run_steps`` are the host run's steps known up front (default: this one).
        Raises :class:`AttemptFailed` when a hook fails the attempt before the body runs,
        and, where the host cannot filter errors, :class:`AttemptNotRetryable` for a try of
        a step that already failed for good (the body must not run again).
        """
        s = self.session()
        run_id = self._adopt(s, at, at.params, list(run_steps or [at.step]))
        self._reconcile_lost(s, run_id, at.step, at.attempt)
        if not at.host_filters_errors:
            self._settled_step(s, run_id, at)
        attempt = GuardedAttempt(self, s, at, run_id, dict(inputs))
        try:
            attempt.open()
        except Exception as exc:
            attempt.fail(exc)
        return attempt


class GuardedAttempt:
    """One attempt of a host task's own code, between :meth:`StepBridge.begin` and its
    :meth:`end` or :meth:`fail`."""

    def __init__(self, bridge: StepBridge, s: _Session, at: HostAttempt, run_id: str,
                 inputs: dict[str, Any]) -> None:
        self.bridge, self.at, self.run_id, self.inputs = bridge, at, run_id, inputs
        self._s = s
        self._spec = bridge.pipeline.steps[at.step]
        self._hooks = bridge._hooks(s)
        staging, scratch, quarantine = s.store.attempt_paths(run_id, at.step, at.attempt)
        self._task = Task(run_id=run_id, step=at.step, attempt=at.attempt, inputs={},
                          params=at.params, interval=at.interval, staging_file=staging,
                          quarantine_file=quarantine, scratch_dir=scratch)
        self._ctx = StepContext(pipeline=bridge.pipeline.name, run_id=run_id, step=at.step,
                                attempt=at.attempt, interval=at.interval,
                                staging_dir=Path(scratch), params=at.params)
        self._scope = contextlib.ExitStack()
        self._pid = os.getpid()
        self._t0 = time.monotonic()

    def open(self) -> None:
        from reliability.pipeline import attempt_scope

        s, at = self._s, self.at
        s.ledger.start_attempt(self.run_id, at.step, at.attempt, self._pid, {})
        self.bridge._emit(s, EventKind.STEP_STARTED, self.run_id, at.step, at.attempt,
                          details={"worker_pid": self._pid, "timeout": None})
        self._t0 = time.monotonic()
        self._scope.enter_context(attempt_scope(self._hooks, self._ctx, self._spec))
        for hook in self._hooks:
            self.inputs = hook.before(self._ctx, self._spec, self.inputs)

    def end(self, output: Any) -> Any:
        """The body returned ``output``: run the hooks' ``after`` on it, commit it and
        return it (as the hooks left it); raises :class:`AttemptFailed` or
        :class:`AttemptNotRetryable` (a contract violation) instead."""
        try:
            for hook in self._hooks:
                output = hook.after(self._ctx, self._spec, output)
            digest, codec, size = encode(output, Path(self._task.staging_file))
            self._scope.close()
        except Exception as exc:
            self._failed(exc, output, have_output=True)
        res = Result(ok=True, digest=digest, codec=codec, size=size,
                     events=self._ctx._emitted)
        duration = self._events(res)
        self.bridge._commit(self._s, self._task, res, duration, self._pid)
        return output

    def fail(self, exc: Exception) -> NoReturn:
        """The body raised ``exc``: record it; raises :class:`AttemptFailed` (the host may
        retry) or :class:`AttemptNotRetryable`."""
        self._failed(exc, None, have_output=False)

    def _failed(self, exc: Exception, output: Any, *, have_output: bool) -> NoReturn:
        import traceback

        with contextlib.suppress(Exception):
            self._scope.close()
        res = Result(ok=False, error_type=type(exc).__qualname__, error=str(exc) or repr(exc),
                     traceback="".join(traceback.format_exception(exc, limit=20)),
                     retryable=self._spec.retry.should_retry(exc), events=self._ctx._emitted)
        if isinstance(exc, ContractViolation):
            res.failures = exc.failures
            if have_output or exc.direction == "output":
                quarantine = Path(self._task.quarantine_file)
                quarantine.parent.mkdir(parents=True, exist_ok=True)
                encode(output, quarantine)
                res.quarantined = str(quarantine)
        duration = self._events(res)
        b, at = self.bridge, self.at
        retryable = b._failed(self._s, self._task, res)
        b._retry_or_fail(self._s, at, self.run_id, retryable, res.error_type or "Error",
                         f"{res.error_type}: {res.error}", duration)
        raise AssertionError("unreachable")  # pragma: no cover

    def _events(self, res: Result) -> float:
        for kind, details, stamp in res.events:
            self.bridge._emit(self._s, EventKind(kind), self.run_id, self.at.step,
                              self.at.attempt, details=details, time=stamp)
        return time.monotonic() - self._t0


def params_json(params: Any) -> dict[str, Any]:
    """Plain JSON parameters for a host (run conf, flow parameters)."""
    try:
        return dict(json.loads(json.dumps(params_dict(params))))
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"run parameters {params!r} are not JSON ({exc}). "
                              "Fix: pass plain values") from None


def load_hooks(ref: str) -> list[StepHook]:
    """Import ``"module:attr"`` naming a list of step hooks (hosts that start each task in a
    fresh process from a file or a component's source take hooks by reference)."""
    import importlib

    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise DefinitionError(f"hooks reference {ref!r} is not 'module:attr'. Fix: write "
                              "e.g. 'myproject.chaos:hooks'")
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as exc:
        raise DefinitionError(f"cannot import hooks {ref!r}: {exc}. Fix: put the module on "
                              "PYTHONPATH where the orchestrator runs tasks") from None
    if not isinstance(found, (list, tuple)):
        raise DefinitionError(f"hooks {ref!r} is {type(found).__name__}, not a list of step "
                              "hooks. Fix: point at a list, e.g. 'myproject.chaos:hooks'")
    return list(found)
