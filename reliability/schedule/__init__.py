"""Scheduling: time-zone aware triggers, one run per data interval, catch-up and backfill.

Light on import: names are loaded from their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reliability._lazy import lazy_exports

if TYPE_CHECKING:
    from reliability.schedule.backfill import (
        BackfillPlan,
        BackfillReport,
        Direction,
        plan_backfill,
        run_backfill,
    )
    from reliability.schedule.catchup import Catchup, CatchupPlan, CatchupPolicy, plan_catchup
    from reliability.schedule.executor import RunnerExecutor, resolve_pipeline
    from reliability.schedule.intervals import (
        CronTimetable,
        DateTimetable,
        IntervalTimetable,
        Timetable,
        freshness_threshold,
    )
    from reliability.schedule.scheduler import (
        FileWatch,
        RunOutcome,
        RunRequest,
        Schedule,
        Scheduler,
        TriggerOutcome,
    )
    from reliability.schedule.spec import load_schedules
    from reliability.schedule.state import Claim, Reprocess, ScheduleStore

_WHERE = {
    "BackfillPlan": "backfill", "BackfillReport": "backfill", "Direction": "backfill",
    "plan_backfill": "backfill", "run_backfill": "backfill",
    "Catchup": "catchup", "CatchupPlan": "catchup", "CatchupPolicy": "catchup",
    "plan_catchup": "catchup",
    "RunnerExecutor": "executor", "resolve_pipeline": "executor",
    "CronTimetable": "intervals", "DateTimetable": "intervals",
    "IntervalTimetable": "intervals", "Timetable": "intervals",
    "freshness_threshold": "intervals",
    "FileWatch": "scheduler", "RunOutcome": "scheduler", "RunRequest": "scheduler",
    "Schedule": "scheduler", "Scheduler": "scheduler", "TriggerOutcome": "scheduler",
    "load_schedules": "spec",
    "Claim": "state", "Reprocess": "state", "ScheduleStore": "state",
}

__all__ = [
    "BackfillPlan",
    "BackfillReport",
    "Catchup",
    "CatchupPlan",
    "CatchupPolicy",
    "Claim",
    "CronTimetable",
    "DateTimetable",
    "Direction",
    "FileWatch",
    "IntervalTimetable",
    "Reprocess",
    "RunOutcome",
    "RunRequest",
    "RunnerExecutor",
    "Schedule",
    "ScheduleStore",
    "Scheduler",
    "Timetable",
    "TriggerOutcome",
    "freshness_threshold",
    "load_schedules",
    "plan_backfill",
    "plan_catchup",
    "resolve_pipeline",
    "run_backfill",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
