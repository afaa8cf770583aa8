"""Typed payloads of lifecycle events: one type per :class:`~reliability.events.EventKind`.

Loaded on first use (``event.payload``, or these names imported from
:mod:`reliability.events`): processes that only record events never pay for building them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field, fields
from types import MappingProxyType
from typing import Any

from reliability._record import record
from reliability.events import EventKind

__all__ = ["PAYLOADS", "Payload"]


# -- one type per kind --------------------------------------------------------------
@record(frozen=True, slots=True)
class Payload:
    """Typed view of an event's ``details``. Keys a payload does not declare are kept in
    ``extra`` (hooks may add context), never dropped."""

    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, details: Mapping[str, Any]) -> Payload:
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in details.items() if k in names}
        rest = {k: v for k, v in details.items() if k not in names}
        return cls(extra=rest, **known)


@record(frozen=True, slots=True)
class RunStarted(Payload):
    resumed: bool = False
    steps: Sequence[str] = ()
    interval: str | None = None
    trigger: str = "manual"
    trigger_source: str | None = None
    environment: str | None = None


@record(frozen=True, slots=True)
class RunSucceeded(Payload):
    pass


@record(frozen=True, slots=True)
class RunFailed(Payload):
    failed: Sequence[str] = ()
    skipped: Sequence[str] = ()


@record(frozen=True, slots=True)
class RunCancelled(Payload):
    signal: str | None = None


@record(frozen=True, slots=True)
class StepStarted(Payload):
    worker_pid: int | None = None
    worker: str | None = None
    timeout: float | None = None


@record(frozen=True, slots=True)
class StepSucceeded(Payload):
    output_hash: str | None = None
    size: int | None = None
    worker_pid: int | None = None
    replayed: bool = False


@record(frozen=True, slots=True)
class StepSkipped(Payload):
    reason: str = ""
    output_hash: str | None = None
    upstream: str | None = None


@record(frozen=True, slots=True)
class StepFailed(Payload):
    error_type: str | None = None


@record(frozen=True, slots=True)
class StepRetrying(Payload):
    delay: float = 0.0
    error_type: str | None = None
    next_attempt: int | None = None


@record(frozen=True, slots=True)
class StepTimedOut(Payload):
    worker_pid: int | None = None


@record(frozen=True, slots=True)
class StepCancelled(Payload):
    pass


@record(frozen=True, slots=True)
class WorkerLost(Payload):
    worker_pid: int | None = None
    reason: str | None = None
    attempts: int | None = None


@record(frozen=True, slots=True)
class ContractChecked(Payload):
    contract: str | None = None
    direction: str | None = None


@record(frozen=True, slots=True)
class ContractViolated(Payload):
    failures: Sequence[Mapping[str, Any]] = ()
    quarantined: str | None = None


@record(frozen=True, slots=True)
class FaultInjected(Payload):
    fault: str | None = None
    type: str | None = None


@record(frozen=True, slots=True)
class SlaBreached(Payload):
    sla: str | None = None


@record(frozen=True, slots=True)
class OutputLost(Payload):
    output_hash: str | None = None
    reason: str | None = None


@record(frozen=True, slots=True)
class Custom(Payload):
    name: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


PAYLOADS: Mapping[EventKind, type[Payload]] = MappingProxyType({
    EventKind.RUN_STARTED: RunStarted, EventKind.RUN_SUCCEEDED: RunSucceeded,
    EventKind.RUN_FAILED: RunFailed, EventKind.RUN_CANCELLED: RunCancelled,
    EventKind.STEP_STARTED: StepStarted, EventKind.STEP_SUCCEEDED: StepSucceeded,
    EventKind.STEP_SKIPPED: StepSkipped, EventKind.STEP_FAILED: StepFailed,
    EventKind.STEP_RETRYING: StepRetrying, EventKind.STEP_TIMED_OUT: StepTimedOut,
    EventKind.STEP_CANCELLED: StepCancelled, EventKind.WORKER_LOST: WorkerLost,
    EventKind.CONTRACT_CHECKED: ContractChecked,
    EventKind.CONTRACT_VIOLATED: ContractViolated,
    EventKind.FAULT_INJECTED: FaultInjected, EventKind.SLA_BREACHED: SlaBreached,
    EventKind.OUTPUT_LOST: OutputLost, EventKind.CUSTOM: Custom,
})
"""The payload type of every event kind."""
