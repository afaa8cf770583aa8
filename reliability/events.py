"""Lifecycle events: the one way the runner talks to displays, metrics, SLAs and chaos.

The runner publishes :class:`Event` objects on an :class:`EventBus`; everything else
subscribes. A subscriber that raises is logged and skipped: one broken subscriber never
breaks a run or the other subscribers.

    bus = EventBus()
    bus.subscribe(print, kinds={EventKind.STEP_FAILED})
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Event", "EventBus", "EventKind", "Subscriber"]

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


@dataclass(frozen=True, slots=True)
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
