"""``reliability backfill`` and ``reliability schedule list|serve|trigger``.

Top-level imports stay light: everything heavy is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability.cli._args import at_least, port
from reliability.errors import ConfigError, DefinitionError

if TYPE_CHECKING:
    from reliability.pipeline import Pipeline
    from reliability.schedule.intervals import Timetable
    from reliability.schedule.scheduler import Schedule

__all__ = ["register"]


def register(sub: Any) -> None:
    bf = sub.add_parser("backfill", help="run a pipeline over past data intervals",
                        description="Run PIPELINE for every data interval in [--start, --end)."
                        " Resumable: rerun the same command to continue a killed backfill.")
    bf.add_argument("pipeline", metavar="PIPELINE",
                    help="module:attr of a Pipeline, or the project's pipeline name")
    bf.add_argument("--start", required=True, help="ISO date/time (inclusive)")
    bf.add_argument("--end", required=True, help="ISO date/time (exclusive)")
    bf.add_argument("--schedule", help="take the intervals from this schedule")
    bf.add_argument("--schedules", help="schedule YAML file (default contracts/*.schedule.yaml)")
    bf.add_argument("--cron", help="crontab expression defining the intervals")
    bf.add_argument("--every", help="fixed interval length, e.g. 1d, 6h")
    bf.add_argument("--timezone", default=None, help="IANA zone for --cron and naive dates")
    bf.add_argument("--reprocess", default="none", choices=["none", "failed", "all"])
    bf.add_argument("--order", default="forward", choices=["forward", "backward"])
    bf.add_argument("--dry-run", action="store_true", help="show the plan; run nothing")
    bf.add_argument("-j", "--parallel", type=at_least(1), default=1, help="intervals at once")
    bf.add_argument("--workers", type=at_least(1), default=None, help="step workers per run")
    bf.add_argument("--home", help="ledger/store directory (default: the project's)")
    bf.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    bf.set_defaults(func=_backfill)

    sc = sub.add_parser("schedule", help="list or serve schedules").add_subparsers(
        dest="schedule_command", metavar="ACTION")
    ls = sc.add_parser("list", help="show schedules and their next fire times")
    _common(ls)
    ls.add_argument("-n", "--count", type=at_least(1), default=3, help="fires to show")
    ls.set_defaults(func=_list)
    sv = sc.add_parser("serve", help="run the scheduler as a long-lived process")
    _common(sv)
    sv.add_argument("--host", default="127.0.0.1", help="bind address (loopback default)")
    sv.add_argument("--http-port", type=port, default=8787, help="trigger endpoint; 0 = off")
    sv.add_argument("--metrics-port", type=port, default=9464, help="/metrics; 0 = off")
    sv.add_argument("--max-active", type=at_least(1), default=4, help="runs at once, in all")
    sv.set_defaults(func=_serve)
    tr = sc.add_parser("trigger", help="run one interval of a schedule now (an event)")
    _common(tr)
    tr.add_argument("name", help="schedule name")
    tr.add_argument("--interval", help="START/END (default: the latest complete one)")
    tr.add_argument("--reprocess", default="none", choices=["none", "failed", "all"])
    tr.set_defaults(func=_trigger)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", action="append", default=[], help="schedule YAML file(s)")
    p.add_argument("--home", help="ledger/store directory (default: the project's)")


def _home(arg: str | None) -> Path:
    from reliability.project import find_project

    if arg:
        return Path(arg)
    if os.environ.get("RELIABILITY_HOME"):
        return Path(os.environ["RELIABILITY_HOME"])
    return find_project().home


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _schedule_files(files: list[str]) -> list[Path]:
    from reliability.project import find_project

    if files:
        return [Path(f) for f in files]
    project = find_project()
    found = sorted(project.contracts_dir.glob("*.schedule.yaml"))
    if not found:
        raise ConfigError("no schedules found", file=str(project.contracts_dir),
                          fix="add contracts/<name>.schedule.yaml or pass --file")
    return found


def _load(files: list[str]) -> list[Schedule]:
    from reliability.schedule.spec import load_schedules

    out: list[Schedule] = []
    for f in _schedule_files(files):
        out.extend(load_schedules(f))
    return out


def _datetime(text: str, tz: dt.tzinfo, flag: str) -> dt.datetime:
    from reliability.schedule.intervals import MAX_TIME, MIN_TIME

    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DefinitionError(f"{flag}={text!r} is not an ISO date or date-time. Fix: write "
                              "e.g. 2026-01-01 or 2026-01-01T00:00:00+00:00") from None
    t = t if t.tzinfo else t.replace(tzinfo=tz)
    try:
        inside = MIN_TIME <= t < MAX_TIME
    except OverflowError:  # year 1 or 9999 with an offset
        inside = False
    if not inside:
        raise DefinitionError(f"{flag}={text!r} is outside the supported range "
                              f"[{MIN_TIME.date()}, {MAX_TIME.date()}). Fix: use a date "
                              "in that range")
    return t


def _params(pairs: list[str]) -> dict[str, Any]:
    from reliability.cli.run import parse_params

    return parse_params(pairs)


def _timetable(args: argparse.Namespace, start: dt.datetime) -> Timetable:
    from reliability.schedule.intervals import CronTimetable, IntervalTimetable
    from reliability.schedule.spec import parse_duration

    tz = args.timezone or "UTC"
    if args.cron:
        return CronTimetable(args.cron, tz)
    try:
        every = parse_duration(args.every)
    except ValueError as exc:
        raise DefinitionError(f"--every: {exc}") from None
    return IntervalTimetable(every, start, timezone=tz)


def _schedule_timetable(args: argparse.Namespace, pipe: Pipeline
                        ) -> tuple[Timetable, str | None]:
    files = [args.schedules] if args.schedules else []
    mine = [s for s in _load(files) if s.pipeline == pipe.name
            and (args.schedule is None or s.name == args.schedule)]
    if len(mine) != 1:
        which = f"schedule {args.schedule!r}" if args.schedule else "a schedule"
        raise DefinitionError(
            f"found {len(mine)} matching schedules for pipeline {pipe.name!r} "
            f"(looking for {which}). Fix: pass --schedule NAME, or --cron/--every")
    return mine[0].timetable, mine[0].name


def _backfill(args: argparse.Namespace) -> int:
    from reliability.schedule.backfill import Direction, plan_backfill
    from reliability.schedule.executor import resolve_pipeline
    from reliability.schedule.intervals import zone
    from reliability.schedule.state import Reprocess, ScheduleStore

    pipe = resolve_pipeline(args.pipeline)
    if args.cron and args.every:
        raise DefinitionError("give --cron or --every, not both. Fix: drop one")
    scheduled = None if args.cron or args.every else _schedule_timetable(args, pipe)[0]
    # naive dates: --timezone, else the schedule's own zone (its days), else UTC
    tz = zone(args.timezone) if args.timezone else (scheduled.tz if scheduled else dt.UTC)
    start = _datetime(args.start, tz, "--start")
    end = _datetime(args.end, tz, "--end")
    if end <= start:
        raise DefinitionError(f"--end {args.end} must be after --start {args.start}. "
                              "Fix: swap them (the order is set with --order)")
    timetable = scheduled or _timetable(args, start)
    params = _params(args.param)
    pipe.make_params(params)  # validate before recording anything
    store = ScheduleStore.at_home(_home(args.home))
    try:
        plan = plan_backfill(store, pipe.name, timetable, start, end,
                             reprocess=Reprocess(args.reprocess),
                             direction=Direction(args.order), params=params,
                             record=not args.dry_run)
        from reliability.cli import _schedule_display as _display

        if args.dry_run:
            _display.print_plan(plan, timetable)
            return 0
        report = _display.run_with_progress(store, plan, pipe, _home(args.home), args,
                                            params)
    finally:
        store.close()
    if report.cancelled:
        return 130  # as a cancelled run: rerun the same command to continue
    return 0 if report.ok else 1


def _scheduler(args: argparse.Namespace, max_active: int = 4, bus: Any = None) -> Any:
    from reliability.schedule.executor import RunnerExecutor
    from reliability.schedule.scheduler import Scheduler

    home = _home(args.home)
    return Scheduler(_load(args.file), execute=RunnerExecutor(home, bus=bus), home=home,
                     now=_now, max_active=max_active)


def _list(args: argparse.Namespace) -> int:
    from reliability.cli import _schedule_display as _display

    sched = _scheduler(args)
    try:
        _display.print_schedules(sched, args.count)
    finally:
        sched.shutdown()
        sched.store.close()
    return 0


def _trigger(args: argparse.Namespace) -> int:
    from reliability.pipeline import DataInterval
    from reliability.schedule.state import Reprocess

    sched = _scheduler(args, max_active=1)
    try:
        iv = DataInterval.parse(args.interval) if args.interval else None
        out = sched.trigger(args.name, iv, source="cli", reprocess=Reprocess(args.reprocess),
                            wait=True)
    finally:
        sched.shutdown()
        sched.store.close()
    print(f"{args.name} {out.interval.key() if out.interval else '-'}: "
          f"{out.status or 'not started'} - {out.reason}")
    return 0 if not out.started or out.status == "succeeded" else 1


def _serve(args: argparse.Namespace) -> int:
    from reliability.cli import _schedule_display as _display

    return _display.serve(args, _scheduler)
