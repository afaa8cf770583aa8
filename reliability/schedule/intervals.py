"""Timetables: which data intervals a schedule produces, DST-correct and clock-free.

A timetable is a sequence of fire times ``f0 < f1 < f2 ...``; the data interval of the fire
at ``f[i+1]`` is the half-open ``[f[i], f[i+1])`` -- a run starts once its interval's data is
complete. Nothing here reads the clock: every question takes the instant it is about.

Fire times and interval bounds are returned in UTC: aware datetimes sharing one zone compare
and subtract by wall clock in Python (a 25-hour fall-back day would measure 24 hours, and the
two 02:00s of that night would compare equal), UTC never does. Use :meth:`Timetable.local` (or
``.astimezone(zone)``) to show or partition by local time.

Cron wall-clock times come from APScheduler's ``CronTrigger`` (imported lazily) evaluated
in a UTC frame, where no DST exists; ``zoneinfo`` then maps each wall time to real instants
(3.11's own zone arithmetic skips the day after a spring-forward for a midnight cron):

* a wall time that does not exist (02:30 on a spring-forward day) is shifted forward by the
  gap, as ``zoneinfo`` resolves it (02:30 CET -> 03:30 CEST), and normalised to a real offset;
* a wall time that occurs twice (02:30 on a fall-back day) fires once, unless the hour field
  is a wildcard (``*``, ``*/2``): hourly jobs fire in both copies of the repeated hour, because
  each is a real hour of data. This is the rule classic cron uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reliability.errors import DefinitionError
from reliability.pipeline import DataInterval

__all__ = [
    "CronTimetable",
    "DateTimetable",
    "IntervalTimetable",
    "Timetable",
    "freshness_threshold",
    "utc_key",
]

UTC = dt.UTC
_TICK = dt.timedelta(microseconds=1)
_MAX_LOOKBACK = dt.timedelta(days=366 * 9)
_SLACK = dt.timedelta(hours=3)  # more than any UTC offset change


def utc_key(t: dt.datetime) -> str:
    """Fixed-width, sortable UTC text of an instant (the ledger's interval key)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(
            f"timezone={name!r} is not an IANA time zone name. "
            "Fix: use e.g. 'UTC' or 'Europe/Berlin'") from None


def _aware(t: dt.datetime, what: str) -> dt.datetime:
    """``t`` in UTC; naive datetimes are refused."""
    if t.tzinfo is None:
        raise DefinitionError(
            f"{what}={t.isoformat()} must be time-zone aware. "
            "Fix: add an offset, e.g. 2026-01-01T00:00:00+00:00")
    return t.astimezone(UTC)


#: Instants a timetable accepts: wide enough for any data, far from datetime's limits.
MIN_TIME = dt.datetime(1900, 1, 1, tzinfo=UTC)
MAX_TIME = dt.datetime(9999, 1, 1, tzinfo=UTC)


def check_range(t: dt.datetime, what: str) -> dt.datetime:
    """``t`` in UTC, refused when naive or outside ``[MIN_TIME, MAX_TIME)``."""
    t = _aware(t, what)
    if not MIN_TIME <= t < MAX_TIME:
        raise DefinitionError(
            f"{what}={t.isoformat()} is outside the supported range "
            f"[{MIN_TIME.date()}, {MAX_TIME.date()}). Fix: use a date in that range "
            "(leave out an end to have none)")
    return t


# -- crontab fields --------------------------------------------------------------------
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_APS_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # names APScheduler accepts


def _field_value(text: str, lo: int, hi: int, names: tuple[str, ...], base: int) -> int:
    low = text.lower()
    if low in names:
        return names.index(low) + base
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ValueError(f"{text!r} is not in {lo}-{hi}")
    return int(text)


