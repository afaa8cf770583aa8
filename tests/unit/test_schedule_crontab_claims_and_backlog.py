"""The scheduler's rules: crontab day rules, trigger alignment, grace, claims, shutdown,
schedule-file and command-line input."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.cli.main import main
from reliability.errors import ConfigError, DefinitionError
from reliability.pipeline import DataInterval, Pipeline
from reliability.schedule import (
    Catchup,
    CatchupPolicy,
    CronTimetable,
    FileWatch,
    RunRequest,
    Schedule,
    Scheduler,
    ScheduleStore,
    load_schedules,
    plan_catchup,
)
from reliability.schedule.intervals import utc_key
from reliability.schedule.scheduler import RunOutcome, TriggerOutcome
from reliability.schedule.triggers import FileWatcher

UTC = dt.UTC
FEB = dt.datetime(2026, 2, 1, tzinfo=UTC)


def days(expr: str, start: dt.datetime = FEB, n: int = 14) -> list[str]:
    tt = CronTimetable(expr)
    return [f.strftime("%a %d") for f in tt.fires(start, start + dt.timedelta(days=n))]


# -- crontab day rules ---------------------------------------------------------------------
def test_numeric_day_of_week_counts_from_sunday_like_crontab() -> None:
    # 2026-02-01 is a Sunday. APScheduler 3 counts 0 from Monday; crontab from Sunday.
    assert days("0 0 * * 1-5", n=7) == ["Mon 02", "Tue 03", "Wed 04", "Thu 05", "Fri 06"]
    assert days("0 0 * * 0") == days("0 0 * * 7") == days("0 0 * * sun") == ["Sun 01", "Sun 08"]
    assert days("0 0 * * 5-7", n=7) == ["Sun 01", "Fri 06", "Sat 07"]
    assert days("0 0 * * */3", n=7) == ["Sun 01", "Wed 04", "Sat 07"]


def test_day_of_month_and_day_of_week_both_set_fire_on_either() -> None:
    assert days("0 0 1 * 1", n=22) == ["Sun 01", "Mon 02", "Mon 09", "Mon 16"]
    # a star-led day-of-month keeps the AND rule (classic cron)
    assert days("0 0 */7 * 1", start=dt.datetime(2026, 6, 1, tzinfo=UTC), n=30) == \
        ["Mon 01", "Mon 08", "Mon 15", "Mon 22", "Mon 29"]


def test_a_cron_that_never_fires_is_refused_at_once() -> None:
    t0 = time.monotonic()
    with pytest.raises(DefinitionError, match="never fires"):
        CronTimetable("0 0 31 2 *")
    assert time.monotonic() - t0 < 0.5
    assert days("0 0 31 2 1", n=9) == ["Mon 02", "Mon 09"]  # the weekday still fires
    with pytest.raises(DefinitionError, match=r"day_of_week '8'.*0 and 7 = Sunday"):
        CronTimetable("0 0 * * 8")


# -- scheduler -----------------------------------------------------------------------------
class Clock:
    def __init__(self, t: dt.datetime) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t


class Blocking:
    """An execute function whose runs last until cancelled (or released)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[str] = []

    def __call__(self, req: RunRequest) -> RunOutcome:
        self.started.append(req.interval.key())
        status = "cancelled" if not self.release.wait(10) else "succeeded"
        return RunOutcome(req.run_id, "cancelled" if self.cancelled else status)

    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.release.set()


def quick(req: RunRequest) -> RunOutcome:
    return RunOutcome(req.run_id, "succeeded")


@pytest.fixture
def scheds() -> Iterator[list[Scheduler]]:
    made: list[Scheduler] = []
    yield made
    for s in made:
        s.shutdown(cancel=True)
        s.store.close()


