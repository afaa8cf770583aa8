"""Terminal output of the schedule commands (rich tables, progress bar) and the serve loop."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reliability.pipeline import Pipeline
from reliability.schedule.backfill import BackfillItem, BackfillPlan, BackfillReport, run_backfill
from reliability.schedule.intervals import Timetable
from reliability.schedule.state import ScheduleStore

_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "noop": "dim"}


def _console(stderr: bool = False, *, markup: bool = True) -> Any:
    """Tables of names, pipelines and notes from files print with ``markup=False``; lines
    that style themselves escape what they show."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=markup)


def print_plan(plan: BackfillPlan, timetable: Timetable) -> None:
    from rich.table import Table

    table = Table(title=f"backfill {plan.pipeline} ({timetable.describe()}, dry run)")
    for col in ("#", "interval start", "interval end", "action", "why"):
        table.add_column(col)
    for item in plan.items:
        table.add_row(str(item.seq), timetable.local(item.interval.start).isoformat(),
                      timetable.local(item.interval.end).isoformat(),
                      "run" if item.run else "skip",
                      item.note)
    con = _console(markup=False)
    con.print(table)
    con.print(f"{len(plan.to_run)} of {len(plan.items)} intervals would run "
              f"({plan.direction.value}, reprocess={plan.reprocess.value})")


def run_with_progress(store: ScheduleStore, plan: BackfillPlan, pipe: Pipeline, home: Path,
                      args: argparse.Namespace, params: dict[str, Any]) -> BackfillReport:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from reliability.schedule.executor import RunnerExecutor

    con = _console(stderr=True)
    done_before = len(plan.items) - len(plan.to_run)
    note = " (resumed)" if plan.resumed else ""
    con.print(f"backfill {escape(plan.backfill_id)}{note}: {len(plan.to_run)} to run, "
              f"{done_before} already done or skipped")
    execute = RunnerExecutor(home, pipelines={pipe.name: pipe}, workers=args.workers)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=con) as bar:
        task = bar.add_task(escape(plan.pipeline), total=len(plan.items),
                            completed=done_before)

        def on_item(item: BackfillItem, status: str, detail: str) -> None:
            style = _STYLE.get(status, "white")
            bar.console.print(f"[{style}]{escape(status):<9}[/] {item.interval.key()}  "
                              f"{escape(detail)}")
            bar.advance(task)

        with _sigterm_as_interrupt(args.parallel > 1):
            try:
                report = run_backfill(store, plan, execute, parallel=args.parallel,
                                      params=params, on_item=on_item)
            finally:
                execute.close()
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing run"
    con.print(f"backfill {escape(plan.backfill_id)}: {escape(counts)}"
              + (" - cancelled; rerun the same command to continue" if report.cancelled
                 else ""), soft_wrap=True)
    return report


def print_schedules(sched: Any, count: int) -> None:
    """One table of schedules, then each schedule's next fires with their data intervals
    (two narrow tables read better in an 80-column terminal than one wide one)."""
    from rich.table import Table

    con = _console(markup=False)
    table = Table(title="schedules")
    table.add_column("name", no_wrap=True)
    for col in ("pipeline", "timetable", "catch-up"):
        table.add_column(col, overflow="fold")
    table.add_column("stale after", no_wrap=True)
    for name, s in sched.schedules.items():
        threshold = s.freshness_threshold()
        stale = f"{threshold / 3600:.1f}h" if threshold is not None else "-"
        mode = "" if s.fire_on_time else " (events only)"
        table.add_row(name, s.pipeline, s.timetable.describe() + mode,
                      f"{s.catchup.policy.value} (grace {s.catchup.grace})", stale)
    con.print(table)
    for name, s in sched.schedules.items():
        loc = s.timetable.local

        def when(t: Any, loc: Any = loc) -> str:
            return str(loc(t).isoformat(sep=" ", timespec="minutes"))

        fires = Table(title=f"next fires of {name}")
        fires.add_column("fires at", no_wrap=True)
        fires.add_column("data interval [start, end)", no_wrap=True)
        for f, iv in sched.next_fires(name, count):
            fires.add_row(when(f), f"{when(iv.start)} .. {when(iv.end)}")
        if not fires.row_count:
            fires.add_row("-", "no more fires")
        con.print(fires)


def serve(args: argparse.Namespace, make: Callable[..., Any]) -> int:
    """Run until SIGINT/SIGTERM: catch up, then fire live; HTTP and metrics on loopback."""
    from reliability.events import EventBus
    from reliability.schedule.serve import TriggerServer, start_metrics

    bus = EventBus()
    sched = make(args, max_active=args.max_active, bus=bus)
    con = _console(stderr=True)
    stops: list[Callable[[], None]] = []
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    sched.on_trigger(lambda out: _print_outcome(con, out))
    try:
        if args.metrics_port:
            stop_metrics, port = start_metrics(sched, args.metrics_port, args.host, bus=bus)
            stops.append(stop_metrics)
            con.print(f"metrics on http://{args.host}:{port}/metrics")
        if args.http_port:
            server = TriggerServer(sched, args.host, args.http_port).start()
            stops.append(server.stop)
            con.print(f"trigger endpoint on {server.url}/trigger/<schedule>")
        sched.start()
        con.print(f"scheduling {', '.join(sched.schedules)}; Ctrl-C to stop")
        stop.wait()
    finally:
        for fn in reversed(stops):
            fn()
        sched.shutdown(wait=True, cancel=True)  # runs in progress end resumable
        sched.store.close()
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def _print_outcome(con: Any, out: Any) -> None:
    """One line per fire of a long-lived scheduler: what started, and why a no-op was one."""
    from rich.markup import escape

    where = out.interval.key() if out.interval is not None else "no interval due"
    if out.started:
        con.print(f"[cyan]fired[/]   {escape(out.schedule)} {where} -> run {out.run_id}",
                  soft_wrap=True)
    else:
        con.print(f"[yellow]no-op[/]   {escape(out.schedule)} {where}: {escape(out.reason)}",
                  soft_wrap=True)


@contextlib.contextmanager
def _sigterm_as_interrupt(active: bool) -> Iterator[None]:
    """SIGTERM stops a parallel backfill as Ctrl-C does (its runs live in other threads,
    where the runner cannot take the signal itself)."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
