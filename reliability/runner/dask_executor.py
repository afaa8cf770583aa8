"""Run attempts on Dask distributed: a ``LocalCluster`` or an existing scheduler.

The run loop stays ours (retries, backoff, deadlines, commits, the ledger); Dask only places
and runs attempts, so its scheduler holds no state a run depends on. Each attempt is one Dask
task, pinned to the worker we chose (``workers=[addr]``, ``allow_other_workers=False``,
``retries=0``), running the same step wrapper as every executor,
:func:`~reliability.runner.worker.run_task`.

* **Worker death is observed on the scheduler.** A client future does not show that the
  worker running it died: the scheduler's ``remove-worker`` event (stimulus
  ``handle-worker-cleanup``) lists the tasks that were processing there. Each of ours
  becomes a ``worker_lost`` outcome and its future is released, so Dask never reruns it
  (a pinned task cannot move to another worker): the retry is our loop's, under the step's
  policy, and a step that keeps killing workers fails naming the step and the deaths --
  never an opaque ``KilledWorker``.
* **A timeout or a cancel really stops the attempt:** the worker process running it is
  SIGKILLed (directly for workers on this machine, through its nanny otherwise); the nanny
  starts a fresh one.
* **Code and store reach the workers** through a worker plugin registered per run: the
  pipeline and the step hooks (cloudpickled), the runner's ``sys.path`` entries (for a
  ``LocalCluster`` the project is importable as it is here), the run's store and the
  storage options of object stores. Outputs go to a store every worker reaches (a shared
  mount or S3); the worker commits an attempt's output there (content-addressed,
  write-if-absent) before it answers, and the runner records the commit in the ledger.
* **A dependent step starts without a round trip through the runner** (``follow``): while
  an attempt runs, the step whose last missing input it produces is submitted with that
  attempt's task as a Dask dependency, pinned to the same worker, so the scheduler starts it
  the moment the input is committed; it does nothing if the input was not committed. Its
  ledger row (``queued``) exists before it can start; the runner records it as started
  when it learns of the commit. Results travel as scheduler events; answered tasks are
  released in batches.

Clusters and clients are kept per process (by scheduler address, or by worker count for a
``LocalCluster``) and reused by later runs -- backfills and scheduled runs do not pay the
start-up of a cluster each; :func:`close_clusters` (also run at exit) closes them.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any

import cloudpickle
import dask
from distributed import Client, LocalCluster, WorkerPlugin, get_worker

from reliability._record import record
from reliability.errors import ConfigError
from reliability.pipeline import Pipeline, StepHook
from reliability.runner.executor import Outcome
from reliability.runner.store import Store, open_store, remote_options, set_remote_options
from reliability.runner.worker import Result, Task, run_task

__all__ = ["DaskExecutor", "close_clusters"]

_log = logging.getLogger("reliability.dask")
_KEY_PREFIX = "reliability-attempt"
_RESULTS = "reliability-results"  # the scheduler event topic results travel on
_SEND_INTERVAL = 0.002  # seconds between the client's batches to the scheduler
# Answered attempts' tasks are released in batches: each release makes the scheduler send
# ``free-keys`` to a worker, and the next task for that worker then waits out the stream's
# send interval (5 ms) -- once per batch instead of once per step of a chain.
_RELEASE_EVERY = 64  # answered attempts
_RELEASE_AFTER = 0.25  # seconds
# A task that ends without its result (Dask gave up on it outside the step wrapper, or the
# scheduler dropped it) is found by a look at the futures this often, not by a callback per
# attempt (a thread hop for every step).
_CHECK_EVERY = 0.5  # seconds


# -- on the workers -----------------------------------------------------------------------
class _RunPlugin(WorkerPlugin):
    """What a run's attempts need on every worker (present and future ones)."""

    def __init__(self, payload: bytes, paths: Sequence[str]) -> None:
        self.payload = payload
        self.paths = list(paths)
        self.pipeline: Pipeline | None = None
        self.hooks: list[StepHook] = []
        self.store: Store | None = None
        self.error: str | None = None
        self.worker: Any = None
        self.results: dict[str, dict[str, Any]] = {}  # task key -> result event, unsent

    def __getstate__(self) -> dict[str, Any]:
        return {"payload": self.payload, "paths": self.paths, "pipeline": None, "hooks": [],
                "store": None, "error": None, "worker": None, "results": {}}

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """The worker's state of a task changed (on its event loop): the first change after
        an attempt's task returned (to ``memory``, or ``released`` for a cancelled one)
        sends its result, just before the worker reports the task finished -- so both go
        to the scheduler in one message. Sent from the task's thread, the result would go
        on its own and hold the task's completion back for the stream's send interval."""
        if self.results:
            msg = self.results.pop(key, None)
            if msg is not None:
                self.worker.log_event(_RESULTS, msg)

    def setup(self, worker: Any) -> None:
        self.worker = worker
        for p in reversed(self.paths):  # the runner's import path, where it exists here
            if p not in sys.path and os.path.isdir(p):
                sys.path.insert(0, p)
        try:
            self.pipeline, hooks, remotes, store = cloudpickle.loads(self.payload)
            self.hooks = list(hooks)
            set_remote_options(remotes)
            self.store = open_store(store) if store is not None else None
        except Exception as exc:  # reported by each attempt, which fails without retries
            self.pipeline = None
            self.error = f"{type(exc).__name__}: {exc}"


