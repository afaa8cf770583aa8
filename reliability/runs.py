"""What a run is: its trigger, environment and statuses, as types rather than strings.

    Trigger.SCHEDULE.production   # True: counts toward SLOs, budgets, alerts, last good run
    Trigger.EXPLORE.production    # False: chaos and exploration never pollute those
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reliability.pipeline import DataInterval

__all__ = [
    "FINAL_RUN_STATES",
    "LEDGER_FILE",
    "AttemptStatus",
    "RunStatus",
    "StepStatus",
    "Trigger",
    "default_environment",
    "ledger_path",
    "new_run_id",
    "params_dict",
    "run_key",
]

LEDGER_FILE = "ledger.db"


def ledger_path(home: str | Path) -> Path:
    """The run ledger of a runner home (the one definition of its file name)."""
    return Path(home) / LEDGER_FILE


def new_run_id(pipeline: str, *, at: dt.datetime | None = None, tag: str | None = None
               ) -> str:
    """A fresh, sortable run id: ``<pipeline>[-<tag>]-<UTC time>-<random>``. ``at`` is the
    time the id sorts by (a scheduled run uses its data interval's start); the default is
    now. The one place run ids are made."""
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    middle = f"-{tag}" if tag else ""
    return f"{pipeline}{middle}-{when.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"


def params_dict(params: Any) -> dict[str, Any]:
    """A run's parameters (a pydantic model, a dataclass, a mapping or None) as a dict."""
    if params is None:
        return {}
    dump = getattr(params, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json"))
    if hasattr(params, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(params)
    return dict(params)


def run_key(pipeline: str, params: Any, interval: DataInterval | None,
            trigger: Trigger | None = None) -> str:
    """What makes two runs "the same run": pipeline, parameters and data interval. Chaos and
    exploration runs have keys of their own, so they never resume, block or stand in for a
    production run."""
    import json

    from reliability._sha import sha256

    doc: dict[str, Any] = {"p": pipeline, "params": params,
                           "interval": interval.key() if interval else None}
    if trigger is not None and not trigger.production:
        doc["trigger"] = trigger.value
    blob = json.dumps(doc, sort_keys=True, default=str)
    return sha256(blob.encode()).hexdigest()[:32]


def default_environment() -> str:
    """``RELIABILITY_ENV``, else ``dev``: the environment a run is recorded under."""
    return os.environ.get("RELIABILITY_ENV", "").strip() or "dev"


class Trigger(enum.StrEnum):
    """Why a run exists. Stored in the ledger and exported as a metric label."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"
    TRIGGER = "trigger"                # an HTTP, file or CLI event trigger
    CHAOS_BASELINE = "chaos-baseline"
    CHAOS = "chaos"
    EXPLORE = "explore"

    @property
    def production(self) -> bool:
        """Whether the run's outcome counts toward SLOs, error budgets, production alerts
        and "last good run". Chaos and exploration runs (baselines included) never do."""
        return self not in _NOT_PRODUCTION

    @property
    def holds_deadlines(self) -> bool:
        """Finish-by deadlines judge runs of the present; a backfill's passed long ago."""
        return self is not Trigger.BACKFILL

    @classmethod
    def parse(cls, value: str | Trigger | None) -> Trigger:
        """A stored or given trigger; ``None`` is a manual run. Legacy ``kind:source``
        strings written by older versions map to their kind."""
        if isinstance(value, Trigger):
            return value
        if not value:
            return cls.MANUAL
        try:
            return cls(value)
        except ValueError:
            pass
        head = value.split(":", 1)[0]
        legacy = {"explore-baseline": cls.EXPLORE, "http": cls.TRIGGER, "file": cls.TRIGGER,
                  "cli": cls.TRIGGER, "catchup": cls.SCHEDULE, "partition": cls.TRIGGER}
        if head in legacy:
            return legacy[head]
        try:
            return cls(head)
        except ValueError:
            from reliability.errors import DefinitionError

            raise DefinitionError(
                f"trigger {value!r} is not one of {[t.value for t in cls]}. Fix: pass a "
                "reliability.runs.Trigger") from None


_NOT_PRODUCTION = frozenset({Trigger.CHAOS_BASELINE, Trigger.CHAOS, Trigger.EXPLORE})


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_RUN_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED})


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"                # not run: the host took another branch


class AttemptStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CONTRACT_VIOLATED = "contract_violated"
    WORKER_LOST = "worker_lost"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"                      # its runner died while it ran
