"""Backfill planning and running: reprocess policy, order, dry run, resume, parallelism."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval
from reliability.schedule import (
    CronTimetable,
    Direction,
    Reprocess,
    RunRequest,
    ScheduleStore,
    plan_backfill,
    run_backfill,
)
from reliability.schedule.scheduler import RunOutcome

UTC = dt.UTC
DAY = CronTimetable("0 0 * * *")
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
END = dt.datetime(2026, 1, 6, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ScheduleStore]:
    s = ScheduleStore.at_home(tmp_path)
    yield s
    s.close()


class Recorder:
    """An execute function that records what it ran and fails on chosen days."""

    def __init__(self, fail_days: frozenset[int] = frozenset(), delay: float = 0.0) -> None:
        self.ran: list[int] = []
        self.fail_days = fail_days
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __call__(self, req: RunRequest) -> RunOutcome:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
            self.ran.append(req.interval.start.day)
        status = "failed" if req.interval.start.day in self.fail_days else "succeeded"
        return RunOutcome(req.run_id, status, "boom" if status == "failed" else None)


def test_forward_and_backward_order_over_half_open_range(store: ScheduleStore) -> None:
    fwd = plan_backfill(store, "p", DAY, START, END, record=False)
    assert [i.interval.start.day for i in fwd.items] == [1, 2, 3, 4, 5]
    assert fwd.items[-1].interval.end == END  # [start, end): the day ending at END is in
    back = plan_backfill(store, "p", DAY, START, END, direction=Direction.BACKWARD,
                         record=False)
    rec = Recorder()
    # a dry-run plan records nothing and cannot be run
    assert store.query("SELECT COUNT(*) FROM backfills")[0][0] == 0
    with pytest.raises(DefinitionError, match="dry-run"):
        run_backfill(store, back, rec)
    real = plan_backfill(store, "p", DAY, START, END, direction=Direction.BACKWARD)
    assert run_backfill(store, real, rec).ok
    assert rec.ran == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(("reprocess", "expected"), [
    (Reprocess.NONE, [4, 5]),
    (Reprocess.FAILED, [2, 4, 5]),
    (Reprocess.ALL, [1, 2, 3, 4, 5]),
])
def test_reprocess_policy(store: ScheduleStore, reprocess: Reprocess,
                          expected: list[int]) -> None:
    first = Recorder(fail_days=frozenset({2}))
    early = plan_backfill(store, "p", DAY, START, dt.datetime(2026, 1, 4, tzinfo=UTC))
    report = run_backfill(store, early, first)
    assert report.counts == {"succeeded": 2, "failed": 1} and not report.ok
    again = Recorder()
    plan = plan_backfill(store, "p", DAY, START, END, reprocess=reprocess)
    run_backfill(store, plan, again)
    assert again.ran == expected
    notes = {i.interval.start.day: i.note for i in plan.items if not i.run}
    if reprocess is Reprocess.NONE:
        assert "already succeeded" in notes[1] and "--reprocess failed" in notes[2]


def test_an_unfinished_backfill_resumes_without_rerunning_done_intervals(
        store: ScheduleStore) -> None:
    plan = plan_backfill(store, "p", DAY, START, END, reprocess=Reprocess.ALL)
    # simulate a kill after two intervals: run only the first two items
    first = Recorder()
    for item in plan.items[:2]:
        claim = store.claim("p", item.interval, reprocess=Reprocess.ALL)
        assert claim.run_id is not None
        out = first(RunRequest("b", "p", item.interval, claim.run_id, False, "backfill"))
        store.finish("p", item.interval, out.status, run_id=out.run_id)
        store.set_item(plan.backfill_id, item.seq, out.status, out.run_id)
    again = plan_backfill(store, "p", DAY, START, END, reprocess=Reprocess.ALL)
    assert again.resumed and again.backfill_id == plan.backfill_id
    rest = Recorder()
    assert run_backfill(store, again, rest).ok
    assert rest.ran == [3, 4, 5]  # reprocess=all, yet the first two are not run twice
    # a finished backfill is not resumed: the same command starts a new one
    third = plan_backfill(store, "p", DAY, START, END, reprocess=Reprocess.ALL)
    assert not third.resumed and third.backfill_id != plan.backfill_id


def test_parallelism_is_bounded(store: ScheduleStore) -> None:
    rec = Recorder(delay=0.05)
    plan = plan_backfill(store, "p", DAY, START, dt.datetime(2026, 1, 11, tzinfo=UTC))
    report = run_backfill(store, plan, rec, parallel=3)
    assert report.counts == {"succeeded": 10}
    assert rec.peak == 3


def test_empty_range_names_the_fix(store: ScheduleStore) -> None:
    with pytest.raises(DefinitionError, match="no complete data interval"):
        plan_backfill(store, "p", DAY, START, START + dt.timedelta(hours=5))


def test_planning_and_recording_3650_days(store: ScheduleStore) -> None:
    # how fast: bench/bench_schedule.py (timings do not belong in tests on shared machines)
    plan = plan_backfill(store, "p", DAY, dt.datetime(2016, 1, 1, tzinfo=UTC),
                         dt.datetime(2025, 12, 29, tzinfo=UTC))
    assert len(plan.items) == 3650
    assert store.query("SELECT COUNT(*) FROM backfill_items")[0][0] == 3650
    assert plan.items[0].interval == DataInterval(dt.datetime(2016, 1, 1, tzinfo=UTC),
                                                  dt.datetime(2016, 1, 2, tzinfo=UTC))