def _expand(field: str, lo: int, hi: int, names: tuple[str, ...] = (), base: int = 0
            ) -> set[int]:
    """The values a crontab field selects (lists, ranges, steps, names); ValueError if not
    classic crontab syntax."""
    out: set[int] = set()
    for token in field.split(","):
        rng, _, step_text = token.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"step {step_text!r} is not a positive number")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            left, _, right = rng.partition("-")
            a = _field_value(left, lo, hi, names, base)
            b = _field_value(right, lo, hi, names, base)
            if a > b:
                raise ValueError(f"range {rng!r} runs backwards")
        else:
            a = _field_value(rng, lo, hi, names, base)
            b = hi if step else a
        out.update(range(a, b + 1, step or 1))
    return out


def _cron_triggers(expr: str) -> list[Any]:
    """APScheduler wall-clock triggers (UTC frame) for a classic 5-field crontab ``expr``.

    Classic crontab numbers days of the week 0-7 from Sunday (0 and 7 both Sunday) where
    APScheduler 3 counts from Monday, so the field is translated to day names. When both
    day-of-month and day-of-week are restricted, classic cron fires on days matching
    *either*; that is two triggers. A day-of-month no selected month has is refused.
    """
    from apscheduler.triggers.cron import CronTrigger

    fix = ("Fix: write five fields 'minute hour day month day_of_week', e.g. '30 2 * * *' "
           "(day_of_week 0-7 or sun-sat, 0 and 7 = Sunday)")
    fields = expr.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"it has {len(fields)} fields, not 5")
        minute, hour, dom, month, dow = fields
        try:
            days = {d % 7 for d in _expand(dow, 0, 7, _DOW_NAMES)}
        except ValueError as exc:
            raise ValueError(f"day_of_week {dow!r}: {exc}") from None
        aps_dow = "*" if dow.startswith("*") and len(days) == 7 else \
            ",".join(_APS_DOW[d] for d in sorted(days))
        dom_ok = _dom_possible(dom, month)
        either = not dom.startswith("*") and not dow.startswith("*")
        kw = {"minute": minute, "hour": hour, "month": month, "timezone": UTC}
        if either:
            out = [CronTrigger(day="*", day_of_week=aps_dow, **kw)]
            if dom_ok:
                out.append(CronTrigger(day=dom, day_of_week="*", **kw))
            return out
        if not dom_ok:
            raise ValueError(f"day {dom!r} never occurs in month {month!r}, so it never fires")
        return [CronTrigger(day=dom, day_of_week=aps_dow, **kw)]
    except ValueError as exc:
        raise DefinitionError(
            f"cron={expr!r} is not a valid crontab expression ({exc}). {fix}") from None


def _dom_possible(dom: str, month: str) -> bool:
    """Whether some selected month has a selected day (True when unsure: APScheduler's
    extensions such as ``last``)."""
    try:
        days = _expand(dom, 1, 31)
        months = _expand(month, 1, 12, _MONTH_NAMES, 1)
    except ValueError:
        return True
    return any(min(days) <= _MONTH_DAYS[m - 1] for m in months)


