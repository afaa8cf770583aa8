"""Lifecycle events: the one way the runner talks to displays, metrics, SLAs and chaos.

The runner publishes :class:`Event` objects on an :class:`EventBus`; everything else
subscribes. A subscriber that raises is logged and skipped: one broken subscriber never
breaks a run or the other subscribers.

    bus = EventBus()
    bus.subscribe(print, kinds={EventKind.STEP_FAILED})
"""

from __future__ import annotations

import enum
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from reliability._record import record

if TYPE_CHECKING:
    from reliability._payloads import PAYLOADS, Payload

__all__ = [
    "PAYLOADS",
    "STEP_EMITTABLE",
    "Event",
    "EventBus",
    "EventKind",
    "Payload",
    "Subscriber",
    "check_step_event",
]

log = logging.getLogger("reliability.events")


class EventKind(enum.StrEnum):
    RUN_STARTED = "run_started"
    RUN_SUCCEEDED = "run_succeeded"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    STEP_STARTED = "step_started"          # an attempt began on a worker
    STEP_SUCCEEDED = "step_succeeded"      # output validated and committed
    STEP_SKIPPED = "step_skipped"          # already committed (resume) or upstream failed
    STEP_FAILED = "step_failed"            # final: no retries left or not retryable
    STEP_RETRYING = "step_retrying"        # an attempt failed, another is scheduled
    STEP_TIMED_OUT = "step_timed_out"      # an attempt ran past its timeout and was stopped
    STEP_CANCELLED = "step_cancelled"
    WORKER_LOST = "worker_lost"            # the worker process died mid-attempt
    CONTRACT_CHECKED = "contract_checked"
    CONTRACT_VIOLATED = "contract_violated"
    FAULT_INJECTED = "fault_injected"
    SLA_BREACHED = "sla_breached"
    OUTPUT_LOST = "output_lost"            # a committed object vanished or rotted; step reruns
    CUSTOM = "custom"                      # a step's own event: details {"name", "data"}


@record(frozen=True, slots=True)
class Event:
    """One thing that happened. ``details`` carries kind-specific data (read-only)."""

    kind: EventKind
    pipeline: str
    run_id: str
    step: str | None = None
    attempt: int | None = None
    time: float = field(default_factory=time.time)
    duration: float | None = None
    error: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.details, MappingProxyType):
            object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def payload(self) -> Payload:
        """``details`` as the kind's typed payload (see :data:`PAYLOADS`)."""
        from reliability._payloads import PAYLOADS

        return PAYLOADS[self.kind].of(self.details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "pipeline": self.pipeline, "run_id": self.run_id,
            "step": self.step, "attempt": self.attempt, "time": self.time,
            "duration": self.duration, "error": self.error, "details": dict(self.details),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_event, (self.to_dict(),))


def _rebuild_event(data: dict[str, Any]) -> Event:
    return Event(kind=EventKind(data.pop("kind")), **data)


def __getattr__(name: str) -> Any:  # the payload types load on first use
    if name in _PAYLOAD_NAMES:
        from reliability import _payloads

        return getattr(_payloads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PAYLOAD_NAMES = frozenset({"PAYLOADS", "Payload"})


STEP_EMITTABLE = frozenset({EventKind.CONTRACT_CHECKED, EventKind.FAULT_INJECTED})
"""Built-in kinds a step-side hook may emit; every other built-in kind is the runner's."""

_USER_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def check_step_event(kind: str, details: Mapping[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """Validate an event a step emits (``ctx.emit``); return its kind and details.

    Hooks emit :data:`STEP_EMITTABLE` kinds. Any other lower-case name (``progress``,
    ``rows.loaded``) is the user's own kind and travels as :attr:`EventKind.CUSTOM` with
    ``{"name": kind, "data": details}``; ``emit("custom", name=..., data=...)`` is the same.
    The runner's own kinds and malformed names or details are refused here, at the call,
    so a bad emit fails the line that made it, never the run.
    """
    from reliability.errors import DefinitionError

    if not isinstance(kind, str):
        raise DefinitionError(f"event kind {kind!r} must be a string. Fix: "
                              "ctx.emit('progress', done=3)")
    if kind in STEP_EMITTABLE:  # hooks' details that do not pickle travel as their repr
        return EventKind(kind), dict(details)
    try:
        json.dumps(dict(details), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(
            f"event {kind!r}: details must be JSON values ({exc}). Fix: pass numbers, "
            "strings, booleans, lists or dicts") from None
    if kind == EventKind.CUSTOM.value:
        name = details.get("name")
        if not isinstance(name, str) or not _USER_KIND.fullmatch(name):
            raise DefinitionError(
                "ctx.emit('custom', ...) needs name= a lower-case event name. Fix: "
                "ctx.emit('custom', name='progress', data={'done': 3})")
        data = details.get("data", {})
        if not isinstance(data, Mapping) or set(details) - {"name", "data"}:
            raise DefinitionError("ctx.emit('custom', ...) takes name= and data= (a dict) "
                                  "only. Fix: ctx.emit('custom', name='progress', "
                                  "data={'done': 3}) or ctx.emit('progress', done=3)")
        return EventKind.CUSTOM, {"name": name, "data": dict(data)}
    if kind in EventKind.__members__.values() or kind in {k.value for k in EventKind}:
        raise DefinitionError(
            f"event kind {kind!r} is published by the runner, not by steps. Fix: use a "
            "name of your own, e.g. ctx.emit('progress', done=3)")
    if not _USER_KIND.fullmatch(kind):
        raise DefinitionError(
            f"event kind {kind!r} must be lower-case letters, digits and _ . - (1-64, "
            "starting with a letter). Fix: e.g. ctx.emit('rows_loaded', rows=100)")
    return EventKind.CUSTOM, {"name": kind, "data": dict(details)}


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous publish/subscribe, in the runner's process."""

    __slots__ = ("_lock", "_subs")

    def __init__(self) -> None:
        self._subs: list[tuple[Subscriber, frozenset[EventKind] | None]] = []
        self._lock = threading.RLock()

    def subscribe(self, fn: Subscriber, kinds: Iterable[EventKind] | None = None
                  ) -> Callable[[], None]:
        """Call ``fn`` for each event (of ``kinds`` only, if given). Returns an unsubscribe."""
        entry = (fn, frozenset(kinds) if kinds is not None else None)
        self._subs.append(entry)

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber, one event at a time.

        Events may be published from several threads (the run loop, SLA timers, chaos
        controllers); delivery is serialized so subscribers never run concurrently.
        """
        with self._lock:
            for fn, kinds in tuple(self._subs):
                if kinds is not None and event.kind not in kinds:
                    continue
                try:
                    fn(event)
                except Exception:
                    log.exception("event subscriber %r failed on %s", fn, event.kind)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
