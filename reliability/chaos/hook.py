"""The in-worker half of chaos: a :class:`~reliability.pipeline.StepHook` that injects faults.

It runs inside each worker around the step body: exceptions, latency, hangs, data
corruption of inputs (before the body) or outputs (after it), disk quotas, memory limits,
and step-scoped network toxics without a delay (applied through the proxy API when the
attempt starts and leased, so the controller removes them when the attempt ends). Worker
kills, hang notices and delayed step-scoped network toxics (``after`` > 0) come from the
:class:`~reliability.chaos.controller.Controller` in the runner's process: it knows when an
attempt ends, so a delayed toxic never outlives its attempt (a timer in a reused worker
would fire during the next step). Every fault fired here is reported with
``ctx.emit("fault_injected", ...)``.

With no faults for a step the hook costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reliability.chaos.faults import (
    ERRORS,
    DataFault,
    DiskQuota,
    ExceptionFault,
    FaultBase,
    Hang,
    Latency,
    MemoryLimit,
    NetworkFault,
    fires,
    jitter,
)
from reliability.chaos.leases import Lease, LeaseStore, ProxyApi
from reliability.pipeline import StepContext, StepHook, StepSpec

__all__ = ["ChaosHook", "toxic_name"]

Mutator = Callable[[Any], Any]


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
    """Injects the in-worker faults of a schedule; inert (one lookup) for other steps."""

    name = "chaos"

    def __init__(self, faults: Iterable[FaultBase] = (), *, seed: int = 0,
                 experiment: str = "adhoc", proxy_api: str | None = None,
                 leases: LeaseStore | None = None, embedded_proxy: bool = False,
                 mutations: Mapping[str, Mutator] | None = None) -> None:
        self._by_step: dict[str, list[Any]] = {}
        self._restore: list[tuple[int, tuple[int, int]]] = []
        self.configure(faults, seed=seed, experiment=experiment, proxy_api=proxy_api,
                       leases=leases, embedded_proxy=embedded_proxy, mutations=mutations)

    def configure(self, faults: Iterable[FaultBase], *, seed: int = 0,
                  experiment: str = "adhoc", proxy_api: str | None = None,
                  leases: LeaseStore | None = None, embedded_proxy: bool = False,
                  mutations: Mapping[str, Mutator] | None = None) -> None:
        """Replace the schedule (takes effect for workers forked afterwards)."""
        by_step: dict[str, list[Any]] = {}
        for f in faults:
            if f.step is not None and f.type not in ("kill_worker",):  # type: ignore[attr-defined]
                by_step.setdefault(f.step, []).append(f)
        self._by_step = by_step
        self.seed = seed
        self.experiment = experiment
        self.proxy_api = proxy_api
        self.leases = leases
        self.embedded_proxy = embedded_proxy
        self.owner_pid = os.getpid()
        self.mutations = dict(mutations or {})

    @property
    def active(self) -> bool:
        return bool(self._by_step)

    # -- hook API ---------------------------------------------------------------------
    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        if self._restore:
            self._restore_limits()
        faults = self._by_step.get(spec.name)
        if not faults:
            return inputs
        hang: Hang | None = None
        for f in faults:
            if not fires(f, self.seed, ctx.attempt):
                continue
            if isinstance(f, Hang):
                hang = f
            elif isinstance(f, NetworkFault):
                if float(f.after) <= 0:  # delayed ones: the controller (see the docstring)
                    self._network(ctx, f)
            elif isinstance(f, ExceptionFault) and f.when == "before":
                self._raise(ctx, f)
            elif isinstance(f, Latency):
                self._latency(ctx, f)
            elif isinstance(f, DataFault) and f.target == "input":
                inputs = {k: (self._corrupt(ctx, f, v, k) if f.input in (None, k) else v)
                          for k, v in inputs.items()}
            elif isinstance(f, DiskQuota | MemoryLimit):
                self._limit(ctx, f)
        if hang is not None:
            time.sleep(float(hang.after))
            _sleep(hang.seconds)
        return inputs

    def after(self, ctx: StepContext, spec: StepSpec, output: Any) -> Any:
        faults = self._by_step.get(spec.name)
        if not faults:
            return output
        for f in faults:
            if not fires(f, self.seed, ctx.attempt):
                continue
            if isinstance(f, DataFault) and f.target == "output":
                output = self._corrupt(ctx, f, output, "output")
            elif isinstance(f, ExceptionFault) and f.when == "after":
                self._raise(ctx, f)
        return output

    # -- faults -----------------------------------------------------------------------
    def _emit(self, ctx: StepContext, f: FaultBase, **details: Any) -> None:
        ctx.emit("fault_injected", fault=f.name, type=f.type,  # type: ignore[attr-defined]
                 target=ctx.step, source="worker", **details)

    def _raise(self, ctx: StepContext, f: ExceptionFault) -> None:
        time.sleep(float(f.after))
        self._emit(ctx, f, error=f.error, when=f.when)
        raise _error_type(f.error)(f"chaos: {f.message} (fault {f.name!r})")

    def _latency(self, ctx: StepContext, f: Latency) -> None:
        delay = max(0.0, f.seconds + jitter(f, self.seed, ctx.attempt, f.jitter))
        self._emit(ctx, f, seconds=round(delay, 6))
        time.sleep(float(f.after) + delay)

    def _corrupt(self, ctx: StepContext, f: DataFault, value: Any, where: str) -> Any:
        import random

        from reliability.chaos.corruptions import corrupt

        rng = random.Random(f"{self.seed}|{f.name}|{ctx.attempt}")
        if f.mutation is not None:
            out = self.mutations[f.name](value)
        else:
            assert f.corruption is not None
            out = corrupt(value, f.corruption, f.columns, f.fraction, rng)
        self._emit(ctx, f, corruption=f.corruption or f.mutation, where=where,
                   columns=list(f.columns))
        return out

    def _limit(self, ctx: StepContext, f: DiskQuota | MemoryLimit) -> None:
        import resource

        if isinstance(f, DiskQuota):
            which, value = resource.RLIMIT_FSIZE, f.bytes
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        else:
            which = resource.RLIMIT_AS
            with open("/proc/self/statm") as fh:
                vsize = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            value = vsize + f.headroom_mb * 1024 * 1024
        old = resource.getrlimit(which)
        self._restore.append((which, old))
        hard = old[1]
        resource.setrlimit(which, (value if hard < 0 else min(value, hard), hard))
        self._emit(ctx, f, limit_bytes=value)

    def _restore_limits(self) -> None:
        import resource

        while self._restore:
            which, old = self._restore.pop()
            resource.setrlimit(which, old)

    def _network(self, ctx: StepContext, f: NetworkFault) -> None:
        if self.proxy_api is None:
            raise RuntimeError(f"network fault {f.name!r} needs a proxy API; none configured")
        api = ProxyApi(self.proxy_api)
        name = toxic_name(self.experiment, f.name, ctx.attempt)
        now = time.time()
        if self.leases is not None:
            self.leases.add(Lease(
                id=f"{self.experiment}:{name}", experiment=self.experiment,
                owner_pid=self.owner_pid, host=_hostname(), api=api.url, proxy=f.proxy,
                kind="disabled" if f.toxic == "down" else "toxic",
                toxic=None if f.toxic == "down" else name, step=ctx.step,
                attempt=ctx.attempt, embedded=self.embedded_proxy, created=now,
                expires=now + f.duration if f.duration else None))
        if f.toxic == "down":
            api.set_enabled(f.proxy, False)
        else:
            api.add_toxic(f.proxy, name, f.toxic, stream=f.stream, toxicity=f.toxicity,
                          attributes=f.attributes)
        self._emit(ctx, f, proxy=f.proxy, toxic=f.toxic, attributes=dict(f.attributes),
                   stream=f.stream)


def _sleep(seconds: float | None) -> None:
    if seconds is not None:
        time.sleep(seconds)
        return
    while True:  # a hang: only the step's timeout (a SIGKILL) ends it
        time.sleep(3600)


def _hostname() -> str:
    import socket

    return socket.gethostname()
