"""Schedules declared in YAML (``contracts/*.schedule.yaml``), validated into :class:`Schedule`.

    schedules:
      - name: reference-daily
        pipeline: pipelines.reference:pipeline   # module:attr, or the project's pipeline name
        cron: "30 2 * * *"                       # exactly one of cron / every / at
        timezone: Europe/Berlin
        start: "2026-01-01T02:30:00+01:00"       # catch-up looks back to here
        catchup: {policy: latest, grace: 6h, max_active: 1}
        watch: {path: landing/wine, glob: "*.csv", partition: "dt=%Y-%m-%d", poll: 5s}
        freshness: {missed_intervals: 2}

Durations are numbers of seconds or text like ``90s``, ``15m``, ``6h``, ``1d``, ``1w``.
Every problem becomes a :class:`~reliability.errors.ConfigError` naming the file, the key
path and the fix.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reliability._spec import Spec, cut, load_yaml, parse_model
from reliability.errors import ConfigError, DefinitionError
from reliability.schedule.catchup import Catchup, CatchupPolicy
from reliability.schedule.intervals import (
    CronTimetable,
    DateTimetable,
    IntervalTimetable,
    Timetable,
    check_range,
    zone,
)
from reliability.schedule.scheduler import FileWatch, Schedule

__all__ = ["ScheduleFile", "ScheduleSpec", "load_schedules", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


#: The longest duration a schedule accepts (``every``, ``grace``, ``poll``).
MAX_DURATION = dt.timedelta(days=3660)


def parse_duration(value: Any) -> dt.timedelta:
    """``90``, ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1w"`` -> timedelta.

    Negative, not-a-number and infinite values, and anything over ten years
    (:data:`MAX_DURATION`), are a ValueError."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value)) if isinstance(value, str) else None
        if m is None:
            raise ValueError(f"{cut(value, 60)} is not a duration; write e.g. 90s, 15m, 6h "
                             "or 1d")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{cut(value, 60)} is not a duration: give a finite number of "
                         "seconds >= 0, e.g. 90s or 6h")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{cut(value, 60)} is too long a duration; write at most ten years, "
                         "e.g. 52w")
    return dt.timedelta(seconds=seconds)


class _Duration(Spec):
    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, v: Any, info: Any) -> Any:
        if info.field_name in cls._duration_fields():
            return parse_duration(v)
        return v

    @classmethod
    def _duration_fields(cls) -> frozenset[str]:
        return frozenset()


class CatchupSpec(_Duration):
    policy: CatchupPolicy = CatchupPolicy.LATEST
    grace: dt.timedelta = dt.timedelta(minutes=5)
    max_active: int = Field(default=1, ge=1, le=64)

    @classmethod
    def _duration_fields(cls) -> frozenset[str]:
        return frozenset({"grace"})


class WatchSpec(_Duration):
    path: str
    glob: str = "*"
    partition: str | None = None
    poll: dt.timedelta = dt.timedelta(seconds=5)

    @classmethod
    def _duration_fields(cls) -> frozenset[str]:
        return frozenset({"poll"})

    @field_validator("poll")
    @classmethod
    def _poll(cls, v: dt.timedelta) -> dt.timedelta:
        if v < dt.timedelta(milliseconds=50):
            raise ValueError(f"poll={v.total_seconds()}s would scan the directory without "
                             "pause; use at least 50ms, e.g. 5s")
        return v

    @field_validator("partition")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        from reliability.schedule.triggers import PARTITION_CODES

        bad = sorted({c for c in re.findall(r"%.", v or "") if c not in PARTITION_CODES})
        if bad:
            raise ValueError(f"{v!r} uses {', '.join(bad)}; a partition pattern may use "
                             f"{' '.join(sorted(PARTITION_CODES))}, e.g. dt=%Y-%m-%d")
        return v


class FreshnessSpec(Spec):
    missed_intervals: int = Field(default=2, ge=1, le=1000)


