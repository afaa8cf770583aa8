"""The in-worker half of chaos: a :class:`~reliability.pipeline.StepHook` that injects faults.

It applies the faults whose :attr:`~reliability.chaos.faults.FaultBase.where` is ``worker``
(see :mod:`reliability.chaos.faults`), each inside the attempt it hits:
:meth:`ChaosHook.attempt` opens an :class:`AttemptFaults` around the whole attempt, the
faults act before the body (exceptions, latency, hangs, input corruption, disk and memory
limits, network toxics) or after it (output corruption, exceptions ``when: after``), and
when the attempt ends — succeeded, failed or raised — its ``finally`` cancels the faults'
pending timers and undoes what they changed (limits and signal handlers restored, toxics
removed), before the worker runs anything else. A delayed fault (``after`` > 0) waits on a
timer that belongs to its attempt, so it can never fire during the next one.

A network toxic is also leased (``HOME/chaos/state.db``): if the worker dies mid-attempt the
controller removes it when the attempt ends. A network fault with a ``duration`` is not
undone with its attempt: it lasts that long in wall-clock time (its lease expires in the
controller), and an attempt it fires on while it is still in effect does not add it twice.
Every fault applied here is reported with ``ctx.emit("fault_injected", ...)``.

With no faults for a step the hook costs one dict lookup per call.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from reliability.chaos.faults import (
    ERRORS,
    DataFault,
    DiskQuota,
    ExceptionFault,
    FaultBase,
    Hang,
    KillWorker,
    Latency,
    MemoryLimit,
    NetworkFault,
    fires,
    jitter,
)
from reliability.chaos.leases import Lease, LeaseStore, ProxyApi
from reliability.errors import ChaosError
from reliability.pipeline import NO_ATTEMPT_SCOPE, StepContext, StepHook, StepSpec

__all__ = ["AttemptFaults", "ChaosHook", "toxic_name"]

Mutator = Callable[[Any], Any]
Undo = Callable[[], None]

KILL_GRACE = 5.0
"""Seconds past a ``kill_worker`` fault's ``after`` an attempt that finished sooner is held
for the controller's SIGKILL, before it goes on (with ``holds_for_kills``)."""


_INJECTED: dict[str, type[BaseException]] = {}


def _error_type(name: str) -> type[BaseException]:
    """A subclass of the builtin ``name`` (same name, so retry policies and reports see
    ``ConnectionError``), distinct so tracebacks show the fault was injected."""
    cls = _INJECTED.get(name)
    if cls is None:
        base = ERRORS[name]
        cls = type(name, (base,), {"__module__": "builtins", "__qualname__": name})
        _INJECTED[name] = cls
    return cls


def toxic_name(experiment: str, fault: str, attempt: int | None) -> str:
    suffix = f"-a{attempt}" if attempt is not None else ""
    return f"chaos-{experiment}-{fault}{suffix}"