def berlin_daily(**kw: object) -> Schedule:
    return Schedule("daily", "p", CronTimetable("30 2 * * *", "Europe/Berlin"),
                    **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [
    "2026-01-02T00:00:00+00:00/2026-01-02T05:00:00+00:00",   # cut across two intervals
    "2026-02-01T01:30:00+00:00/2026-02-01T05:30:00+00:00",   # right start, end no fire
    "2026-02-01T02:30:00+00:00/2026-02-02T02:30:00+00:00",   # UTC 02:30, not Berlin's
])
def test_a_trigger_for_an_interval_off_the_timetable_is_refused(
        tmp_path: Path, scheds: list[Scheduler], text: str) -> None:
    sched = Scheduler([berlin_daily()], execute=quick, home=tmp_path, now=Clock(FEB))
    scheds.append(sched)
    with pytest.raises(DefinitionError, match="not a data interval of schedule 'daily'"):
        sched.trigger("daily", DataInterval.parse(text))
    assert sched.store.query("SELECT COUNT(*) FROM schedule_runs")[0][0] == 0
    ok = sched.trigger("daily", DataInterval.parse(
        "2026-01-30T02:30:00+01:00/2026-01-31T02:30:00+01:00"), wait=True)
    assert ok.started and ok.status == "succeeded"


def test_a_trigger_for_an_interval_that_has_not_ended_is_a_no_op(
        tmp_path: Path, scheds: list[Scheduler]) -> None:
    clock = Clock(FEB)  # 1 February 00:00 UTC: the interval ending 01:30 UTC is still open
    sched = Scheduler([berlin_daily()], execute=quick, home=tmp_path, now=clock)
    scheds.append(sched)
    open_iv = DataInterval.parse("2026-01-31T02:30:00+01:00/2026-02-01T02:30:00+01:00")
    early = sched.trigger("daily", open_iv, source="http")
    assert not early.started and "has not ended" in early.reason and "Fix:" in early.reason
    assert sched.store.query("SELECT COUNT(*) FROM schedule_runs")[0][0] == 0
    clock.t = FEB + dt.timedelta(hours=2)  # now it has ended: its own fire runs it
    done = sched.trigger("daily", open_iv, source="cron", wait=True)
    assert done.started and done.status == "succeeded"


def test_one_schedules_backlog_does_not_hold_up_another(tmp_path: Path,
                                                        scheds: list[Scheduler]) -> None:
    import threading

    gate = threading.Event()

    def slow_a(req: RunRequest) -> RunOutcome:
        if req.schedule == "a":
            gate.wait(10)
        return RunOutcome(req.run_id, "succeeded")

    a = Schedule("a", "pa", CronTimetable("0 0 * * *", start=FEB),
                 catchup=Catchup(CatchupPolicy.ALL, dt.timedelta(0), max_active=1))
    b = Schedule("b", "pb", CronTimetable("0 0 * * *", start=FEB))
    sched = Scheduler([a, b], execute=slow_a, home=tmp_path,
                      now=Clock(FEB + dt.timedelta(days=9, hours=1)), max_active=4)
    scheds.append(sched)
    backlog = sched.tick(["a"], wait=False)
    assert len([o for o in backlog if o.started]) == 9  # one runs, eight wait their turn
    other = sched.trigger("b", source="http")
    try:
        assert other.future is not None
        assert other.future.result(timeout=5).status == "succeeded"  # not behind a's queue
    finally:
        gate.set()
    assert all(o.wait(10).status == "succeeded" for o in backlog)


def test_skip_policy_with_zero_grace_still_runs_a_fire_woken_a_little_late() -> None:
    tt = CronTimetable("0 * * * *", start=FEB)
    woke = FEB + dt.timedelta(hours=3, seconds=2)  # the 03:00 fire, woken 2 s late
    plan = plan_catchup(tt, Catchup(CatchupPolicy.SKIP, dt.timedelta(0)), now=woke,
                        since=FEB, rows={})
    assert [iv.end.hour for iv in plan.run] == [3]
    assert [iv.end.hour for iv in plan.skip] == [1, 2]


def test_a_claim_held_under_a_reused_pid_is_taken_over(tmp_path: Path) -> None:
    store = ScheduleStore.at_home(tmp_path)
    try:
        iv = DataInterval(FEB, FEB + dt.timedelta(days=1))
        # a live process (our parent) that is not the one that claimed: other start time
        owner = f"{os.uname().nodename}:{os.getppid()}:feedbeef@not-a-boot:1"
        with store.tx() as db:
            db.execute("INSERT INTO schedule_runs (pipeline, interval_start, interval_end,"
                       " run_id, status, owner, claims, created_at, updated_at)"
                       " VALUES ('p',?,?,'r1','running',?,1,0,0)",
                       (utc_key(iv.start), utc_key(iv.end), owner))
        claim = store.claim("p", iv)
        assert claim.acquired and claim.resume and claim.run_id == "r1"
    finally:
        store.close()