_Output = tuple[bool, str, str]  # what an attempt's task returns: (ok, location, codec)


def _attempt(plugin: str, key: str, task: Task, after: _Output | None = None,
             uses: Sequence[str] = ()) -> _Output:
    """One attempt, in a Dask worker: the step wrapper every executor runs.

    The output is committed into the store here, so a step queued to follow this one
    (``after`` is what this task returns; ``uses`` the inputs it gives) reads it at once.
    The result travels as a scheduler event (just ahead of the task's completion, in the
    same message), so the runner needs no second round trip to fetch it.
    """
    if after is not None:  # queued to follow an attempt of a step it depends on
        if not after[0]:
            return False, "", ""  # that attempt did not succeed: this one never starts
        for param in uses:
            task.inputs[param] = (after[1], after[2])
    worker = get_worker()
    state = worker.plugins.get(plugin)
    committed, location = False, ""
    if not isinstance(state, _RunPlugin) or state.pipeline is None:
        why = state.error if isinstance(state, _RunPlugin) else "the run's plugin is missing"
        res = Result(ok=False, error_type="DefinitionError", retryable=False, error=(
            f"the pipeline could not be loaded on Dask worker {worker.address} ({why}). "
            "Fix: install the pipeline's package (and pipeline-reliability[dask]) on the "
            "workers, or share the project directory on the same path"))
    else:
        res = run_task(state.pipeline, state.hooks, task)
        store = state.store
        if res.ok and store is not None and res.digest is not None:
            try:
                store.commit(task.staging_file, res.digest)
                committed, location = True, store.location(res.digest)
            except Exception as exc:  # the store, not the step: no retry fixes it
                res = Result(ok=False, error_type=type(exc).__name__, retryable=False,
                             error=f"{exc}", events=res.events, scratch_used=res.scratch_used)
    msg = {"key": key, "committed": committed, "result": _dumps(res)}
    if isinstance(state, _RunPlugin):  # sent as the task ends (see _RunPlugin.transition)
        state.results[key] = msg
    else:
        worker.log_event(_RESULTS, msg)
    return committed, location, res.codec or ""


def _dumps(res: Result) -> bytes:
    try:
        return pickle.dumps(res, protocol=5)
    except Exception:  # an event detail or failure case that does not pickle: as repr
        res.events = [(kind, {k: repr(v) for k, v in d.items()}, at)
                      for kind, d, at in res.events]
        res.failures = [{k: repr(v) for k, v in f.items()} for f in res.failures]
        return pickle.dumps(res, protocol=5)


def _pid() -> int:
    return os.getpid()


def _kill_pid(pid: int) -> None:  # run on a nanny: SIGKILL of its worker process
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- connections (one per scheduler, shared by the runs of this process) -----------------
@record
class _WorkerInfo:
    nthreads: int
    pid: int | None
    host: str