class ChaosHook(StepHook):
    """Injects the worker-side faults of a schedule; inert (one lookup) for other steps."""

    name = "chaos"

    def __init__(self, faults: Iterable[FaultBase] = (), *, seed: int = 0,
                 experiment: str = "adhoc", proxy_api: str | None = None,
                 leases: LeaseStore | None = None, embedded_proxy: bool = False,
                 mutations: Mapping[str, Mutator] | None = None,
                 holds_for_kills: bool = False) -> None:
        self._by_step: dict[str, list[FaultBase]] = {}
        self._kills: dict[str, list[KillWorker]] = {}
        self._open: dict[tuple[str, str, int], AttemptFaults] = {}
        self._began: dict[tuple[str, str, int], float] = {}
        self.configure(faults, seed=seed, experiment=experiment, proxy_api=proxy_api,
                       leases=leases, embedded_proxy=embedded_proxy, mutations=mutations,
                       holds_for_kills=holds_for_kills)

    def configure(self, faults: Iterable[FaultBase], *, seed: int = 0,
                  experiment: str = "adhoc", proxy_api: str | None = None,
                  leases: LeaseStore | None = None, embedded_proxy: bool = False,
                  mutations: Mapping[str, Mutator] | None = None,
                  holds_for_kills: bool = False) -> None:
        """Replace the schedule (takes effect for workers forked afterwards).

        ``holds_for_kills``: a :class:`~reliability.chaos.controller.Controller` SIGKILLs
        the worker of each ``kill_worker`` fault ``after`` seconds into its attempt; an
        attempt that finishes sooner (a warm worker, a faster machine than the baseline's)
        is held open before its output is kept, until the kill lands (or
        :data:`KILL_GRACE` seconds past ``after``), so the fault always fires: killed after
        its work and before its commit."""
        by_step: dict[str, list[FaultBase]] = {}
        kills: dict[str, list[KillWorker]] = {}
        for f in faults:
            if f.where == "worker" and f.step is not None:
                by_step.setdefault(f.step, []).append(f)
            elif holds_for_kills and isinstance(f, KillWorker):
                kills.setdefault(f.step, []).append(f)
        self._by_step = by_step
        self._kills = kills
        self.seed = seed
        self.experiment = experiment
        self.proxy_api = proxy_api
        self.leases = leases
        self.embedded_proxy = embedded_proxy
        self.owner_pid = os.getpid()
        self.mutations = dict(mutations or {})

    @property
    def active(self) -> bool:
        return bool(self._by_step or self._kills)

    # -- hook API ---------------------------------------------------------------------
    def attempt(self, ctx: StepContext, spec: StepSpec) -> AbstractContextManager[None]:
        faults = self._by_step.get(spec.name)
        if not faults and spec.name not in self._kills:
            return NO_ATTEMPT_SCOPE
        return self._scope(ctx, faults or [])

    @contextmanager
    def _scope(self, ctx: StepContext, faults: list[FaultBase]) -> Iterator[None]:
        key = (ctx.run_id, ctx.step, ctx.attempt)
        run = self._open[key] = AttemptFaults(self, ctx, faults, scoped=True)
        try:
            yield
        finally:
            del self._open[key]
            self._began.pop(key, None)  # an attempt that raised never reached after()
            run.close()

    def _faults(self, ctx: StepContext, faults: list[FaultBase]) -> AttemptFaults:
        run = self._open.get((ctx.run_id, ctx.step, ctx.attempt))
        # called outside attempt(): only faults that leave nothing to undo may act
        return run or AttemptFaults(self, ctx, faults, scoped=False)

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        if spec.name in self._kills:
            self._began[(ctx.run_id, ctx.step, ctx.attempt)] = time.monotonic()
        faults = self._by_step.get(spec.name)
        return self._faults(ctx, faults).before(inputs) if faults else inputs

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        faults = self._by_step.get(spec.name)
        output = self._faults(ctx, faults).after(output) if faults else output
        began = self._began.pop((ctx.run_id, ctx.step, ctx.attempt), None)
        for f in self._kills.get(spec.name, ()):
            if began is not None and fires(f, self.seed, ctx.attempt):
                left = float(f.after) + KILL_GRACE - (time.monotonic() - began)
                if left > KILL_GRACE:  # finished before the kill: wait for it
                    time.sleep(left)
        return output