def test_restart_without_start_looks_back_to_this_schedules_rows_only(
        tmp_path: Path, scheds: list[Scheduler]) -> None:
    store = ScheduleStore.at_home(tmp_path)
    scheds_tt = CronTimetable("0 0 * * *")
    old = DataInterval(dt.datetime(2020, 1, 1, 6, tzinfo=UTC), dt.datetime(2020, 1, 2, tzinfo=UTC))
    mine = DataInterval(FEB - dt.timedelta(days=1), FEB)
    for iv, who in ((old, "backfill:bf-1"), (mine, "daily")):
        assert store.claim("p", iv, schedule=who).acquired
        store.finish("p", iv, "succeeded")
    store.close()
    sched = Scheduler([Schedule("daily", "p", scheds_tt, catchup=Catchup(CatchupPolicy.ALL))],
                      execute=quick, home=tmp_path, now=Clock(FEB + dt.timedelta(days=2, hours=1)))
    scheds.append(sched)
    assert [iv.start.day for iv in sched.plan("daily").run] == [1, 2]


def test_shutdown_with_cancel_stops_running_and_queued_runs(
        tmp_path: Path, scheds: list[Scheduler]) -> None:
    ex = Blocking()
    s = Schedule("h", "p", CronTimetable("0 * * * *", start=FEB),
                 catchup=Catchup(CatchupPolicy.ALL, max_active=1))
    sched = Scheduler([s], execute=ex, home=tmp_path, now=Clock(FEB + dt.timedelta(hours=2)))
    outs = sched.tick(wait=False)
    assert [o.started for o in outs] == [True, True]
    deadline = time.monotonic() + 5
    while not ex.started and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    sched.shutdown(cancel=True)
    assert time.monotonic() - t0 < 3
    rows = sched.store.query("SELECT status, error FROM schedule_runs ORDER BY interval_start")
    sched.store.close()
    assert [r[0] for r in rows] == ["cancelled", "cancelled"]
    assert rows[1][1] == "scheduler stopped before the run began" and len(ex.started) == 1


# -- file events ---------------------------------------------------------------------------
def test_a_file_for_a_partition_outside_the_timetable_runs_nothing(tmp_path: Path) -> None:
    fired: list[tuple[DataInterval | None, str]] = []
    tt = CronTimetable("0 0 * * *", start=dt.datetime(2026, 1, 1, tzinfo=UTC))
    w = FileWatcher(FileWatch(tmp_path, "*.csv", "dt=%Y-%m-%d"),
                    lambda iv, src: fired.append((iv, src)), tt, Clock(FEB))
    (tmp_path / "dt=2025-06-01").mkdir()
    (tmp_path / "dt=2025-06-01" / "a.csv").write_text("x\n")
    assert w.scan() == 0 and fired == []
    (tmp_path / "dt=2026-01-10").mkdir()
    (tmp_path / "dt=2026-01-10" / "a.csv").write_text("x\n")
    assert w.scan() == 1
    assert fired[0][0] == DataInterval(dt.datetime(2026, 1, 10, tzinfo=UTC),
                                       dt.datetime(2026, 1, 11, tzinfo=UTC))


# -- schedule files ------------------------------------------------------------------------
BASE = "schedules:\n  - name: a\n    pipeline: x:y\n"


@pytest.mark.parametrize(("body", "path", "needle"), [
    ("    every: 0s\n    start: '2026-01-01T00:00+00:00'\n", "schedules[0].every",
     "must be positive"),
    ("    cron: '0 0 * * *'\n    start: '0001-01-01T00:00+00:00'\n", "schedules[0].start",
     "supported range"),
    ("    every: 1d\n    start: '9999-12-31T00:00+00:00'\n", "schedules[0].start",
     "supported range"),
    ("    every: 99999999999d\n    start: '2026-01-01T00:00+00:00'\n", "schedules[0].every",
     "too long"),
    ("    cron: '0 0 31 2 *'\n", "schedules[0].cron", "never fires"),
    ("    cron: '0 0 * * *'\n    watch: {path: x, poll: 0s}\n", "schedules[0].watch.poll",
     "at least 50ms"),
    ("    cron: '0 0 * * *'\n    watch: {path: x, partition: 'dt=%Q'}\n",
     "schedules[0].watch.partition", "%Q"),
    ("    cron: '0 0 * * *'\n    fire_on: events\n    http: false\n", "schedules[0]",
     "never fires"),
])
def test_bad_schedule_files_name_key_path_and_fix(tmp_path: Path, body: str, path: str,
                                                   needle: str) -> None:
    f = tmp_path / "s.schedule.yaml"
    f.write_text(BASE + body)
    with pytest.raises(ConfigError) as err:
        load_schedules(f, resolve=lambda _ref: Pipeline("p"))
    text = str(err.value)
    assert f"{f}: {path}:" in text and needle in text and "Fix:" in text


