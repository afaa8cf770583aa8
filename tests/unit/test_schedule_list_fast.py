"""`schedule list` does work proportional to what it shows: the freshness threshold of any
schedule is computed without listing a year of fires, and agrees with listing them."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.cli.main import main
from reliability.schedule.intervals import (
    CronTimetable,
    IntervalTimetable,
    _cron_span,
    _enumerated_span,
    _interval_span,
    freshness_threshold,
)

UTC = dt.UTC
CRONS = ["0 * * * *", "30 2 * * *", "0 9 * * 1-5", "*/20 1-3 * * *", "0 0 1 * *",
         "15 2,3 * * 0", "0 0 31 * *", "0 12 * 6 *", "0 0 13 * 5", "5 */2 * * *",
         "0 0 29 2 *", "0,30 0-4 * * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron=st.sampled_from(CRONS), zone=st.sampled_from(ZONES),
       origin=st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2026, 12, 1),
                           timezones=st.just(UTC)),
       days=st.integers(1, 40), missed=st.integers(1, 8),
       start_after=st.none() | st.integers(0, 30 * 24),
       end_after=st.none() | st.integers(0, 40 * 24))
def test_cron_threshold_equals_listing_every_interval(
        cron: str, zone: str, origin: dt.datetime, days: int, missed: int,
        start_after: int | None, end_after: int | None) -> None:
    start = origin + dt.timedelta(hours=start_after) if start_after is not None else None
    end = origin + dt.timedelta(hours=end_after) if end_after is not None else None
    if start is not None and end is not None and end <= start:
        end = None
    tt = CronTimetable(cron, zone, start=start, end=end)
    sample = dt.timedelta(days=days)
    assert _cron_span(tt, missed, origin, sample) == _enumerated_span(tt, missed, origin, sample)


@settings(max_examples=40, deadline=None)
@given(hours=st.integers(1, 24 * 9), missed=st.integers(1, 20), offset=st.integers(-500, 500),
       end_days=st.none() | st.integers(0, 60))
def test_interval_threshold_equals_listing_every_interval(hours: int, missed: int, offset: int,
                                                          end_days: int | None) -> None:
    origin = dt.datetime(2026, 3, 1, tzinfo=UTC)
    anchor = origin + dt.timedelta(hours=offset)
    end = anchor + dt.timedelta(days=end_days) if end_days is not None else None
    tt = IntervalTimetable(dt.timedelta(hours=hours), anchor, end=end)
    sample = dt.timedelta(days=60)
    assert _interval_span(tt, missed, origin, sample) == _enumerated_span(tt, missed, origin,
                                                                         sample)


@pytest.mark.parametrize(("timetable", "expected"), [
    (CronTimetable("* * * * *"), 120.0),
    (CronTimetable("* * * * *", "Europe/Berlin"), 120.0),
    (CronTimetable("*/5 * * * *", "America/New_York"), 600.0),
    (IntervalTimetable(dt.timedelta(seconds=1), dt.datetime(2026, 1, 1, tzinfo=UTC)), 2.0),
])
def test_frequent_schedules_are_fast(timetable: object, expected: float) -> None:
    t0 = time.monotonic()
    assert freshness_threshold(timetable, 2) == expected  # type: ignore[arg-type]
    assert freshness_threshold(timetable, 1000) == expected * 500  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 0.5


def _list(tmp_path: Path, name: str, body: str) -> float:
    f = tmp_path / f"{name}.schedule.yaml"
    f.write_text(f"schedules:\n- name: {name}\n  pipeline: sample_pipelines:chain\n" + body)
    t0 = time.monotonic()
    assert main(["schedule", "list", "--file", str(f), "--home", str(tmp_path / "h"),
                 "-n", "5"]) == 0
    return time.monotonic() - t0


@pytest.mark.parametrize("body", ["  cron: '* * * * *'\n  timezone: Europe/Berlin\n",
                                  "  every: 1s\n  start: '2026-01-01T00:00:00+00:00'\n"])
def test_schedule_list_of_a_frequent_schedule_is_fast(
        tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]) -> None:
    _list(tmp_path, "daily", "  cron: '0 0 * * *'\n")  # imports and first-use costs
    elapsed = _list(tmp_path, "busy", body)
    out = capsys.readouterr().out
    assert "next fires of busy" in out
    assert elapsed < 0.5, elapsed
