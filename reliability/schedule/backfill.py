"""Backfills over half-open data intervals: planned, recorded, bounded and resumable.

    plan = plan_backfill(store, "reference", CronTimetable("0 0 * * *"), start, end,
                         reprocess=Reprocess.FAILED, direction=Direction.BACKWARD)
    report = run_backfill(store, plan, RunnerExecutor(home), parallel=4)

The plan is written to the ledger (``backfills`` and ``backfill_items``) before anything
runs. Running the same backfill again (same pipeline, timetable, range, policy, order and
parameters) while it is unfinished continues it: intervals it already completed are not run
again, and an interval whose run was killed midway resumes that run.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import field
from enum import StrEnum
from typing import Any

from reliability._record import record
from reliability._sha import sha256
from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval
from reliability.schedule.intervals import Timetable, utc_key
from reliability.schedule.scheduler import Execute, RunRequest, run_claimed
from reliability.schedule.state import Reprocess, ScheduleStore, SlotRow

__all__ = ["BackfillItem", "BackfillPlan", "BackfillReport", "Direction", "plan_backfill",
           "run_backfill"]

_DONE = frozenset({"succeeded", "failed", "noop"})
MAX_INTERVALS = 100_000  # one backfill; more is a typo in --start/--every, not a plan


class Direction(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"


@record(frozen=True, slots=True)
class BackfillItem:
    seq: int
    interval: DataInterval
    run: bool          # False: nothing to do, ``note`` says why
    note: str = ""
    run_id: str | None = None  # the run an interrupted backfill started for it


@record(frozen=True, slots=True)
class BackfillPlan:
    backfill_id: str
    pipeline: str
    range: DataInterval
    reprocess: Reprocess
    direction: Direction
    items: list[BackfillItem]
    resumed: bool = False
    recorded: bool = True

    @property
    def to_run(self) -> list[BackfillItem]:
        return [i for i in self.items if i.run]


@record(slots=True)
class BackfillReport:
    backfill_id: str
    counts: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled and not self.counts.get("failed")


def _fingerprint(pipeline: str, timetable: Timetable, rng: DataInterval, reprocess: str,
                 direction: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps([pipeline, timetable.describe(), utc_key(rng.start), utc_key(rng.end),
                       reprocess, direction, dict(params)], sort_keys=True, default=str)
    return sha256(blob.encode()).hexdigest()[:16]


def _verdict(row: SlotRow | None, reprocess: Reprocess, live: bool) -> tuple[bool, str]:
    if row is None or row.status in ("skipped", "cancelled"):
        return True, ""
    if row.status == "running":
        return (False, f"running now as {row.run_id}") if live else \
            (True, f"resumes {row.run_id}")
    if row.status == "succeeded" and reprocess is not Reprocess.ALL:
        return False, f"already succeeded ({row.run_id})"
    if row.status == "failed" and reprocess is Reprocess.NONE:
        return False, f"failed before ({row.run_id}); --reprocess failed reruns it"
    return True, f"reprocess {row.status}"


def plan_backfill(store: ScheduleStore, pipeline: str, timetable: Timetable,
                  start: dt.datetime, end: dt.datetime, *,
                  reprocess: Reprocess = Reprocess.NONE,
                  direction: Direction = Direction.FORWARD,
                  params: Mapping[str, Any] | None = None, record: bool = True
                  ) -> BackfillPlan:
    """Plan the intervals of ``timetable`` inside ``[start, end)``; record it unless dry."""
    rng = DataInterval(start, end)
    fp = _fingerprint(pipeline, timetable, rng, reprocess.value, direction.value,
                      params or {})
    open_ = store.open_backfill(fp) if record else None
    if open_ is not None:
        items = [BackfillItem(seq, DataInterval(dt.datetime.fromisoformat(a),
                                                dt.datetime.fromisoformat(b)),
                              status not in _DONE, f"done earlier ({status})"
                              if status in _DONE else "", run_id)
                 for seq, a, b, status, run_id in store.backfill_items(open_[0])]
        return BackfillPlan(open_[0], pipeline, rng, reprocess, direction, items, True)
    ivs = timetable.intervals(start, end, limit=MAX_INTERVALS)
    if not ivs:
        raise DefinitionError(
            f"{timetable.describe()} has no complete data interval inside "
            f"[{start.isoformat()}, {end.isoformat()}). Fix: widen --start/--end")
    if direction is Direction.BACKWARD:
        ivs.reverse()
    rows = store.rows_between(pipeline, start, end)
    items = []
    for seq, iv in enumerate(ivs):
        row = rows.get((utc_key(iv.start), utc_key(iv.end)))
        run, note = _verdict(row, reprocess, row is not None and store.is_live(row))
        items.append(BackfillItem(seq, iv, run, note))
    bid = f"bf-{fp}-{store.backfill_count(fp)}"
    if record:
        store.create_backfill(bid, fp, pipeline, rng, reprocess.value, direction.value,
                              [(i.interval, "pending" if i.run else "noop", i.note or None)
                               for i in items])
    return BackfillPlan(bid, pipeline, rng, reprocess, direction, items, False, record)


def run_backfill(store: ScheduleStore, plan: BackfillPlan, execute: Execute, *,
                 parallel: int = 1, params: Mapping[str, Any] | None = None,
                 ref: str | None = None,
                 on_item: Callable[[BackfillItem, str, str], None] | None = None
                 ) -> BackfillReport:
    """Run the plan's intervals in order, ``parallel`` at a time; record each one's end.

    ``on_item(item, status, detail)`` is called as each interval finishes (progress bars).
    With ``parallel == 1`` runs happen in the calling thread, so SIGINT cancels cleanly.
    """
    if parallel < 1:
        raise DefinitionError(f"parallel={parallel} must be at least 1. Fix: e.g. -j 4")
    if not plan.recorded:
        raise DefinitionError("a dry-run plan cannot be run. Fix: plan with record=True")
    report = BackfillReport(plan.backfill_id)
    stop = threading.Event()
    lock = threading.Lock()

    def one(item: BackfillItem) -> None:
        if stop.is_set():
            return
        status, detail = _run_item(store, plan, item, execute, params or {}, ref)
        with lock:
            report.counts[status] = report.counts.get(status, 0) + 1
        if status == "cancelled":
            stop.set()
        if on_item is not None:
            on_item(item, status, detail)

    todo = plan.to_run
    if parallel == 1:
        for item in todo:
            one(item)
    else:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="backfill") as pool:
            futures = [pool.submit(one, item) for item in todo]
            try:
                for fut in futures:
                    fut.result()
            except KeyboardInterrupt:  # Ctrl-C (or SIGTERM, see the CLI) in this thread
                _cancel_parallel(futures, stop, execute)
    report.cancelled = stop.is_set()
    left = [s for *_, s, _r in store.backfill_items(plan.backfill_id) if s not in _DONE]
    store.set_backfill(plan.backfill_id, "cancelled" if report.cancelled else
                       ("completed" if not left else "running"))
    return report


def _cancel_parallel(futures: list[Future[None]], stop: threading.Event,
                     execute: Execute) -> None:
    """Stop a parallel backfill: queued intervals never start, running ones are cancelled
    through ``execute.cancel()`` (they end 'cancelled' and resume on the next backfill)."""
    stop.set()
    for fut in futures:
        fut.cancel()
    cancel = getattr(execute, "cancel", None)
    while not all(f.done() for f in futures):
        if cancel is not None:
            cancel()  # again until done: a run may have been starting
        futures_wait(futures, timeout=0.2)


def _run_item(store: ScheduleStore, plan: BackfillPlan, item: BackfillItem,
              execute: Execute, params: Mapping[str, Any], ref: str | None
              ) -> tuple[str, str]:
    if item.run_id is not None:  # killed after the run ended but before the item was noted
        row = store.get(plan.pipeline, item.interval)
        if row is not None and row.run_id == item.run_id and row.status in _DONE:
            store.set_item(plan.backfill_id, item.seq, row.status)
            return row.status, item.run_id
    claim = store.claim(plan.pipeline, item.interval, schedule=f"backfill:{plan.backfill_id}",
                        trigger="backfill", reprocess=plan.reprocess)
    if not claim.acquired:
        store.set_item(plan.backfill_id, item.seq, "noop", claim.run_id, claim.reason)
        return "noop", claim.reason
    assert claim.run_id is not None
    store.set_item(plan.backfill_id, item.seq, "running", claim.run_id)
    req = RunRequest(f"backfill:{plan.backfill_id}", plan.pipeline, item.interval,
                     claim.run_id, claim.resume, "backfill", params, ref)
    out = run_claimed(store, execute, req)
    store.set_item(plan.backfill_id, item.seq, out.status, out.run_id, out.error)
    return out.status, out.error or out.run_id
