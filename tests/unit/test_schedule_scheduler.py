"""The scheduler with a real Runner: duplicate triggers, catch-up policies, concurrency."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from reliability.pipeline import Pipeline, StepContext
from reliability.schedule import (
    Catchup,
    CatchupPolicy,
    CronTimetable,
    RunnerExecutor,
    RunRequest,
    Schedule,
    Scheduler,
    ScheduleStore,
)
from reliability.schedule.scheduler import RunOutcome

UTC = dt.UTC


class GateParams(BaseModel):
    gate: str = ""


pipe = Pipeline("sched_demo", params=GateParams)


@pipe.step
def extract(ctx: StepContext, params: GateParams) -> str:
    while params.gate and not Path(params.gate).exists():
        time.sleep(0.01)
    assert ctx.interval is not None
    return ctx.interval.key()


@pipe.step
def load(extract: str) -> int:
    return len(extract)


class Clock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t


def hourly(policy: CatchupPolicy, grace_min: int = 0, max_active: int = 1,
           **kw: object) -> Schedule:
    return Schedule("hourly", "sched_demo",
                    CronTimetable("0 * * * *", start=dt.datetime(2026, 1, 1, tzinfo=UTC)),
                    catchup=Catchup(policy, dt.timedelta(minutes=grace_min), max_active),
                    **kw)  # type: ignore[arg-type]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def make(home: Path, schedule: Schedule, clock: Clock, execute: object = None,
         max_active: int = 4) -> Scheduler:
    ex = execute or RunnerExecutor(home, pipelines={"sched_demo": pipe}, workers=1)
    return Scheduler([schedule], execute=ex, home=home, now=clock,  # type: ignore[arg-type]
                     max_active=max_active)


@pytest.fixture
def scheds() -> Iterator[list[Scheduler]]:
    made: list[Scheduler] = []
    yield made
    for s in made:
        s.shutdown()
        s.store.close()


def ran(home: Path) -> list[tuple[str, str, str]]:
    """(interval start UTC HH:MM, status, run_id) of every run in the runner's ledger."""
    with sqlite3.connect(home / "ledger.db") as db:
        rows = db.execute("SELECT interval_start, status, run_id FROM runs"
                          " ORDER BY interval_start").fetchall()
    return [(dt.datetime.fromisoformat(a).astimezone(UTC).strftime("%H:%M"), s, r)
            for a, s, r in rows]


def test_duplicate_trigger_is_a_noop_that_says_so(home: Path, tmp_path: Path,
                                                   scheds: list[Scheduler]) -> None:
    gate = tmp_path / "gate"
    clock = Clock(dt.datetime(2026, 1, 1, 5, 2, tzinfo=UTC))
    sched = make(home, hourly(CatchupPolicy.LATEST, params={"gate": str(gate)}), clock)
    scheds.append(sched)
    first = sched.trigger("hourly", source="http")
    assert first.started and first.future is not None
    time.sleep(0.2)
    assert not first.future.done()
    again = sched.trigger("hourly", source="cli")
    assert not again.started
    assert "already running" in again.reason and again.run_id == first.run_id
    other = ScheduleStore.at_home(home)  # another claimer on the same ledger
    try:
        assert first.interval is not None
        assert not other.claim("sched_demo", first.interval).acquired
    finally:
        other.close()
    gate.touch()
    assert first.wait(30).status == "succeeded"
    after = sched.trigger("hourly")
    assert not after.started and "already succeeded" in after.reason
    assert ran(home) == [("04:00", "succeeded", first.run_id)]


def test_dead_claim_is_taken_over_and_its_run_resumed(home: Path,
                                                      scheds: list[Scheduler]) -> None:
    clock = Clock(dt.datetime(2026, 1, 1, 5, 2, tzinfo=UTC))
    sched = make(home, hourly(CatchupPolicy.LATEST), clock)
    scheds.append(sched)
    iv = sched.get("hourly").timetable.latest_complete(clock())
    assert iv is not None
    dead = ScheduleStore.at_home(home)
    claim = dead.claim("sched_demo", iv)
    dead.close()  # its owner is gone, the row still says running
    out = sched.trigger("hourly", wait=True)
    assert out.started and "whose process died" in out.reason
    assert out.run_id == claim.run_id and out.status == "succeeded"


@pytest.mark.parametrize(("policy", "grace", "expected"), [
    (CatchupPolicy.ALL, 0, ["03:00", "04:00", "05:00", "06:00", "07:00", "08:00"]),
    (CatchupPolicy.LATEST, 0, ["08:00"]),
    (CatchupPolicy.SKIP, 30, ["08:00"]),   # 08:00-09:00 fired 10 min ago: within grace
    (CatchupPolicy.SKIP, 5, []),           # nothing on time: all six are skipped
])
def test_catchup_after_downtime_runs_exactly_the_policy_intervals(
        home: Path, scheds: list[Scheduler], policy: CatchupPolicy, grace: int,
        expected: list[str]) -> None:
    clock = Clock(dt.datetime(2026, 1, 1, 3, 10, tzinfo=UTC))
    sched = make(home, hourly(CatchupPolicy.ALL), clock)
    scheds.append(sched)
    sched.tick()
    before = [a for a, _, _ in ran(home)]
    assert before == ["00:00", "01:00", "02:00"]
    sched.shutdown()
    # the scheduler was down from 03:10 to 09:10; a new one starts with the declared policy
    clock.t = dt.datetime(2026, 1, 1, 9, 10, tzinfo=UTC)
    sched2 = make(home, hourly(policy, grace), clock)
    scheds.append(sched2)
    outcomes = sched2.tick()
    assert [o.interval.start.strftime("%H:%M") for o in outcomes if o.interval] == expected
    assert all(o.status == "succeeded" for o in outcomes)
    assert [a for a, _, _ in ran(home)] == before + expected
    skipped = sched2.store.query("SELECT COUNT(*) FROM schedule_runs WHERE status='skipped'")
    assert skipped[0][0] == 6 - len(expected)
    assert sched2.tick() == []  # nothing is due twice


def test_catchup_all_respects_max_active(home: Path, scheds: list[Scheduler]) -> None:
    lock = threading.Lock()
    active = [0, 0]  # now, peak

    def slow(req: RunRequest) -> RunOutcome:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return RunOutcome(req.run_id, "succeeded")

    clock = Clock(dt.datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    sched = make(home, hourly(CatchupPolicy.ALL, max_active=2), clock, execute=slow,
                 max_active=8)
    scheds.append(sched)
    outcomes = sched.tick()
    assert len(outcomes) == 10
    assert active[1] == 2


def test_next_fires_come_from_the_injected_clock(home: Path, scheds: list[Scheduler]) -> None:
    clock = Clock(dt.datetime(2026, 1, 1, 3, 10, tzinfo=UTC))
    sched = make(home, hourly(CatchupPolicy.ALL), clock)
    scheds.append(sched)
    fires = sched.next_fires("hourly", 2)
    assert [f.strftime("%H:%M") for f, _ in fires] == ["04:00", "05:00"]
    assert fires[0][1].start == dt.datetime(2026, 1, 1, 3, tzinfo=UTC)
    assert 2 * 3600 <= sched.get("hourly").freshness_threshold() <= 2 * 3600 + 60