@record
class _Connection:
    key: str
    client: Client
    cluster: LocalCluster | None
    workers: dict[str, _WorkerInfo] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # joined, not yet looked at
    busy: dict[str, int] = field(default_factory=dict)  # address -> attempts of all our runs
    executors: set[DaskExecutor] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: tuple[float, Any]) -> None:
        """Scheduler events (on the client's event loop: never blocks)."""
        msg = event[1]
        if not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "remove-worker":
            addr = str(msg.get("worker"))
            with self.lock:
                info = self.workers.pop(addr, None)
                self.pending.discard(addr)
                self.busy.pop(addr, None)
                listeners = list(self.executors)
            for ex in listeners:
                ex._worker_gone(addr, info, set(msg.get("processing-tasks") or ()),
                                str(msg.get("stimulus_id", "")))
        elif action == "add-worker":
            with self.lock:
                self.pending.add(str(msg.get("worker")))
                listeners = list(self.executors)
            for ex in listeners:
                ex.wake()

    def on_result(self, event: tuple[float, Any]) -> None:
        """An attempt's result (on the client's event loop)."""
        msg = event[1]
        if not isinstance(msg, dict):
            return
        key = str(msg.get("key"))
        with self.lock:
            listeners = list(self.executors)
        for ex in listeners:
            if ex._result(key, msg):
                return

    def refresh(self, addrs: Sequence[str] | None = None) -> None:
        """Look up threads, pid and host of workers (all, or those that just joined)."""
        client = self.client
        nthreads = client.nthreads(list(addrs) if addrs is not None else None)
        pids = client.run(_pid, workers=list(nthreads), on_error="ignore")
        with self.lock:
            for addr, n in nthreads.items():
                host = addr.split("://", 1)[-1].rsplit(":", 1)[0]
                self.workers[addr] = _WorkerInfo(int(n), pids.get(addr), host)
                self.pending.discard(addr)

    def sync(self) -> None:
        with self.lock:
            pending = list(self.pending)
        if pending:
            with contextlib.suppress(Exception):  # gone again meanwhile: its event follows
                self.refresh(pending)

    def close(self) -> None:
        for topic in ("all", _RESULTS):  # else the scheduler reports our leaving to us
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)


_CONNECTIONS: dict[str, _Connection] = {}
_CONNECT_LOCK = threading.Lock()
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _connect(scheduler: str | None, workers: int) -> _Connection:
    key = scheduler or f"local:{workers}"
    with _CONNECT_LOCK:
        conn = _CONNECTIONS.get(key)
        if conn is not None and conn.client.status == "running":
            return conn
        if conn is not None:
            conn.close()
        if scheduler:
            try:
                client = Client(scheduler, set_as_default=False, timeout=10)
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({exc})",
                                  path=("dask", "scheduler"),
                                  fix="start it (`dask scheduler`), or check the address; "
                                      "leave --scheduler out for a LocalCluster") from None
            cluster = None
        else:
            # a killed worker's nanny starts a fresh one; under load that takes longer than
            # the default 15 s after which the cluster gives up on it and closes the nanny
            dask.config.set({"distributed.deploy.lost-worker-timeout": "600s"})
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                   silence_logs=logging.ERROR)
            client = Client(cluster, set_as_default=False)
        # the client sends to the scheduler at most once per 10 ms by default: every step
        # of a chain (submit, result, submit) would wait for it
        comm = getattr(client, "scheduler_comm", None)
        if comm is not None and getattr(comm, "interval", 0) > _SEND_INTERVAL:
            comm.interval = _SEND_INTERVAL
        conn = _Connection(key, client, cluster)
        client.subscribe_topic("all", conn.on_event)
        client.subscribe_topic(_RESULTS, conn.on_result)
        _CONNECTIONS[key] = conn
        return conn


def _release(att: _Attempt) -> None:
    """Drop our reference to an attempt's task (set once ``submit`` returned; a later
    answer is released by ``submit`` itself)."""
    with contextlib.suppress(Exception):
        if att.future is not None:
            att.future.release()


def _release_slot(conn: _Connection, addr: str) -> None:
    """One attempt less on ``addr`` (call with ``conn.lock`` held)."""
    if conn.busy.get(addr, 0) > 0:
        conn.busy[addr] -= 1


def close_clusters() -> None:
    """Close every Dask client and ``LocalCluster`` this process opened (also at exit)."""
    with _CONNECT_LOCK:
        conns = list(_CONNECTIONS.values())
        _CONNECTIONS.clear()
    for conn in conns:
        conn.close()


atexit.register(close_clusters)


# -- the executor -------------------------------------------------------------------------
@record(slots=True)
class _Attempt:
    task: Task
    key: str
    future: Any
    worker: str  # the Dask worker address
    wid: str  # what the ledger records: the pid (a worker on this machine) or the address
    uses: tuple[str, ...] = ()  # queued to follow another: its inputs from that one


