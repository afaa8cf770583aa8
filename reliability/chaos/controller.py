"""The runner-side half of chaos: worker kills, method faults, leases, abort conditions.

A :class:`Controller` subscribes to the runner's event bus and applies the faults whose
:attr:`~reliability.chaos.faults.FaultBase.where` is ``controller``: on ``step_started`` it
arms a timer that SIGKILLs the worker (a real signal to a real process; the runner notices
the lost worker and retries), cancelled when the attempt ends; at the start of the method it
applies the network faults that have no step. It also publishes the faults an attempt
cannot report itself (a hang). Worker-side faults are applied and undone inside their
attempt by :class:`~reliability.chaos.hook.ChaosHook`; when an attempt ends the controller
only removes the toxics a worker leased and could not undo because it died mid-attempt. A
sweeper thread expires leases (a network fault's ``duration``), watches abort conditions
and cancels the run through ``Runner.cancel``.

A fault applied on a timer thread that fails (proxy gone, API unreachable) is recorded in
:attr:`Controller.errors`; an experiment with such errors fails. Applying a fault and
:meth:`Controller.stop` are serialized: once stopped, nothing more is applied, and a fault
applied while ``stop`` waited is undone with the rest. An undo that fails keeps its lease,
so ``reliability chaos cleanup`` can undo it later. A worker kill is
published before the signal is sent, so its cause precedes the lost worker in every
subscriber (the bus serializes delivery across threads); other events raised on timer
threads are queued and published with the next runner event.

    with inject(runner, KillWorker(name="k", step="train", after=0.2), seed=7):
        runner.run()
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from reliability._record import record
from reliability.chaos.faults import FaultBase, KillWorker, NetworkFault, fires
from reliability.chaos.hook import ChaosHook, toxic_name
from reliability.chaos.leases import Lease, LeaseStore, ProxyApi
from reliability.errors import ChaosError
from reliability.events import Event, EventBus, EventKind

__all__ = ["AbortRule", "Controller", "inject"]

log = logging.getLogger("reliability.chaos")

_ENDS = frozenset({EventKind.STEP_SUCCEEDED, EventKind.STEP_FAILED, EventKind.STEP_RETRYING,
                   EventKind.STEP_TIMED_OUT, EventKind.WORKER_LOST, EventKind.STEP_CANCELLED})
_RUN_ENDS = frozenset({EventKind.RUN_SUCCEEDED, EventKind.RUN_FAILED,
                       EventKind.RUN_CANCELLED})
_FAILED = frozenset({EventKind.STEP_RETRYING, EventKind.STEP_FAILED})


@record(frozen=True, slots=True)
class AbortRule:
    """Stop the method early: too many failed attempts, or the run takes too long."""

    max_failed_attempts: int | None = None
    max_duration: float | None = None


class Controller:
    """Runner-side fault injection for one schedule (see the module docstring)."""

    def __init__(self, faults: Sequence[FaultBase], *, seed: int = 0,
                 experiment: str = "adhoc", proxy_api: str | None = None,
                 leases: LeaseStore | None = None, embedded_proxy: bool = False,
                 abort: AbortRule | None = None, watch: AbortRule | None = None,
                 sweep_interval: float = 0.05) -> None:
        self.faults = list(faults)
        self.seed = seed
        self.experiment = experiment
        self.api = ProxyApi(proxy_api) if proxy_api else None
        self.leases = leases
        self.embedded_proxy = embedded_proxy
        self.abort_rule = abort or AbortRule()
        self.watch = watch
        self.deviations: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._stopped = False
        self.sweep_interval = sweep_interval
        self.timeline: list[dict[str, Any]] = []
        self.rollbacks: list[dict[str, Any]] = []
        self.aborted: str | None = None
        self.failed_attempts = 0
        self._lock = threading.RLock()
        self._active: dict[tuple[str, int], int] = {}
        self._timers: dict[tuple[str, int] | str, list[threading.Timer]] = {}
        self._pending: list[Event] = []
        self._bus: EventBus | None = None
        self._cancel: Callable[[], None] | None = None
        self._unsub: Any = None
        self._pipeline = ""
        self._run_id = ""
        self._t0: float | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._mine: dict[str, Lease] = {}
        self._kept: set[str] = set()  # leases whose undo failed, left for a later cleanup

    # -- lifecycle --------------------------------------------------------------------
    def attach(self, bus: EventBus, cancel: Callable[[], None] | None = None) -> None:
        """Subscribe to ``bus``; ``cancel`` stops the run when an abort condition fires."""
        self._bus = bus
        self._cancel = cancel
        self._unsub = bus.subscribe(self.on_event)
        self._sweeper = threading.Thread(target=self._sweep, daemon=True,
                                         name="chaos-sweeper")
        self._sweeper.start()

    def start_method(self) -> None:
        """Apply the faults that are not tied to a step (network faults on a proxy).

        Every network fault's proxy must exist on the proxy server (ChaosError otherwise)."""
        self.check_proxies()
        for f in self.faults:
            if isinstance(f, NetworkFault) and f.where == "controller" \
                    and fires(f, self.seed, 1):
                delay = float(f.after)
                if delay > 0:
                    self._arm("method", delay, self._delayed, f)
                else:
                    self._apply_network(f)

    def check_proxies(self) -> None:
        """Refuse network faults on proxies the server does not have, before the method."""
        wanted = {f.proxy: f.name for f in self.faults if isinstance(f, NetworkFault)}
        if not wanted or self.api is None:
            return
        known = sorted(self.api.proxies())
        for proxy, fault in wanted.items():
            if proxy not in known:
                raise ChaosError(f"network fault {fault!r}: proxy {proxy!r} does not exist on "
                                 f"{self.api.url} (it has {known}). Fix: correct the fault's "
                                 "'proxy', or create it (target.services)")

    def stop(self) -> list[dict[str, Any]]:
        """Cancel timers, undo every lease this controller holds, flush queued events.

        Returns what was rolled back; a second call does nothing and returns ``[]``."""
        with self._lock:  # waits for a fault being applied; none is applied after this
            if self._stopped:
                return []
            self._stopped = True
            timers = [t for ts in self._timers.values() for t in ts]
            self._timers.clear()
        self._stop.set()
        for t in timers:
            t.cancel()
        for t in timers:
            if t is not threading.current_thread():
                t.join(5)
        if self._sweeper is not None:
            self._sweeper.join(2)
        for lease in self._my_leases():
            self._undo(lease, "rollback")
        self.flush()
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        return self.rollbacks

    # -- events -----------------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        self.flush()
        if ev.kind is EventKind.RUN_STARTED:
            self._pipeline, self._run_id, self._t0 = ev.pipeline, ev.run_id, ev.time
        elif ev.kind in _RUN_ENDS:
            self._t0 = None
        self.timeline.append(ev.to_dict())
        if ev.step is None or ev.attempt is None:
            return
        key = (ev.step, ev.attempt)
        if ev.kind is EventKind.STEP_STARTED:
            self._on_started(ev, key)
        elif ev.kind in _ENDS:
            with self._lock:
                self._active.pop(key, None)
                for t in self._timers.pop(key, []):
                    t.cancel()
            for lease in self._my_leases():  # left by a worker that died mid-attempt
                if (lease.step, lease.attempt) == key and lease.expires is None:
                    self._undo(lease, "attempt ended")
            if ev.kind in _FAILED:
                self._count_failure()

    def _count_failure(self) -> None:
        self.failed_attempts += 1
        n = self.failed_attempts
        rule = self.abort_rule.max_failed_attempts
        if rule is not None and n > rule:
            self.abort(f"{n} failed attempts exceed the error budget of "
                       f"max_failed_attempts={rule}")
        limit = self.watch.max_failed_attempts if self.watch else None
        if limit is not None and n > limit:
            self._deviate("max_failed_attempts", f"{n} failed attempts during the method, "
                          f"budget {limit}")

    def _deviate(self, probe: str, detail: str) -> None:
        with self._lock:
            if any(d["probe"] == probe for d in self.deviations):
                return
            self.deviations.append({"probe": probe, "ok": False, "detail": detail,
                                    "time": time.time()})

    def _on_started(self, ev: Event, key: tuple[str, int]) -> None:
        pid = int(ev.details.get("worker_pid") or 0)
        with self._lock:
            self._active[key] = pid
        for f in self.faults:
            if f.step != ev.step or not fires(f, self.seed, key[1]):
                continue
            if isinstance(f, KillWorker) and pid:
                self._arm(key, float(f.after), self._kill, key, pid, f)
            elif f.reported_by_controller:  # its attempt never returns to report it
                own = f.model_dump(mode="json", exclude={*FaultBase.model_fields, "type"})
                self._publish(EventKind.FAULT_INJECTED, key, {
                    "fault": f.name, "type": f.type,  # type: ignore[attr-defined]
                    "target": f.step, "source": "controller", "after": float(f.after), **own})

    def _arm(self, key: tuple[str, int] | str, delay: float, fn: Any, *args: Any) -> None:
        t = threading.Timer(max(0.0, delay), fn, args)
        t.daemon = True
        with self._lock:
            self._timers.setdefault(key, []).append(t)
        t.start()

    def _kill(self, key: tuple[str, int], pid: int, f: KillWorker) -> None:
        with self._lock:
            if self._active.get(key) != pid:
                return  # the attempt ended before the trigger
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            self._active.pop(key, None)
        # published before the signal, so every subscriber sees the cause before the
        # runner reports the lost worker (the bus serializes delivery across threads)
        self._queue(EventKind.FAULT_INJECTED, key, {
            "fault": f.name, "type": f.type, "target": f.step, "source": "controller",
            "signal": "SIGKILL", "worker_pid": pid, "after": float(f.after)})
        self.flush()
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _queue(self, kind: EventKind, key: tuple[str, int] | None, details: dict[str, Any]
               ) -> None:
        step, attempt = key if key else (None, None)
        with self._lock:
            self._pending.append(Event(kind=kind, pipeline=self._pipeline,
                                       run_id=self._run_id, step=step, attempt=attempt,
                                       details=details))

    def _publish(self, kind: EventKind, key: tuple[str, int] | None,
                 details: dict[str, Any]) -> None:
        self._queue(kind, key, details)
        self.flush()

    def flush(self) -> None:
        """Publish the events timer threads queued (call from the runner's thread)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for ev in pending:
            if self._bus is not None and ev.run_id:
                self._bus.publish(ev)
            else:
                self.timeline.append(ev.to_dict())

    # -- network ----------------------------------------------------------------------
    def _delayed(self, f: NetworkFault) -> None:
        """Timer thread: apply ``f`` unless the method stopped; a failure is recorded in
        :attr:`errors` (an exception here would reach no one)."""
        try:
            self._apply_network(f)
        except Exception as exc:
            msg = f"network fault {f.name!r} on proxy {f.proxy!r} was not applied: {exc}"
            log.error("chaos: %s", msg)
            with self._lock:
                self.errors.append(msg)

    def _apply_network(self, f: NetworkFault) -> None:
        """Apply a network fault of the whole method (one without a step)."""
        if self.api is None:
            raise ChaosError(f"network fault {f.name!r} needs a proxy API. Fix: set "
                             "target.proxy_api or let the experiment start the embedded proxy")
        with self._lock:  # held across the API call, so stop() cannot run in between
            if self._stopped:
                return  # the method stopped before the trigger
            name = toxic_name(self.experiment, f.name, None)
            now = time.time()
            lease = Lease(id=f"{self.experiment}:{name}", experiment=self.experiment,
                          owner_pid=os.getpid(), host=_hostname(), api=self.api.url,
                          proxy=f.proxy, kind="disabled" if f.toxic == "down" else "toxic",
                          toxic=None if f.toxic == "down" else name,
                          embedded=self.embedded_proxy, created=now,
                          expires=now + f.duration if f.duration else None)
            self._remember(lease)
            if f.toxic == "down":
                self.api.set_enabled(f.proxy, False)
            else:
                self.api.add_toxic(f.proxy, name, f.toxic, stream=f.stream,
                                   toxicity=f.toxicity, attributes=f.attributes)
        self._queue(EventKind.FAULT_INJECTED, None, {
            "fault": f.name, "type": f.type, "target": f.proxy, "source": "controller",
            "toxic": f.toxic, "attributes": dict(f.attributes), "stream": f.stream,
            "duration": f.duration, "after": float(f.after)})

    def _remember(self, lease: Lease) -> None:
        with self._lock:
            self._mine[lease.id] = lease
        if self.leases is not None:
            self.leases.add(lease)

    def _my_leases(self) -> list[Lease]:
        found = {lease.id: lease for lease in
                 (self.leases.list(self.experiment) if self.leases else [])
                 if lease.kind != "proxy"}  # proxies belong to the experiment's target
        with self._lock:
            found.update(self._mine)
            kept = set(self._kept)
        return sorted((lease for lease in found.values() if lease.id not in kept),
                      key=lambda lease: (lease.created, lease.id))

    def _undo(self, lease: Lease, why: str) -> None:
        """Undo ``lease``; if that fails the lease stays in the store for a cleanup."""
        entry = {"action": f"undo {lease.kind}", "proxy": lease.proxy, "toxic": lease.toxic,
                 "reason": why, "ok": True}
        try:
            lease.undo(ProxyApi(lease.api))
        except ChaosError as exc:
            entry.update(ok=False, error=f"{exc} (lease kept for 'reliability chaos cleanup')")
        with self._lock:
            self._mine.pop(lease.id, None)
            if not entry["ok"]:
                self._kept.add(lease.id)
        if self.leases is not None and entry["ok"]:
            self.leases.remove(lease.id)
        self.rollbacks.append(entry)

    # -- sweeper and abort ------------------------------------------------------------
    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_interval):
            now = time.time()
            for lease in self._my_leases():
                if lease.expires is not None and lease.expires <= now:
                    self._undo(lease, "lease expired")
            if self._t0 is None:
                continue
            limit = self.abort_rule.max_duration
            if limit is not None and now - self._t0 > limit:
                self.abort(f"the run passed max_duration={limit}s")
            slo = self.watch.max_duration if self.watch else None
            if slo is not None and now - self._t0 > slo:
                self._deviate("max_duration", f"the run was still going after {slo}s")

    def abort(self, reason: str) -> None:
        """Stop the method: cancel the run (as SIGTERM would) and remember why."""
        with self._lock:
            if self.aborted is not None:
                return
            self.aborted = reason
        log.warning("chaos: aborting the method: %s", reason)
        if self._cancel is not None:
            self._cancel()
        elif signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler cancels the run


def _hostname() -> str:
    import socket

    return socket.gethostname()


@contextmanager
def inject(runner: Any, *faults: FaultBase, seed: int = 0, proxy_api: str | None = None,
           leases: LeaseStore | None = None, experiment: str = "adhoc",
           abort: AbortRule | None = None) -> Iterator[Controller]:
    """Install faults on a :class:`~reliability.runner.Runner` for the ``with`` block.

    Unnamed faults get ``TYPE-INDEX`` names. Everything is rolled back on exit.
    """
    if leases is None:
        from pathlib import Path

        leases = LeaseStore(Path(runner.home) / "chaos" / "state.db")
    named = [f if f.name else f.model_copy(update={"name": f"{f.type}-{i}"})  # type: ignore[attr-defined]
             for i, f in enumerate(faults)]
    hook = ChaosHook(named, seed=seed, experiment=experiment, proxy_api=proxy_api,
                     leases=leases, holds_for_kills=True)
    ctl = Controller(named, seed=seed, experiment=experiment, proxy_api=proxy_api,
                     leases=leases, abort=abort)
    runner.hooks.insert(0, hook)
    ctl.attach(runner.bus, getattr(runner, "cancel", None))
    try:
        ctl.start_method()
        yield ctl
    finally:
        ctl.stop()
        runner.hooks.remove(hook)
