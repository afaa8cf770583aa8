"""Where attempts execute: the :class:`Executor` protocol and the local supervised pool.

The run loop (:mod:`reliability.runner.core`) owns retries, backoff, deadlines, commits and
the ledger; an executor only starts attempts, reports how each one ended, and stops one on
request. Every attempt runs the same step wrapper,
:func:`~reliability.runner.worker.run_task` (hooks before and after the body, output encoded
and hashed into the attempt's staging file). An executor is done when it passes the
conformance suite in ``tests/conformance`` unchanged.

    class MyExecutor:                      # the whole protocol
        name = "mine"
        def start(self, pipeline, hooks): ...
        def slots(self): ...               # how many attempts may start now
        def submit(self, task, placed): ...  # calls placed(worker id) before the attempt can
                                           # start, then starts it; -> the worker id
        def wait(self, timeout): ...       # -> [Outcome, ...]; [] on wake() or timeout
        def kill(self, task): ...          # stop a running attempt now; no Outcome follows
        def wake(self): ...                # thread- and signal-safe
        def shutdown(self, graceful): ...

``start`` also receives the run's store. An executor may also offer
``follow(task, after, uses, placed) -> bool``: queue ``task`` on the worker running the
attempt ``after``, to start the moment ``after`` ends, with the inputs named in ``uses``
taken from ``after``'s output (it starts only if ``after`` succeeded; its body never runs
otherwise). ``placed`` is called before it can start; False means not queued. The Outcome
of ``after`` says whether it started (``next_started``). When ``after`` is killed, what
follows it is dropped without an Outcome. A dependent step then starts without waiting for
the runner to see its input's commit; the runner records that commit right after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_any
from typing import Protocol, runtime_checkable

from reliability._record import record
from reliability.pipeline import Pipeline, StepHook
from reliability.runner.pool import Worker, WorkerPool
from reliability.runner.store import Store
from reliability.runner.worker import Result, Task

__all__ = ["Executor", "LocalExecutor", "Outcome", "make_executor"]


@record(slots=True)
class Outcome:
    """How one attempt ended: ``result`` when the step wrapper answered (success or failure),
    ``lost`` (a reason) when the process running it died first."""

    task: Task
    result: Result | None = None
    lost: str | None = None
    worker: str | None = None
    committed: bool = False  # the output is in the store already (the worker committed it)
    next_started: bool = False  # the attempt queued to follow this one has started
    at: float | None = None  # time.monotonic() when the executor learnt how it ended


@runtime_checkable
class Executor(Protocol):
    name: str

    def start(self, pipeline: Pipeline, hooks: Sequence[StepHook],
              store: Store | None = None) -> None: ...

    def slots(self) -> int: ...

    def submit(self, task: Task, placed: Callable[[str | None], None]) -> str | None: ...

    def wait(self, timeout: float | None) -> list[Outcome]: ...

    def kill(self, task: Task) -> None: ...

    def wake(self) -> None: ...

    def shutdown(self, graceful: bool) -> None: ...


class LocalExecutor:
    """Forked worker processes on this machine, supervised through their pipes and process
    sentinels: a worker that dies (SIGKILL, OOM, a crash in a C extension) is noticed the
    moment the kernel closes its sentinel, and replaced by a fresh one."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.size = workers
        self.pool: WorkerPool | None = None
        self._running: dict[int, tuple[Task, Worker]] = {}  # id(task) -> (task, worker)
        self._rfd: int | None = None
        self._wfd: int | None = None
        self._lost_now: list[Outcome] = []  # found at submit: reported by the next wait()

    def start(self, pipeline: Pipeline, hooks: Sequence[StepHook],
              store: Store | None = None) -> None:
        self.pool = WorkerPool(pipeline, hooks, self.size)
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._wfd, False)

    def _pool(self) -> WorkerPool:
        assert self.pool is not None, "LocalExecutor.start() was not called"
        return self.pool

    def slots(self) -> int:
        pool = self._pool()
        return pool.size - len(pool.busy())

    def submit(self, task: Task, placed: Callable[[str | None], None]) -> str | None:
        pool = self._pool()
        w = pool.idle()
        assert w is not None, "LocalExecutor.submit() with no free slot"
        placed(str(w.pid))  # recorded before the worker can start it
        try:
            w.conn.send(task)
        except OSError:  # died between tasks: report it as lost, the loop decides
            pool.remove(w)
            self._lost_now.append(Outcome(task, lost=f"worker pid {w.pid} died before it "
                                          "received the task", worker=str(w.pid)))
            return str(w.pid)
        w.current = task
        self._running[id(task)] = (task, w)
        return str(w.pid)

    def wait(self, timeout: float | None) -> list[Outcome]:
        pool = self._pool()
        if self._lost_now:
            out, self._lost_now = self._lost_now, []
            return out
        out = []
        assert self._rfd is not None
        for obj in wait_any([*pool.waitables(), self._rfd], timeout):
            if obj == self._rfd:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._rfd, 512)
                continue
            w = pool.owner(obj)
            if w is not None:
                outcome = self._ready(pool, w)
                if outcome is not None:
                    out.append(outcome)
        return out

    def _ready(self, pool: WorkerPool, w: Worker) -> Outcome | None:
        task = w.current
        res: Result | None = None
        if w.conn.poll():
            try:
                res = w.conn.recv()
            except (EOFError, OSError):
                res = None
        if res is None:
            if w.proc.is_alive() and task is None:
                return None
            pool.remove(w)
            if task is None:
                return None
            self._running.pop(id(task), None)
            return Outcome(task, lost=f"worker pid {w.proc.pid} died (exit code "
                                      f"{w.proc.exitcode})", worker=str(w.proc.pid))
        w.current = None
        if task is None:
            return None
        self._running.pop(id(task), None)
        return Outcome(task, result=res, worker=str(w.pid))

    def kill(self, task: Task) -> None:
        entry = self._running.pop(id(task), None)
        if entry is not None:
            self._pool().remove(entry[1])  # SIGKILL: a hung step cannot ignore it

    def wake(self) -> None:
        if self._wfd is not None:
            with contextlib.suppress(OSError):
                os.write(self._wfd, b"x")

    def shutdown(self, graceful: bool) -> None:
        if self.pool is not None:
            self.pool.shutdown(graceful=graceful)
        self._running.clear()
        for fd in (self._rfd, self._wfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._rfd = self._wfd = None


def make_executor(spec: str | Executor | None, *, workers: int, scheduler: str | None = None
                  ) -> Executor:
    """An executor by name (``local``, ``dask``) or the instance given."""
    if spec is None or spec == "local":
        return LocalExecutor(workers)
    if not isinstance(spec, str):
        return spec
    if spec == "dask":
        import importlib

        try:
            module = importlib.import_module("reliability.runner.dask_executor")
        except ImportError as exc:
            from reliability.errors import MissingDependencyError

            raise MissingDependencyError(
                f"the dask executor needs the 'dask' extra ({exc}). Fix: pip install "
                "'pipeline-reliability[dask]'") from None
        executor: Executor = module.DaskExecutor(workers=workers, scheduler=scheduler)
        return executor
    from reliability.errors import ConfigError

    raise ConfigError(f"unknown executor {spec!r}", path=("executor",),
                      fix="use 'local' or 'dask'")