class DaskExecutor:
    """Attempts as Dask tasks on a ``LocalCluster`` (``workers`` single-threaded worker
    processes on 127.0.0.1) or on the cluster of ``scheduler`` (``tcp://host:port``)."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        self.workers = max(1, workers or 2)
        self.scheduler = scheduler
        self._conn: _Connection | None = None
        self._plugin = ""
        self._lock = threading.Lock()
        self._active: dict[str, _Attempt] = {}  # key -> attempt
        self._followers: dict[str, _Attempt] = {}  # key of an attempt -> the one queued after it
        self._queued: dict[str, _Attempt] = {}  # key -> a follower that has not started
        self._store = False  # workers commit outputs into the run's store
        self._keys: dict[int, str] = {}  # id(task) -> key
        self._deaths: dict[str, int] = {}  # step -> workers lost running it (this run)
        self._outcomes: deque[Outcome] = deque()
        self._rfd, self._wfd = -1, -1
        self._spent: list[Any] = []  # futures of answered attempts, not yet released
        self._serial = itertools.count()
        self._released = self._checked = time.monotonic()

    # -- protocol -------------------------------------------------------------------------
    def start(self, pipeline: Pipeline, hooks: Sequence[StepHook],
              store: Store | None = None) -> None:
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        conn = _connect(self.scheduler, self.workers)
        self._conn = conn
        conn.client.wait_for_workers(1, timeout=120)  # the others may still be restarting
        self._store = store is not None
        payload = cloudpickle.dumps((pipeline, list(hooks), remote_options(),
                                     store.spec() if store is not None else None))
        self._plugin = f"{_KEY_PREFIX}-{uuid.uuid4().hex[:12]}"
        conn.client.register_plugin(_RunPlugin(payload, sys.path), name=self._plugin)
        with conn.lock:
            conn.executors.add(self)
        conn.refresh()

    def slots(self) -> int:
        conn = self._connection()
        conn.sync()
        with conn.lock:  # runs side by side share the workers: no attempt waits in a queue
            return sum(max(0, w.nthreads - conn.busy.get(a, 0))
                       for a, w in conn.workers.items())

    def submit(self, task: Task, placed: Callable[[str | None], None]) -> str | None:
        conn = self._connection()
        with conn.lock, self._lock:
            free = [(conn.busy.get(a, 0) - w.nthreads, a) for a, w in conn.workers.items()
                    if conn.busy.get(a, 0) < w.nthreads]
            assert free, "DaskExecutor.submit() with no free slot"
            addr = min(free)[1]
            info = conn.workers[addr]
            conn.busy[addr] = conn.busy.get(addr, 0) + 1
        wid = str(info.pid) if info.pid and self._is_local(info) else addr
        placed(wid)  # in the ledger before the attempt can start
        key = self._key(task)
        att = _Attempt(task, key, None, addr, wid)
        with self._lock:  # known before Dask can answer: its result may come back at once
            self._active[key] = att
            self._keys[id(task)] = key
        future = conn.client.submit(_attempt, self._plugin, key, task, key=key, workers=[addr],
                                    allow_other_workers=False, pure=False, retries=0)
        with self._lock:
            att.future = future
            answered = key not in self._active
        if answered:  # its result or its worker's death came first: already reported
            future.release()
        self._maybe_release()
        return wid

    def follow(self, task: Task, after: Task, uses: Sequence[str],
               placed: Callable[[str | None], None]) -> bool:
        """Queue ``task`` on the worker running ``after``: Dask starts it the moment
        ``after`` ends (its result is a dependency of the task), with no round trip through
        the runner -- if ``after`` committed its output, which the inputs ``uses`` read."""
        conn = self._connection()
        with self._lock:
            prev = self._keys.get(id(after))
            pred = (self._active.get(prev) or self._queued.get(prev)) if prev else None
            if (not self._store or pred is None or pred.future is None
                    or prev in self._followers):
                return False
        with conn.lock:
            info = conn.workers.get(pred.worker)
        if info is None:
            return False
        wid = str(info.pid) if info.pid and self._is_local(info) else pred.worker
        placed(wid)  # in the ledger before it can start
        key = self._key(task)
        att = _Attempt(task, key, None, pred.worker, wid, tuple(uses))
        with self._lock:  # registered before it can start: the answer of `after` sees it
            if pred.key not in self._active and pred.key not in self._queued:
                return False  # `after` ended meanwhile: dispatch it as usual
            self._followers[pred.key] = att
            self._queued[key] = att
            self._keys[id(task)] = key
        future = conn.client.submit(_attempt, self._plugin, key, task, pred.future,
                                    tuple(uses), key=key, workers=[pred.worker],
                                    allow_other_workers=False, pure=False, retries=0)
        with self._lock:
            att.future = future
            dropped = key not in self._active and key not in self._queued
        if dropped:  # `after` failed, was lost or killed before this returned
            future.release()
        self._maybe_release()
        return True

    def wait(self, timeout: float | None) -> list[Outcome]:
        if not self._outcomes:
            if self._active:  # look at the futures now and then (see _check_futures)
                left = max(0.0, self._checked + _CHECK_EVERY - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            with contextlib.suppress(InterruptedError):
                ready, _, _ = select.select([self._rfd], [], [], timeout)
            if not ready and self._spent:  # idle: a good moment to release
                self._release_spent()
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._rfd, 4096):
                pass
        if time.monotonic() - self._checked >= _CHECK_EVERY:
            self._check_futures()
        out: list[Outcome] = []
        while self._outcomes:
            out.append(self._outcomes.popleft())
        return out

    def kill(self, task: Task) -> None:
        conn = self._connection()
        with conn.lock, self._lock:
            key = self._keys.pop(id(task), None)
            att = self._active.pop(key, None) if key else None
            if att is not None:
                _release_slot(conn, att.worker)
                self._drop_follower(att.key)
        if att is None:
            return
        _release(att)
        self._kill_worker(att.worker)

    def wake(self) -> None:
        if self._wfd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wfd, b"x")

    def shutdown(self, graceful: bool) -> None:
        with self._lock:
            left = list(self._active.values())
        for att in left:
            if not graceful:
                self.kill(att.task)
            elif self._take(att.key)[0] is not None:
                _release(att)
        with self._lock:
            for key in list(self._followers):
                self._drop_follower(key)
        self._release_spent()
        conn = self._conn
        if conn is not None:
            with conn.lock:
                conn.executors.discard(self)
            if conn.client.status == "running":
                with contextlib.suppress(Exception):
                    conn.client.unregister_worker_plugin(self._plugin)
        self._conn = None
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._rfd = self._wfd = -1

    # -- internals ------------------------------------------------------------------------
    def _key(self, task: Task) -> str:
        """A task key unique in the cluster: the run's plugin name is (a uuid), and a
        counter numbers the tasks of the run."""
        return f"{self._plugin}-{task.step}-{task.attempt}-{next(self._serial)}"

    def _connection(self) -> _Connection:
        assert self._conn is not None, "DaskExecutor.start() was not called"
        return self._conn

    def _is_local(self, info: _WorkerInfo) -> bool:
        conn = self._connection()
        return conn.cluster is not None or info.host in _LOCAL_HOSTS or info.host in _own_ips()

    def _post(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self.wake()

    def _take(self, key: str, committed: bool | None = None
              ) -> tuple[_Attempt | None, bool]:
        """Take an attempt that ended; ``committed`` (for one that answered) starts the
        attempt queued to follow it, which then holds its worker thread. Returns the
        attempt and whether its follower started."""
        conn = self._conn
        if conn is None:  # a late callback after the run ended: nothing is waiting for it
            return None, False
        with conn.lock, self._lock:
            att = self._active.pop(key, None)
            if att is None:
                return None, False
            self._keys.pop(id(att.task), None)
            nxt = self._followers.get(key)
            started = bool(committed) and nxt is not None
            if started and nxt is not None:
                del self._followers[key]
                del self._queued[nxt.key]
                self._active[nxt.key] = nxt
            else:
                _release_slot(conn, att.worker)
                self._drop_follower(key)
            return att, started

    def _drop_follower(self, key: str) -> None:
        """Forget the attempt queued after ``key`` (call with ``self._lock`` held): it never
        starts (its task runs nothing, or sits pinned to a dead worker until released)."""
        nxt = self._followers.pop(key, None)
        if nxt is not None:
            self._queued.pop(nxt.key, None)
            self._keys.pop(id(nxt.task), None)
            if nxt.future is not None:  # else follow() releases it
                self._spent.append(nxt.future)
            self._drop_follower(nxt.key)  # and what was queued behind it

    def _result(self, key: str, msg: dict[str, Any]) -> bool:
        """The result event of one of our attempts (on the client's event loop)."""
        if not key.startswith(f"{self._plugin}-"):
            return False
        at = time.monotonic()
        committed = bool(msg.get("committed"))
        try:
            res = pickle.loads(msg["result"])
        except Exception as exc:
            res = Result(ok=False, error_type=type(exc).__name__,
                         error=f"the attempt's result could not be read: {exc}")
            committed = False
        att, started = self._take(key, committed)
        if att is None:
            return True  # killed or lost: already reported
        if att.future is not None:  # else submit() releases it
            with self._lock:
                self._spent.append(att.future)
        self._post(Outcome(att.task, result=res, worker=att.wid, committed=committed,
                           next_started=started, at=at))
        return True

    def _maybe_release(self) -> None:
        if len(self._spent) >= _RELEASE_EVERY or (
                self._spent and time.monotonic() - self._released >= _RELEASE_AFTER):
            self._release_spent()

    def _release_spent(self) -> None:
        """Release the tasks of answered attempts (their results came as events)."""
        with self._lock:
            spent, self._spent = self._spent, []
        self._released = time.monotonic()
        for future in spent:
            with contextlib.suppress(Exception):
                future.release()

    def _check_futures(self) -> None:
        """Report attempts whose task ended without a result event: Dask gave up on it (an
        error outside the step wrapper) or the scheduler dropped it. A finished task's
        result event came first (same streams, in order)."""
        self._checked = time.monotonic()
        with self._lock:
            ended = [a for a in self._active.values() if a.future is not None
                     and a.future.status in ("error", "cancelled", "lost")]
        for att in ended:
            if self._take(att.key)[0] is None:
                continue  # answered, killed or lost meanwhile: already reported
            future = att.future
            exc = None
            with contextlib.suppress(Exception):
                exc = future.exception(timeout=5) if future.status == "error" else None
            future.release()
            reason = (f"Dask gave up on the attempt on worker {att.worker}: "
                      f"{type(exc).__name__}: {exc}" if exc is not None else
                      f"the Dask scheduler dropped the attempt on worker {att.worker}")
            self._post(Outcome(att.task, lost=reason, worker=att.wid))

    def _worker_gone(self, addr: str, info: _WorkerInfo | None, processing: set[str],
                     stimulus: str) -> None:
        """A worker left the cluster: each of our attempts on it is lost (on the client's
        event loop)."""
        with self._lock:
            gone = [a for a in self._active.values() if a.worker == addr]
            for att in gone:
                del self._active[att.key]
                self._keys.pop(id(att.task), None)
                self._drop_follower(att.key)
        cause = stimulus.rsplit("-", 1)[0] if stimulus else "remove-worker"
        pid = f" (pid {info.pid})" if info is not None and info.pid else ""
        for att in gone:
            _release(att)  # pinned to the dead worker: Dask cannot rerun it
            step = att.task.step
            if att.key not in processing:
                self._post(Outcome(att.task, worker=att.wid, lost=(
                    f"Dask worker {addr}{pid} died before it received the task")))
                continue
            self._deaths[step] = self._deaths.get(step, 0) + 1
            n = self._deaths[step]
            self._post(Outcome(att.task, worker=att.wid, lost=(
                f"Dask worker {addr}{pid} died while running step {step!r} attempt "
                f"{att.task.attempt} ({cause}); workers lost running {step!r} in this run: "
                f"{n}")))

    def _kill_worker(self, addr: str) -> None:
        """SIGKILL the worker process running an attempt: the only stop a hung step cannot
        ignore. Its nanny (if any) starts a fresh worker."""
        conn = self._connection()
        with conn.lock:  # never place another attempt on it
            info = conn.workers.pop(addr, None)
        if info is None or info.pid is None:
            return
        if self._is_local(info):
            _kill_pid(info.pid)
            return
        try:
            conn.client.run(_kill_pid, info.pid, workers=[addr], nanny=True,
                            on_error="raise")
        except Exception:  # no nanny: the worker ends itself
            with contextlib.suppress(Exception):
                conn.client.run(_kill_pid, info.pid, workers=[addr], on_error="ignore")


def _own_ips() -> set[str]:
    try:
        return {socket.gethostname(), socket.gethostbyname(socket.gethostname())}
    except OSError:
        return set()
