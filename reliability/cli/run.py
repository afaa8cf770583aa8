"""``reliability run``, ``resume`` and ``runs list|show``: the run loop from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reliability.cli._args import at_least, port
from reliability.errors import DefinitionError

__all__ = ["register"]


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the project's pipeline (or --pipeline MOD:ATTR)")
    _common(run)
    _executor_args(run)
    run.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                     help="set a pipeline parameter (repeatable; VALUE parsed as JSON if it can)")
    run.add_argument("--interval", metavar="START/END", help="data interval, ISO 8601")
    run.add_argument("--new", action="store_true",
                     help="always start a new run, even if an unfinished one has the same key")
    run.add_argument("--no-contracts", action="store_true", help="skip data contracts")
    run.add_argument("--no-sla", action="store_true", help="skip the SLA monitor")
    run.add_argument("--metrics-port", type=port, metavar="PORT",
                     help="serve /metrics on 127.0.0.1:PORT while the run lasts (0: any)")
    run.set_defaults(func=cmd_run)

    res = sub.add_parser("resume", help="finish an interrupted run from the ledger")
    _common(res)
    _executor_args(res)
    res.add_argument("run_id", metavar="RUN")
    res.add_argument("--no-contracts", action="store_true", help="skip data contracts")
    res.add_argument("--no-sla", action="store_true", help="skip the SLA monitor")
    res.set_defaults(func=cmd_resume)

    runs = sub.add_parser("runs", help="the audit trail: list runs, show one")
    rsub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    lst = rsub.add_parser("list", help="recent runs")
    _common(lst)
    lst.add_argument("--limit", type=at_least(1), default=20)
    lst.add_argument("--status")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_runs_list)
    show = rsub.add_parser("show", help="steps, attempts and events of one run")
    _common(show)
    show.add_argument("run_id", metavar="RUN")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--html", metavar="FILE",
                      help="also write an HTML page of the run (timeline, steps, events)")
    show.set_defaults(func=cmd_runs_show)
    runs.set_defaults(func=lambda a: (runs.print_help(), 2)[1])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="MODULE:ATTR", help="pipeline to use (default: project)")
    p.add_argument("--home", help="ledger and artifact store directory (default: project home)")
    p.add_argument("--workers", type=at_least(1),
                   help="worker processes (default: project or #cpus)")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-event lines")


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("local", "dask"),
                   help="where attempts run: local supervised workers (default) or Dask")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (default with --executor dask: a "
                        "LocalCluster)")
    p.add_argument("--environment", metavar="NAME",
                   help="environment the run is recorded under (default: RELIABILITY_ENV "
                        "or dev)")


def parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DefinitionError(f"--param {item!r} is not KEY=VALUE. Fix: write e.g. "
                                  "--param seed=3")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _options(args: argparse.Namespace) -> Any:
    from reliability.assembly import RunOptions

    return RunOptions(home=args.home, workers=args.workers,
                      contracts=not getattr(args, "no_contracts", False),
                      sla=not getattr(args, "no_sla", False), display=True,
                      quiet=getattr(args, "quiet", False),
                      metrics_port=getattr(args, "metrics_port", None),
                      executor=getattr(args, "executor", None),
                      scheduler=getattr(args, "scheduler", None),
                      environment=getattr(args, "environment", None))


def cmd_run(args: argparse.Namespace) -> int:
    from reliability.assembly import assemble
    from reliability.pipeline import DataInterval

    params = parse_params(args.param)
    interval = DataInterval.parse(args.interval) if args.interval else None
    with assemble(args.pipeline, _options(args)) as asm:
        return asm.report(asm.run(params, interval=interval, resume=not args.new))


def cmd_resume(args: argparse.Namespace) -> int:
    from reliability.assembly import assemble

    with assemble(args.pipeline, _options(args)) as asm:
        return asm.report(asm.resume(args.run_id))


def _ledger(args: argparse.Namespace) -> Any:
    """The ledger for reading (works on a read-only home)."""
    from reliability.project import find_project
    from reliability.runner.ledger import Ledger
    from reliability.runs import ledger_path

    home = Path(args.home) if args.home else find_project().home
    return Ledger(ledger_path(home), readonly=True)


def _ts(t: float | None) -> str:
    import datetime as dt

    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_runs_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from reliability.runs import Trigger

    with _ledger(args) as led:
        runs = led.list_runs(limit=args.limit, status=args.status)
    if args.json:
        json.dump([asdict(r) for r in runs], sys.stdout, indent=2, default=str)
        print()
        return 0
    table = Table(title="runs (newest first)")
    table.add_column("run", no_wrap=True)  # copied into `runs show`: never cut
    table.add_column("pipeline", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("started (UTC)", min_width=10)
    table.add_column("duration", no_wrap=True)
    # Columns nobody uses are left out, so the table fits a narrow terminal.
    with_interval = any(r.interval_start for r in runs)
    with_trigger = any(r.trigger is not Trigger.MANUAL for r in runs)
    if with_interval:
        table.add_column("interval", overflow="fold")
    if with_trigger:
        table.add_column("trigger", overflow="fold")
    for r in runs:
        row = [escape(r.run_id), escape(r.pipeline), _status(r.status), _ts(r.started_at),
               f"{r.duration:.2f}s" if r.duration is not None else "-"]
        if with_interval:
            row.append(f"{r.interval_start} → {r.interval_end}" if r.interval_start else "-")
        if with_trigger:
            row.append(escape(r.trigger.value + (f":{r.trigger_source}"
                                                 if r.trigger_source else "")))
        table.add_row(*row)
    Console().print(table)
    return 0


def _status(s: str) -> str:
    from reliability.runs import AttemptStatus as A
    from reliability.runs import RunStatus as R
    from reliability.runs import StepStatus as S

    color = {str(k): v for k, v in {
             R.SUCCEEDED: "green", R.FAILED: "red", R.CANCELLED: "yellow",
             R.RUNNING: "cyan", A.CONTRACT_VIOLATED: "red", A.WORKER_LOST: "magenta",
             A.TIMED_OUT: "red", S.UPSTREAM_FAILED: "dim", S.SKIPPED: "dim"}.items()
             }.get(s, "white")
    return f"[{color}]{s}[/]"


def cmd_runs_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with _ledger(args) as led:
        rec = led.get_run(args.run_id)
        steps = led.steps(rec.run_id)
        attempts = led.attempts(rec.run_id)
        events = led.events(rec.run_id)
        if args.html:
            _write_page(led, rec.run_id, args.html)
    if args.json:
        json.dump({"run": asdict(rec), "steps": steps, "attempts": attempts,
                   "events": events}, sys.stdout, indent=2, default=str)
        print()
        return 0
    _print_run(rec, steps, attempts, events)
    return 0


def _write_page(led: Any, run_id: str, path: str) -> None:
    from reliability.errors import ConfigError
    from reliability.runner.report import write_run_report

    try:
        out = write_run_report(led, run_id, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the run page ({exc.strerror or exc})",
                          path=("--html",), file=path,
                          fix="pass a writable file path") from None
    print(f"wrote {out}", file=sys.stderr)


def _print_run(rec: Any, steps: list[dict[str, Any]], attempts: list[dict[str, Any]],
               events: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from reliability.runs import StepStatus

    con = Console()
    con.print(f"[bold]{rec.run_id}[/]  pipeline={rec.pipeline}  status={_status(rec.status)}"
              f"  code={rec.code_version}  params={escape(json.dumps(rec.params))}")
    if rec.interval_start:
        con.print(f"data interval [{rec.interval_start}, {rec.interval_end})")
    if rec.error:
        con.print(f"[red]{escape(rec.error)}[/]")
    st = Table(title="steps")
    for col in ("step", "status", "attempts", "inputs", "output sha256", "size"):
        st.add_column(col)
    for s in steps:
        inputs = json.loads(s["input_hashes"] or "{}")
        status = _status(s["status"])
        if s["status"] == StepStatus.SKIPPED and s["error"]:  # why it did not run
            status += f" [dim]{escape(s['error'])}[/]"
        st.add_row(s["step"], status, str(s["attempts"]),
                   ", ".join(f"{k}={v[:10]}" for k, v in inputs.items()),
                   (s["output_hash"] or "-")[:16], str(s["output_size"] or "-"))
    con.print(st)
    at = Table(title="attempts")
    for col in ("step", "#", "status", "worker pid", "started (UTC)", "seconds", "error"):
        at.add_column(col)
    for a in attempts:
        secs = f"{a['ended_at'] - a['started_at']:.3f}" if a["ended_at"] else "-"
        err = f"{a['error_type']}: {a['error']}" if a["error_type"] else ""
        at.add_row(a["step"], str(a["attempt"]), _status(a["status"]), str(a["worker_pid"]),
                   _ts(a["started_at"]), secs, escape(err[:120]))
    con.print(at)
    if events:
        et = Table(title="events")
        for col in ("time (UTC)", "kind", "step", "details"):
            et.add_column(col)
        for e in events:
            et.add_row(_ts(e["time"]), e["kind"], e["step"] or "",
                       escape(json.dumps(e["details"], default=str)[:160]))
        con.print(et)