# -- command line --------------------------------------------------------------------------
TINY = "from reliability import Pipeline\npipeline = Pipeline('tiny')\n\n" \
       "@pipeline.step\ndef extract(ctx):\n    return 1\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tinysched.py").write_text(TINY)
    (tmp_path / "midnight.schedule.yaml").write_text(
        "schedules:\n  - name: berlin-days\n    pipeline: tinysched:pipeline\n"
        "    cron: '0 0 * * *'\n    timezone: Europe/Berlin\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.mark.parametrize(("extra", "needle"), [
    (["--start", "0001-01-01", "--end", "2026-01-01", "--every", "1d"], "error: --start="),
    (["--start", "2026-01-01", "--end", "9999-12-31T23:00", "--every", "1d"], "error: --end="),
    (["--start", "2026-01-01", "--end", "2026-02-01", "--every", "9999999999999d"],
     "error: --every"),
])
def test_backfill_out_of_range_input_is_an_error_line(
        project: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        needle: str) -> None:
    code = main(["backfill", "tinysched:pipeline", "--dry-run", "--home", "h", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(needle) and "Traceback" not in err


def test_backfill_reads_naive_dates_in_the_schedules_zone(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backfill", "tinysched:pipeline", "--schedules", "midnight.schedule.yaml",
                 "--start", "2026-03-28", "--end", "2026-03-31", "--dry-run", "--home", "h"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2026-03-28T00:00:00+01:00" in out          # the first Berlin day is included
    assert "2026-03-30T00:00:00+02:00" in out and "3 of 3 intervals" in out
    assert not (project / "h" / "ledger.db").exists() or _no_backfills(project / "h")


def _no_backfills(home: Path) -> bool:
    with sqlite3.connect(home / "ledger.db") as db:
        return db.execute("SELECT COUNT(*) FROM backfills").fetchone()[0] == 0


def test_shutdown_without_waiting_still_runs_queued_runs_and_callbacks_may_trigger(
        tmp_path: Path) -> None:
    import threading

    release = threading.Event()

    def blocking(req: RunRequest) -> RunOutcome:
        release.wait(10)
        return RunOutcome(req.run_id, "succeeded")

    one = Schedule("one", "p1", CronTimetable("0 0 * * *", start=FEB),
                   catchup=Catchup(CatchupPolicy.ALL, dt.timedelta(0), max_active=1))
    sched = Scheduler([one], execute=blocking, home=tmp_path,
                      now=Clock(FEB + dt.timedelta(days=5)))
    first = sched.trigger("one", DataInterval(FEB, FEB + dt.timedelta(days=1)))
    second = sched.trigger("one", DataInterval(FEB + dt.timedelta(days=1),
                                               FEB + dt.timedelta(days=2)))
    assert first.started and second.started and second.future is not None
    chained: list[TriggerOutcome] = []  # a done-callback that triggers again
    second.future.add_done_callback(lambda f: chained.append(sched.trigger(
        "one", DataInterval(FEB + dt.timedelta(days=2), FEB + dt.timedelta(days=3)))))
    sched.shutdown(wait=False)  # without cancel: the queued run still runs
    release.set()
    assert first.wait(10).status == "succeeded"
    assert second.wait(10).status == "succeeded"
    deadline = time.monotonic() + 10
    while not chained and time.monotonic() < deadline:
        time.sleep(0.01)
    assert chained and not chained[0].started and "shutting down" in chained[0].reason
    sched.pool.shutdown(wait=True)  # closed by the last run; returns at once
    sched.store.close()