class Timetable:
    """Base: subclasses define :meth:`next_fire`, :meth:`prev_fire` and :meth:`describe`."""

    tz: dt.tzinfo = UTC
    #: Fire times are never before this instant (None: unbounded).
    start: dt.datetime | None = None

    def next_fire(self, after: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after ``after``."""
        raise NotImplementedError

    def prev_fire(self, before: dt.datetime) -> dt.datetime | None:
        """The last fire time strictly before ``before``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    # -- derived -----------------------------------------------------------------------
    def fires(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        """Fire times ``f`` with ``start <= f < end``."""
        f = self.next_fire(_aware(start, "start") - _TICK)
        end = _aware(end, "end")
        while f is not None and f < end:
            yield f
            f = self.next_fire(f)

    def intervals(self, start: dt.datetime, end: dt.datetime, *,
                  limit: int | None = None) -> list[DataInterval]:
        """Every data interval inside ``[start, end)``, oldest first (at most ``limit``)."""
        out: list[DataInterval] = []
        prev: dt.datetime | None = None
        f = self.next_fire(_aware(start, "start") - _TICK)
        end = _aware(end, "end")
        while f is not None and f <= end:
            if prev is not None:
                if limit is not None and len(out) >= limit:
                    raise DefinitionError(
                        f"{self.describe()} has more than {limit} data intervals in "
                        f"[{start.isoformat()}, {end.isoformat()}). Fix: narrow the range, "
                        "use longer intervals, or split the backfill")
                out.append(DataInterval(prev, f))
            prev = f
            f = self.next_fire(f)
        return out

    def interval_ending_at(self, fire: dt.datetime) -> DataInterval | None:
        """The data interval whose run fires at ``fire`` (None for the very first fire)."""
        prev = self.prev_fire(fire)
        return DataInterval(prev, fire) if prev is not None else None

    def interval_containing(self, t: dt.datetime) -> DataInterval | None:
        """The data interval that contains instant ``t``."""
        t = _aware(t, "t")
        nxt = self.next_fire(t)
        prev = self.prev_fire(t + _TICK)
        if prev is None or nxt is None:
            return None
        return DataInterval(prev, nxt)

    def latest_complete(self, now: dt.datetime) -> DataInterval | None:
        """The newest interval whose end is at or before ``now``."""
        last = self.prev_fire(_aware(now, "now") + _TICK)
        return self.interval_ending_at(last) if last is not None else None

    def local(self, t: dt.datetime) -> dt.datetime:
        return t.astimezone(self.tz)


class CronTimetable(Timetable):
    """Fire times of a 5-field crontab expression in a time zone (DST-correct)."""

    def __init__(self, expr: str, timezone: str = "UTC", *,
                 start: dt.datetime | None = None, end: dt.datetime | None = None) -> None:
        self.expr = expr
        self.tz = zone(timezone)
        self.tz_name = timezone
        self.start = check_range(start, "start") if start else None
        self.end = check_range(end, "end") if end else None
        # Wall-clock fire times are computed in a UTC frame, where no DST exists;
        # zoneinfo then maps each wall time to its real instant(s). (3.11's own
        # time-zone arithmetic skips the day after a spring-forward for midnight crons.)
        self._walls = _cron_triggers(expr)
        self._hour_wildcard = expr.split()[1].startswith("*")

    def describe(self) -> str:
        return f"cron '{self.expr}' ({self.tz_name})"

    def _next_wall(self, t: dt.datetime) -> dt.datetime | None:
        """The first wall-clock fire time at or after wall time ``t`` (either day rule)."""
        nxt = [w for w in (trig.get_next_fire_time(None, t) for trig in self._walls)
               if w is not None]
        return min(nxt) if nxt else None

    def _wall_of(self, t: dt.datetime) -> dt.datetime:
        return t.astimezone(self.tz).replace(tzinfo=UTC, fold=0)

    def _steady(self, t: dt.datetime) -> bool:
        """No UTC offset change within ``_SLACK`` of ``t``."""
        off = t.astimezone(self.tz).utcoffset()
        return all((t + d).astimezone(self.tz).utcoffset() == off for d in (-_SLACK, _SLACK))

    def _instants(self, wall: dt.datetime) -> list[dt.datetime]:
        naive = wall.replace(tzinfo=None)
        first = naive.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = naive.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if second > first and self._hour_wildcard:  # repeated wall time, hourly-style cron
            return [first, second]
        return [first]  # normal, repeated (first copy), or skipped (shifted by the gap)

    def next_fire(self, after: dt.datetime) -> dt.datetime | None:
        try:
            return self._next_fire(after)
        except OverflowError:  # past year 9999: no more fires
            return None

    def _next_fire(self, after: dt.datetime) -> dt.datetime | None:
        t = _aware(after, "after")
        if self.start is not None and t < self.start:
            t = self.start - _TICK
        wall = self._wall_of(t) - (dt.timedelta(0) if self._steady(t) else _SLACK)
        best: dt.datetime | None = None
        while True:
            if best is not None and self._steady(best):
                break  # no later wall time can map to an earlier instant
            nxt = self._next_wall(wall + _TICK)
            if nxt is None or (best is not None and nxt > self._wall_of(best) + _SLACK):
                break
            wall = nxt
            for f in self._instants(wall):
                if f > t and (best is None or f < best):
                    best = f
        if best is None or (self.end is not None and best > self.end):
            return None
        return best

    def prev_fire(self, before: dt.datetime) -> dt.datetime | None:
        b = _aware(before, "before")
        lookback = dt.timedelta(minutes=1)  # doubled until a fire is in the window
        while lookback <= _MAX_LOOKBACK:
            lo = b - lookback
            if self.start is not None and lo < self.start:
                lo = self.start
            last = None
            for f in self.fires(lo, b):
                last = f
            if last is not None:
                return last
            if self.start is not None and lo <= self.start:
                return None
            lookback *= 2
        return None


class IntervalTimetable(Timetable):
    """Fire every ``every`` of elapsed time from ``anchor`` (time-zone independent)."""

    def __init__(self, every: dt.timedelta, anchor: dt.datetime, *,
                 end: dt.datetime | None = None, timezone: str = "UTC") -> None:
        if every <= dt.timedelta(0):
            raise DefinitionError(f"every={every} must be positive. Fix: e.g. every: 1h")
        self.every = every
        self.anchor = check_range(anchor, "start")
        self.start = self.anchor
        self.end = check_range(end, "end") if end else None
        self.tz = zone(timezone)

    def describe(self) -> str:
        return f"every {self.every} from {self.anchor.isoformat()}"

    def _at(self, k: int) -> dt.datetime | None:
        try:
            return self.anchor + self.every * k
        except OverflowError:  # past year 9999: no more fires
            return None

    def next_fire(self, after: dt.datetime) -> dt.datetime | None:
        after = _aware(after, "after")
        k = 0 if after < self.anchor else (after - self.anchor) // self.every + 1
        f = self._at(k)
        return None if f is None or (self.end is not None and f > self.end) else f

    def prev_fire(self, before: dt.datetime) -> dt.datetime | None:
        before = _aware(before, "before")
        if before <= self.anchor:
            return None
        k = (before - self.anchor - _TICK) // self.every
        return self._at(k)


class DateTimetable(Timetable):
    """A one-off fire at ``at`` for the single data interval ``[data_start, at)``."""

    def __init__(self, at: dt.datetime, data_start: dt.datetime) -> None:
        self.at = check_range(at, "at")
        self.data_start = check_range(data_start, "start")
        self.start = self.data_start
        DataInterval(self.data_start, self.at)  # validates start < at

    def describe(self) -> str:
        return f"once at {self.at.isoformat()}"

    def next_fire(self, after: dt.datetime) -> dt.datetime | None:
        if after < self.data_start:
            return self.data_start
        return self.at if after < self.at else None

    def prev_fire(self, before: dt.datetime) -> dt.datetime | None:
        if before > self.at:
            return self.at
        return self.data_start if before > self.data_start else None


def freshness_threshold(timetable: Timetable, missed: int = 2, *,
                        grace: dt.timedelta = dt.timedelta(0),
                        sample_from: dt.datetime | None = None,
                        sample: dt.timedelta = dt.timedelta(days=366)) -> float:
    """Seconds after which a pipeline's data is stale: ``missed`` intervals went by unrun.

    The newest data ends at a fire time; it is stale once ``missed`` more fires passed
    (plus ``grace``). Interval lengths vary (weekends, DST days, month ends), so this takes
    the longest run of ``missed`` consecutive intervals in a year sampled from
    ``sample_from`` (default: the timetable's start, or 2024-01-01 UTC).
    """
    if missed < 1:
        raise DefinitionError(f"missed={missed} must be at least 1. Fix: e.g. missed=2")
    origin = sample_from or timetable.start or dt.datetime(2024, 1, 1, tzinfo=UTC)
    span: float | None
    if isinstance(timetable, IntervalTimetable):
        span = _interval_span(timetable, missed, origin, sample)
    elif isinstance(timetable, CronTimetable):
        span = _cron_span(timetable, missed, origin, sample)
    else:
        span = _enumerated_span(timetable, missed, origin, sample)
    if span is None:
        raise DefinitionError(
            f"{timetable.describe()} has fewer than {missed} intervals in the "
            f"{sample.days} days after {origin.isoformat()}; freshness cannot be derived. "
            "Fix: give the SLA an explicit freshness threshold")
    return span + grace.total_seconds()


def _enumerated_span(timetable: Timetable, missed: int, origin: dt.datetime,
                     sample: dt.timedelta) -> float | None:
    """The longest ``missed`` consecutive intervals, by listing every interval."""
    ivs = timetable.intervals(origin, origin + sample)
    if len(ivs) < missed:
        return None
    return max((ivs[i + missed - 1].end - ivs[i].start).total_seconds()
               for i in range(len(ivs) - missed + 1))


def _interval_span(tt: IntervalTimetable, missed: int, origin: dt.datetime,
                   sample: dt.timedelta) -> float | None:
    """Every interval of an ``every`` schedule is as long: count them, list none."""
    lo = max(_aware(origin, "start"), tt.anchor)
    hi = _aware(origin, "start") + sample
    if tt.end is not None:
        hi = min(hi, tt.end)
    if hi < lo:
        return None
    first = -((tt.anchor - lo) // tt.every)  # ceil((lo - anchor) / every)
    last = (hi - tt.anchor) // tt.every
    return (tt.every * missed).total_seconds() if last - first >= missed else None


#: A day of a cron schedule: its UTC start when steady, else its fires (UTC timestamps).
_Block = tuple[float | None, list[float] | None]


def _cron_span(tt: CronTimetable, missed: int, origin: dt.datetime,
               sample: dt.timedelta) -> float | None:
    """The longest ``missed`` consecutive intervals of a cron schedule, without listing
    its fires one by one (a minutely cron has half a million in a year).

    Every selected day fires at the same wall times ``T`` (the minute and hour fields). On a
    *steady* day (no UTC offset change near it, wholly inside the sample) the fires are the
    day's UTC start plus ``T``, so a window starting at the ``j``-th fire of day ``k`` spans
    ``D[k+q] - D[k] + T[r] - T[j]`` with ``q, r = divmod(j + missed, len(T))``: the best
    ``k`` for each of the (at most two) values of ``q`` gives every such window at once.
    Windows touching an irregular day (DST, the sample's edges) are listed explicitly.
    """
    fields = tt.expr.split()
    try:
        minutes, hours = _expand(fields[0], 0, 59), _expand(fields[1], 0, 23)
    except (ValueError, IndexError):
        return _enumerated_span(tt, missed, origin, sample)
    times = sorted(h * 3600 + m * 60 for h in hours for m in minutes)
    lo = _aware(origin, "start")
    hi = lo + sample
    if tt.start is not None:
        lo = max(lo, tt.start)
    if tt.end is not None:
        hi = min(hi, tt.end)
    if hi < lo:
        return None
    blocks = _cron_blocks(tt, times, lo, hi)
    if sum(_count(b, times) for b in blocks) - 1 < missed:
        return None
    return max(_irregular_span(blocks, times, missed), _steady_span(blocks, times, missed))


def _count(block: _Block, times: list[int]) -> int:
    return len(times) if block[0] is not None else len(block[1] or ())


def _fires(block: _Block, times: list[int]) -> list[float]:
    start, listed = block
    return listed if listed is not None else [(start or 0.0) + t for t in times]


def _cron_blocks(tt: CronTimetable, times: list[int], lo: dt.datetime, hi: dt.datetime
                 ) -> list[_Block]:
    """The selected days between ``lo`` and ``hi`` (fires outside them left out)."""
    lo_ts, hi_ts = lo.timestamp(), hi.timestamp()
    blocks: list[_Block] = []
    first_day = lo.astimezone(tt.tz).date() - dt.timedelta(days=1)
    last_day = hi.astimezone(tt.tz).date() + dt.timedelta(days=1)
    for day in _cron_days(tt, first_day, last_day):
        start = dt.datetime.combine(day, dt.time(0), tzinfo=tt.tz).astimezone(UTC)
        ts = start.timestamp()
        steady = start.astimezone(tt.tz).utcoffset() == (
            start + dt.timedelta(hours=24) - _TICK).astimezone(tt.tz).utcoffset()
        if steady and lo_ts <= ts + times[0] and ts + times[-1] <= hi_ts:
            blocks.append((ts, None))
            fires = []
        elif steady:  # an edge of the sample: the fires inside it
            fires = [ts + t for t in times if lo_ts <= ts + t <= hi_ts]
        else:  # the UTC offset changes this day: map each wall time
            base = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
            fires = sorted({f.timestamp() for t in times
                            for f in tt._instants(base + dt.timedelta(seconds=t))
                            if lo_ts <= f.timestamp() <= hi_ts})
        if fires:
            blocks.append((None, fires))
    return blocks


def _cron_days(tt: CronTimetable, first: dt.date, last: dt.date) -> Iterator[dt.date]:
    """The days in ``[first, last]`` a cron fires on (classic rules, see ``_cron_triggers``)."""
    _, _, dom, month, dow = tt.expr.split()
    try:
        days = _expand(dom, 1, 31)
        months = _expand(month, 1, 12, _MONTH_NAMES, 1)
        weekdays = {d % 7 for d in _expand(dow, 0, 7, _DOW_NAMES)}
    except ValueError:  # syntax only APScheduler knows: ask it, day by day
        day = first
        while day <= last:
            wall = tt._next_wall(dt.datetime.combine(day, dt.time(0), tzinfo=UTC))
            if wall is None or wall.date() > last:
                return
            yield wall.date()
            day = wall.date() + dt.timedelta(days=1)
        return
    either = not dom.startswith("*") and not dow.startswith("*")
    day = first
    while day <= last:
        if day.month in months:
            by_date, by_weekday = day.day in days, (day.weekday() + 1) % 7 in weekdays
            if (by_date or by_weekday) if either else (by_date and by_weekday):
                yield day
        day += dt.timedelta(days=1)


def _irregular_span(blocks: list[_Block], times: list[int], missed: int) -> float:
    """The longest window touching an irregular day: its fires, and ``missed`` more on
    either side, are listed."""
    ranges: list[list[int]] = []
    for k, (start, _) in enumerate(blocks):
        if start is not None:
            continue
        a, before = k, 0
        while a > 0 and before <= missed:
            a -= 1
            before += _count(blocks[a], times)
        b, after = k, 0
        while b < len(blocks) - 1 and after <= missed:
            b += 1
            after += _count(blocks[b], times)
        if ranges and a <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], b)
        else:
            ranges.append([a, b])
    best = -1.0
    for a, b in ranges:
        listed = [f for k in range(a, b + 1) for f in _fires(blocks[k], times)]
        best = max([best] + [listed[i + missed] - listed[i]
                             for i in range(len(listed) - missed)])
    return best


def _steady_span(blocks: list[_Block], times: list[int], missed: int) -> float:
    """The longest window lying on steady days only (see :func:`_cron_span`)."""
    n = len(times)
    irregular_before = [0]
    for start, _ in blocks:
        irregular_before.append(irregular_before[-1] + (start is None))
    spread: dict[int, float] = {}
    for q in {(j + missed) // n for j in range(n)}:
        diffs = [(blocks[k + q][0] or 0.0) - (blocks[k][0] or 0.0)
                 for k in range(len(blocks) - q)
                 if irregular_before[k + q + 1] == irregular_before[k]]
        if diffs:
            spread[q] = max(diffs)
    best = -1.0
    for j in range(n):
        q, r = divmod(j + missed, n)
        if q in spread:
            best = max(best, spread[q] + times[r] - times[j])
    return best