class ScheduleSpec(_Duration):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    pipeline: str | None = None
    cron: str | None = None
    every: dt.timedelta | None = None
    at: dt.datetime | None = None
    timezone: str = "UTC"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    fire_on: Literal["time", "events"] = "time"
    catchup: CatchupSpec = CatchupSpec()
    watch: WatchSpec | None = None
    http: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    freshness: FreshnessSpec = FreshnessSpec()

    @classmethod
    def _duration_fields(cls) -> frozenset[str]:
        return frozenset({"every"})

    @field_validator("every")
    @classmethod
    def _positive(cls, v: dt.timedelta | None) -> dt.timedelta | None:
        if v is not None and v <= dt.timedelta(0):
            raise ValueError(f"every={v.total_seconds()}s must be positive; give e.g. "
                             "every: 1h")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zone(v)
        except DefinitionError:
            raise ValueError(f"{v!r} is not an IANA time zone; use e.g. UTC or "
                             "Europe/Berlin") from None
        return v

    @field_validator("start", "end", "at")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-01-01T00:00:00+00:00")
        if v is not None:
            try:
                check_range(v, "value")
            except DefinitionError as exc:
                raise ValueError(str(exc).partition(". Fix:")[0]) from None
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        kinds = [k for k in ("cron", "every", "at") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of cron, every, at (got {kinds or 'none'})")
        if self.every is not None and self.start is None:
            raise ValueError("'every' needs 'start': the instant intervals are counted from")
        if self.at is not None and self.start is None:
            raise ValueError("'at' needs 'start': the one-off run covers [start, at)")
        if self.fire_on == "events" and self.watch is None and not self.http:
            raise ValueError("fire_on: events with no 'watch' and http: false never fires; "
                             "add a 'watch', set http: true, or use fire_on: time")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"'end' ({self.end.isoformat()}) must be after 'start' "
                             f"({self.start.isoformat()})")
        return self

    def timetable(self) -> Timetable:
        if self.cron is not None:
            return CronTimetable(self.cron, self.timezone, start=self.start, end=self.end)
        if self.every is not None:
            assert self.start is not None
            return IntervalTimetable(self.every, self.start, end=self.end,
                                     timezone=self.timezone)
        assert self.at is not None and self.start is not None
        return DateTimetable(self.at, self.start)


class ScheduleFile(Spec):
    schedules: list[ScheduleSpec] = Field(min_length=1)


def load_schedules(path: str | Path, *, resolve: Any = None) -> list[Schedule]:
    """Load a schedule file into :class:`Schedule` s.

    ``resolve(ref_or_name) -> Pipeline`` maps the ``pipeline`` key to a pipeline (default:
    :func:`reliability.schedule.executor.resolve_pipeline`).
    """
    from reliability.schedule.executor import resolve_pipeline

    resolve = resolve or resolve_pipeline
    file = str(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError("file is empty", file=file,
                          fix="add 'schedules:' with a list of schedules")
    spec = parse_model(data, ScheduleFile, file=file)
    names = [s.name for s in spec.schedules]
    out: list[Schedule] = []
    for i, s in enumerate(spec.schedules):
        where: list[str | int] = ["schedules", i]
        if s.name in names[:i]:
            raise ConfigError(f"schedule name {s.name!r} is used twice", file=file,
                              path=[*where, "name"], fix="give each schedule its own name")
        try:
            tt = s.timetable()
        except DefinitionError as exc:
            key = "cron" if s.cron else ("every" if s.every is not None else "at")
            raise ConfigError(str(exc).split(". Fix:")[0], file=file, path=[*where, key],
                              fix=str(exc).partition("Fix: ")[2] or "correct the value"
                              ) from None
        try:
            pipe = resolve(s.pipeline)
        except DefinitionError as exc:
            raise ConfigError(str(exc).split(". Fix:")[0], file=file, path=[*where, "pipeline"],
                              fix=str(exc).partition("Fix: ")[2] or "use module:attr of a "
                              "Pipeline") from None
        try:
            pipe.make_params(s.params)
        except DefinitionError as exc:
            raise ConfigError(str(exc).split(". Fix:")[0], file=file, path=[*where, "params"],
                              fix=str(exc).partition("Fix: ")[2] or "correct the value"
                              ) from None
        watch = None
        if s.watch is not None:
            from reliability.project import find_project

            wp = Path(s.watch.path)
            root = find_project(Path(file).parent).root
            watch = FileWatch(wp if wp.is_absolute() else root / wp, s.watch.glob,
                              s.watch.partition, s.watch.poll.total_seconds())
        out.append(Schedule(
            name=s.name, pipeline=pipe.name, timetable=tt,
            catchup=Catchup(s.catchup.policy, s.catchup.grace, s.catchup.max_active),
            params=dict(s.params), ref=s.pipeline if s.pipeline and ":" in s.pipeline
            else None, fire_on_time=s.fire_on == "time", watch=watch, http=s.http,
            missed_for_stale=s.freshness.missed_intervals))
    return out
