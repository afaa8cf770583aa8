"""Misfires and catch-up: which due intervals run after downtime, decided from the ledger.

An interval is *due* at ``now`` when its end is at or before ``now`` and the ledger holds no
final row for it (a run interrupted by the downtime is due again: it resumes). Due intervals
whose fire time is no older than ``grace`` (at least :data:`WAKE_TOLERANCE`) are *on time*.
The policy then chooses:

* ``skip``   -- run the on-time intervals only; the older missed ones are recorded as skipped
  (a backfill runs them later if wanted);
* ``latest`` -- run only the newest due interval; the others are recorded as skipped;
* ``all``    -- run every due interval, oldest first, at most ``max_active`` at once.

Planning is pure: it takes ``now`` and the ledger rows, and never reads the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import field
from enum import StrEnum

from reliability._record import record
from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval
from reliability.schedule.intervals import Timetable, utc_key
from reliability.schedule.state import SlotRow

__all__ = ["Catchup", "CatchupPlan", "CatchupPolicy", "plan_catchup"]

#: A wake-up lands a little after its fire time: lateness below this never counts as
#: missed, whatever the grace (``grace: 0`` would otherwise skip every live fire).
WAKE_TOLERANCE = dt.timedelta(seconds=30)

#: Row states that mean "handled": the scheduler does not run these again on its own.
FINAL = frozenset({"succeeded", "failed", "skipped"})


class CatchupPolicy(StrEnum):
    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


@record(frozen=True, slots=True)
class Catchup:
    """A schedule's catch-up policy."""

    policy: CatchupPolicy = CatchupPolicy.LATEST
    grace: dt.timedelta = dt.timedelta(minutes=5)
    max_active: int = 1

    def __post_init__(self) -> None:
        if self.max_active < 1:
            raise DefinitionError(
                f"max_active={self.max_active} must be at least 1. Fix: e.g. max_active: 1")
        if self.grace < dt.timedelta(0):
            raise DefinitionError(f"grace={self.grace} must not be negative. Fix: e.g. 5m")


@record(frozen=True, slots=True)
class CatchupPlan:
    """What to do now: ``run`` in this order; ``skip`` is recorded as skipped."""

    run: list[DataInterval] = field(default_factory=list)
    skip: list[DataInterval] = field(default_factory=list)
    #: Start of the oldest interval that is not yet final (where the next scan may begin).
    watermark: dt.datetime | None = None


def plan_catchup(timetable: Timetable, catchup: Catchup, *, now: dt.datetime,
                 since: dt.datetime | None,
                 rows: Mapping[tuple[str, str], SlotRow],
                 live: frozenset[tuple[str, str]] = frozenset()) -> CatchupPlan:
    """Decide which due intervals to run at ``now``.

    ``since`` is where to look from (the schedule's start or its earliest ledger row); None
    means no history: only the latest complete interval is considered. ``rows`` are the
    ledger rows from ``since`` keyed by (start, end) UTC text; ``live`` are keys of rows
    being run right now by a live process (never due).
    """
    if since is None:
        last = timetable.latest_complete(now)
        due_all = [last] if last is not None else []
    else:
        due_all = timetable.intervals(since, now)
    due: list[DataInterval] = []
    watermark: dt.datetime | None = None
    for iv in due_all:
        key = (utc_key(iv.start), utc_key(iv.end))
        row = rows.get(key)
        if key in live:
            watermark = watermark or iv.start
            continue
        if row is not None and row.status in FINAL:
            continue
        watermark = watermark or iv.start
        due.append(iv)
    if not due:
        return CatchupPlan(watermark=watermark or (due_all[-1].end if due_all else None))
    late_ok = max(catchup.grace, WAKE_TOLERANCE)
    on_time = [iv for iv in due if now - iv.end <= late_ok]
    if catchup.policy is CatchupPolicy.ALL:
        run = due
    elif catchup.policy is CatchupPolicy.LATEST:
        run = [due[-1]]
    else:
        run = on_time
    chosen = {iv.key() for iv in run}
    skip = [iv for iv in due if iv.key() not in chosen]
    return CatchupPlan(run=run, skip=skip, watermark=watermark)
