"""Timetables: DST-correct data intervals, lookups, freshness thresholds."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval
from reliability.schedule.intervals import (
    CronTimetable,
    DateTimetable,
    IntervalTimetable,
    freshness_threshold,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
H = dt.timedelta(hours=1)


def local(ivs: list[DataInterval]) -> list[tuple[str, str, float]]:
    return [(iv.start.astimezone(BERLIN).isoformat(), iv.end.astimezone(BERLIN).isoformat(),
             (iv.end - iv.start) / H) for iv in ivs]


def test_daily_0230_spring_forward_shifts_the_missing_time_by_the_gap() -> None:
    tt = CronTimetable("30 2 * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 3, 28, tzinfo=BERLIN),
                       dt.datetime(2026, 3, 31, tzinfo=BERLIN))
    assert local(ivs) == [
        # 02:30 does not exist on 29 March: the fire is at 03:30 CEST (= 01:30 UTC)
        ("2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", 24.0),
        ("2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", 23.0),
    ]


def test_daily_0230_fall_back_fires_once_and_the_day_is_25_hours() -> None:
    tt = CronTimetable("30 2 * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 10, 24, tzinfo=BERLIN),
                       dt.datetime(2026, 10, 27, tzinfo=BERLIN))
    assert local(ivs) == [
        ("2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", 24.0),
        ("2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", 25.0),
    ]


def test_hourly_spring_forward_has_no_0200_and_every_interval_is_an_hour() -> None:
    tt = CronTimetable("0 * * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 3, 29, 0, tzinfo=BERLIN),
                       dt.datetime(2026, 3, 29, 5, tzinfo=BERLIN))
    starts = [s[11:16] for s, _, _ in local(ivs)]
    assert starts == ["00:00", "01:00", "03:00", "04:00"]
    assert {h for *_, h in local(ivs)} == {1.0}


def test_hourly_fall_back_runs_both_copies_of_the_repeated_hour() -> None:
    tt = CronTimetable("0 * * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 10, 25, 1, tzinfo=BERLIN),
                       dt.datetime(2026, 10, 25, 4, tzinfo=BERLIN))
    assert [s for s, _, _ in local(ivs)] == [
        "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert {h for *_, h in local(ivs)} == {1.0}


def test_midnight_cron_keeps_the_day_after_spring_forward() -> None:
    # APScheduler 3.11's own zone arithmetic jumps from 27 to 29 March here
    tt = CronTimetable("0 0 * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 3, 28, tzinfo=BERLIN),
                       dt.datetime(2026, 3, 31, tzinfo=BERLIN))
    assert [(s[:10], h) for s, _, h in local(ivs)] == [
        ("2026-03-28", 24.0), ("2026-03-29", 23.0), ("2026-03-30", 24.0)]


def test_intervals_are_contiguous_over_a_year_with_two_dst_switches() -> None:
    tt = CronTimetable("30 2 * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert all(a.end == b.start for a, b in itertools.pairwise(ivs))
    lengths = sorted({(iv.end - iv.start) / H for iv in ivs})
    assert lengths == [23.0, 24.0, 25.0]


def test_lookups_agree_with_the_sequence() -> None:
    tt = CronTimetable("30 2 * * *", "Europe/Berlin")
    ivs = tt.intervals(dt.datetime(2026, 3, 27, tzinfo=UTC), dt.datetime(2026, 4, 2, tzinfo=UTC))
    for iv in ivs:
        assert tt.interval_ending_at(iv.end) == iv
        assert tt.interval_containing(iv.start + dt.timedelta(hours=3)) == iv
        assert tt.latest_complete(iv.end + dt.timedelta(minutes=1)) == iv


def test_interval_timetable_counts_elapsed_time_from_its_anchor() -> None:
    anchor = dt.datetime(2026, 3, 29, 0, tzinfo=BERLIN)  # a 23-hour local day
    tt = IntervalTimetable(dt.timedelta(hours=6), anchor)
    assert len(tt.intervals(anchor, dt.datetime(2026, 3, 30, 0, tzinfo=BERLIN))) == 3
    ivs = tt.intervals(anchor, anchor.astimezone(UTC) + dt.timedelta(days=1))
    assert len(ivs) == 4
    assert {iv.end - iv.start for iv in ivs} == {dt.timedelta(hours=6)}
    assert tt.prev_fire(anchor) is None
    assert tt.next_fire(anchor) == anchor.astimezone(UTC) + dt.timedelta(hours=6)


def test_date_timetable_is_one_interval() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    at = dt.datetime(2026, 2, 1, tzinfo=UTC)
    tt = DateTimetable(at, start)
    assert tt.intervals(start, at + H) == [DataInterval(start, at)]
    assert tt.next_fire(at) is None


def test_freshness_threshold_is_two_missed_intervals_longest_first() -> None:
    daily = CronTimetable("30 2 * * *", "Europe/Berlin")
    assert freshness_threshold(daily, 2) == 49 * 3600  # includes the 25-hour day
    weekdays = CronTimetable("0 9 * * 1-5", "UTC")
    assert freshness_threshold(weekdays, 2) == 4 * 86400  # Thu -> Fri -> Mon
    assert freshness_threshold(CronTimetable("0 * * * *"), 3,
                               grace=dt.timedelta(minutes=10)) == 3 * 3600 + 600


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"expr": "61 * * * *"}, "cron='61 * * * *'"),
    ({"expr": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone='Mars/Olympus'"),
])
def test_bad_cron_and_zone_name_the_value(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(DefinitionError, match="Fix:") as err:
        CronTimetable(**kwargs)
    assert needle in str(err.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(DefinitionError, match="time-zone aware"):
        CronTimetable("0 0 * * *").intervals(dt.datetime(2026, 1, 1),
                                             dt.datetime(2026, 1, 2, tzinfo=UTC))