class AttemptFaults:
    """The faults firing on one attempt, and how to undo each of them.

    Created when the attempt starts; :meth:`close` (the attempt's ``finally``) stops pending
    timers, waits for a fault being applied by one, and undoes every applied fault, newest
    first. A delayed fault that could not be applied, or an undo that failed, is raised
    here as a :class:`ChaosError` after everything else was undone: the attempt fails.
    """

    def __init__(self, hook: ChaosHook, ctx: StepContext, faults: Iterable[FaultBase], *,
                 scoped: bool) -> None:
        self.hook = hook
        self.ctx = ctx
        self.faults = [f for f in faults if fires(f, hook.seed, ctx.attempt)]
        self.scoped = scoped
        self._undo: list[tuple[FaultBase, Undo]] = []
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._closed = False
        self._failed: list[str] = []  # errors of delayed faults and of undos

    # -- phases -----------------------------------------------------------------------
    def before(self, inputs: dict[str, Any]) -> dict[str, Any]:
        hang: Hang | None = None
        for f in self.faults:
            if isinstance(f, Hang):
                hang = f
            elif isinstance(f, NetworkFault):
                self._later(f, self._network)
            elif isinstance(f, ExceptionFault) and f.when == "before":
                self._raise(f)
            elif isinstance(f, Latency):
                self._latency(f)
            elif isinstance(f, DataFault) and f.target == "input":
                inputs = {k: (self._corrupt(f, v, k) if f.input in (None, k) else v)
                          for k, v in inputs.items()}
            elif isinstance(f, DiskQuota):
                self._disk_quota(f)
            elif isinstance(f, MemoryLimit):
                self._memory_limit(f)
        if hang is not None:
            time.sleep(float(hang.after))
            _sleep(hang.seconds)
        return inputs

    def after(self, output: Any) -> Any:
        for f in self.faults:
            if isinstance(f, DataFault) and f.target == "output":
                output = self._corrupt(f, output, "output")
            elif isinstance(f, ExceptionFault) and f.when == "after":
                self._raise(f)
        return output

    def close(self) -> None:
        """Cancel pending timers and undo every applied fault (the attempt's ``finally``)."""
        with self._lock:  # waits for a timer applying a fault right now
            self._closed = True
            timers, self._timers = self._timers, []
        for t in timers:
            t.cancel()
            if t is not threading.current_thread():
                t.join()
        failed = self._failed
        while self._undo:
            f, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:
                failed.append(f"{f.name} was not undone: {exc}")
        if failed:
            raise ChaosError(f"chaos faults of step {self.ctx.step!r} attempt "
                             f"{self.ctx.attempt} failed: {'; '.join(failed)}")

    # -- plumbing ---------------------------------------------------------------------
    def _needs_scope(self, f: FaultBase) -> None:
        if not self.scoped:
            raise ChaosError(
                f"fault {f.name!r} ({f.type}) changes the worker process and must be "  # type: ignore[attr-defined]
                "undone when its attempt ends. Fix: run the hook through "
                "StepHook.attempt() around the attempt (the runner's workers do)")

    def _process_wide(self, f: FaultBase) -> None:
        """A resource limit changes the whole process: refuse it while the process runs
        another attempt (a threaded executor), whose step it would reach."""
        self._needs_scope(f)
        others = [k for k in self.hook._open if k != (self.ctx.run_id, self.ctx.step,
                                                        self.ctx.attempt)]
        if others or threading.current_thread() is not threading.main_thread():
            raise ChaosError(
                f"fault {f.name!r} ({f.type}) limits the whole worker process, which runs "  # type: ignore[attr-defined]
                "attempts in threads"
                + (f" (also running {others[0][1]!r} now)" if others else "")
                + ": the limit would reach other steps. Fix: inject it with an executor "
                "that runs one attempt per process (the local executor)")

    def _undo_with(self, f: FaultBase, undo: Undo) -> None:
        self._undo.append((f, undo))

    def _later(self, f: FaultBase, apply: Callable[[Any], None]) -> None:
        """Apply ``f`` now, or ``after`` seconds into the attempt on a timer the attempt
        owns (cancelled when it ends, so it never fires during another attempt)."""
        self._needs_scope(f)
        delay = float(f.after)
        if delay <= 0:
            apply(f)
            return

        def fire() -> None:
            with self._lock:
                if self._closed:
                    return
                try:
                    apply(f)
                except Exception as exc:  # raised by close(): the attempt fails with it
                    self._failed.append(f"{f.name} was not applied: {exc}")

        t = threading.Timer(delay, fire)
        t.daemon = True
        with self._lock:
            self._timers.append(t)
        t.start()

    def _emit(self, f: FaultBase, **details: Any) -> None:
        self.ctx.emit("fault_injected", fault=f.name, type=f.type,  # type: ignore[attr-defined]
                      target=self.ctx.step, source="worker", **details)

    # -- faults -----------------------------------------------------------------------
    def _raise(self, f: ExceptionFault) -> None:
        time.sleep(float(f.after))
        self._emit(f, error=f.error, when=f.when)
        raise _error_type(f.error)(f"chaos: {f.message} (fault {f.name!r})")

    def _latency(self, f: Latency) -> None:
        delay = max(0.0, f.seconds + jitter(f, self.hook.seed, self.ctx.attempt, f.jitter))
        self._emit(f, seconds=round(delay, 6))
        time.sleep(float(f.after) + delay)

    def _corrupt(self, f: DataFault, value: Any, where: str) -> Any:
        from reliability.chaos.corruptions import corrupt

        rng = random.Random(f"{self.hook.seed}|{f.name}|{self.ctx.attempt}")
        if f.mutation is not None:
            out = self.hook.mutations[f.name](value)
        else:
            assert f.corruption is not None
            out = corrupt(value, f.corruption, f.columns, f.fraction, rng)
        self._emit(f, corruption=f.corruption or f.mutation, where=where,
                   columns=list(f.columns))
        return out

    def _rlimit(self, f: FaultBase, which: int, value: int) -> None:
        import resource

        old = resource.getrlimit(which)
        hard = old[1]
        resource.setrlimit(which, (value if hard < 0 else min(value, hard), hard))
        self._undo_with(f, lambda: resource.setrlimit(which, old))
        self._emit(f, limit_bytes=value)

    def _disk_quota(self, f: DiskQuota) -> None:
        import resource

        self._process_wide(f)
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal

        def restore() -> None:
            signal.signal(signal.SIGXFSZ, old)

        self._undo_with(f, restore)
        self._rlimit(f, resource.RLIMIT_FSIZE, f.bytes)

    def _memory_limit(self, f: MemoryLimit) -> None:
        import resource

        self._process_wide(f)
        with open("/proc/self/statm") as fh:
            vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        self._rlimit(f, resource.RLIMIT_AS, vsize + f.headroom_mb * 1024 * 1024)

    def _network(self, f: NetworkFault) -> None:
        hook = self.hook
        if hook.proxy_api is None:
            raise ChaosError(f"network fault {f.name!r} needs a proxy API. Fix: set "
                             "target.proxy_api or let the experiment start the embedded proxy")
        if f.duration is not None and hook.leases is None:
            raise ChaosError(f"network fault {f.name!r} has a duration, which needs a lease "
                             "store to end it. Fix: pass leases= to the hook (inject and "
                             "chaos runs do)")
        api = ProxyApi(hook.proxy_api)
        # a fault with a duration outlives its attempt: one toxic, whichever attempt fired it
        name = toxic_name(hook.experiment, f.name, None if f.duration else self.ctx.attempt)
        now = time.time()
        lease = Lease(
            id=f"{hook.experiment}:{name}", experiment=hook.experiment,
            owner_pid=hook.owner_pid, host=_hostname(), api=api.url, proxy=f.proxy,
            kind="disabled" if f.toxic == "down" else "toxic",
            toxic=None if f.toxic == "down" else name, step=self.ctx.step,
            attempt=self.ctx.attempt, embedded=hook.embedded_proxy, created=now,
            expires=now + f.duration if f.duration else None)
        if hook.leases is not None:
            if f.duration is not None and _in_effect(hook.leases, hook.experiment, lease.id,
                                                     now):
                return  # fired on an earlier attempt and still lasting
            hook.leases.add(lease)
        if f.toxic == "down":
            api.set_enabled(f.proxy, False)
        else:
            api.add_toxic(f.proxy, name, f.toxic, stream=f.stream, toxicity=f.toxicity,
                          attributes=f.attributes)
        if f.duration is None:
            self._undo_with(f, lambda: _end_lease(lease, api, hook.leases))
        self._emit(f, proxy=f.proxy, toxic=f.toxic, attributes=dict(f.attributes),
                   stream=f.stream, duration=f.duration, after=float(f.after))


def _in_effect(leases: LeaseStore, experiment: str, lease_id: str, now: float) -> bool:
    return any(lease.id == lease_id and (lease.expires is None or lease.expires > now)
               for lease in leases.list(experiment))


def _end_lease(lease: Lease, api: ProxyApi, leases: LeaseStore | None) -> None:
    """Undo a toxic at the end of its attempt; if that fails the lease stays, so the
    controller (at the attempt's end) or ``reliability chaos cleanup`` can retry."""
    lease.undo(api)
    if leases is not None:
        leases.remove(lease.id)


def _sleep(seconds: float | None) -> None:
    if seconds is not None:
        time.sleep(seconds)
        return
    while True:  # a hang: only the step's timeout (a SIGKILL) ends it
        time.sleep(3600)


def _hostname() -> str:
    import socket

    return socket.gethostname()
