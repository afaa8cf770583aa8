"""Supervised worker processes.

Each :class:`Worker` is a forked process with a duplex pipe. The pool hands the runner the
objects to wait on (pipes and process sentinels) so a worker that dies — SIGKILL, OOM, a
segfault in a C extension — is noticed the moment the kernel closes its sentinel, not at the
next heartbeat. A dead worker is replaced by a fresh one; the others are not disturbed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from reliability.pipeline import Pipeline, StepHook
from reliability.runner.worker import Task, worker_main

__all__ = ["Worker", "WorkerPool"]

_SPAWN_LOCK = threading.Lock()


class Worker:
    __slots__ = ("conn", "current", "deadline", "proc", "started")

    def __init__(self, proc: BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.current: Task | None = None
        self.deadline: float | None = None
        self.started = 0.0

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def reap(self, timeout: float = 1.0) -> None:
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.kill()
            self.proc.join(timeout)
        self.conn.close()


class WorkerPool:
    """Up to ``size`` forked workers sharing one pipeline and hook list."""

    def __init__(self, pipeline: Pipeline, hooks: Sequence[StepHook], size: int,
                 start_method: str = "fork") -> None:
        if size < 1:
            raise ValueError(f"workers={size} must be at least 1")
        self.pipeline = pipeline
        self.hooks = list(hooks)
        self.size = size
        self.ctx: Any = mp.get_context(start_method)
        self.workers: list[Worker] = []
        self._by_conn: dict[Any, Worker] = {}
        self._by_sentinel: dict[int, Worker] = {}

    def spawn(self) -> Worker:
        # Pools in other threads fork too: none may fork while this worker's child ends are
        # still open here, or its child would hold them and hide this worker's death.
        with _SPAWN_LOCK:
            parent_end, child_end = self.ctx.Pipe(duplex=True)
            proc = self.ctx.Process(
                target=worker_main, name="reliability-worker",
                args=(child_end, self.pipeline, self.hooks, os.getpid()), daemon=True)
            proc.start()
            child_end.close()
        w = Worker(proc, parent_end)
        self.workers.append(w)
        self._by_conn[parent_end] = w
        self._by_sentinel[proc.sentinel] = w
        return w

    def idle(self) -> Worker | None:
        for w in self.workers:
            if w.current is None:
                return w
        if len(self.workers) < self.size:
            return self.spawn()
        return None

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.current is not None]

    def waitables(self) -> list[Any]:
        return [*self._by_conn, *self._by_sentinel]

    def owner(self, obj: Any) -> Worker | None:
        if isinstance(obj, int):
            return self._by_sentinel.get(obj)
        return self._by_conn.get(obj)

    def remove(self, w: Worker) -> None:
        """Forget a dead (or to-be-killed) worker; reap it."""
        if w in self.workers:
            self.workers.remove(w)
            self._by_conn.pop(w.conn, None)
            self._by_sentinel.pop(w.proc.sentinel, None)
        w.kill()
        w.reap()

    def shutdown(self, graceful: bool = True) -> None:
        for w in list(self.workers):
            if graceful and w.current is None:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            else:
                w.kill()
        for w in list(self.workers):
            self.remove(w)
