"""``reliability chaos``: run, validate and explore experiments; clean up after dead runs.

    reliability chaos run chaos/kill-train.yaml --report report.html
    reliability chaos validate chaos/*.yaml
    reliability chaos cleanup
    reliability chaos explore --max-examples 30 --budget 120 --out found.yaml
    reliability chaos report .reliability/chaos/journals/ID.json -o report.html
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reliability.cli._args import at_least, output_file, positive_float

__all__ = ["register"]


def register(sub: Any) -> None:
    group = sub.add_parser("chaos", help="chaos experiments: run, validate, explore, cleanup",
                           description="Inject faults into real runs and check the pipeline "
                           "recovers.")
    commands = group.add_subparsers(dest="chaos_command", metavar="COMMAND")
    group.set_defaults(func=lambda _a: (group.print_help(), 2)[1])

    run = commands.add_parser("run", help="run an experiment (baseline, method, rollbacks)")
    run.add_argument("experiment", help="experiment YAML, e.g. chaos/kill-train.yaml")
    run.add_argument("--seed", type=int, help="override the experiment's seed")
    run.add_argument("--journal", help="where to write the JSON journal")
    run.add_argument("--report", help="also write an HTML report here")
    _common(run)
    run.set_defaults(func=_run)

    val = commands.add_parser("validate", help="check experiments without running them")
    val.add_argument("experiments", nargs="+")
    val.add_argument("--env", help="environment name (default: $RELIABILITY_ENV or local)")
    val.set_defaults(func=_validate)

    clean = commands.add_parser("cleanup", help="undo faults a dead controller left behind")
    clean.add_argument("--all", action="store_true",
                       help="undo every recorded lease, even of live controllers")
    clean.add_argument("--home", help="state directory (default: the project's home)")
    clean.set_defaults(func=_cleanup)

    exp = commands.add_parser("explore", help="search fault schedules for a broken invariant")
    exp.add_argument("--pipeline", help="module:attribute (default: the project's)")
    exp.add_argument("--steps", help="comma-separated steps to aim at (default: all)")
    exp.add_argument("--kinds", default="kill_worker,exception,latency",
                     help="fault kinds to combine (default: %(default)s)")
    exp.add_argument("--max-faults", type=at_least(1), default=3)
    exp.add_argument("--max-examples", type=at_least(1), default=25)
    exp.add_argument("--budget", type=positive_float, default=120.0, help="seconds (default 120)")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    exp.add_argument("--allow-failed-runs", action="store_true",
                     help="accept runs that fail loudly (a failed step, no wrong output); "
                          "by default a failed run breaks the run_succeeds invariant")
    exp.add_argument("--out", help="write the minimal schedule as an experiment here")
    exp.add_argument("--home", help="state directory (default: the project's home)")
    exp.set_defaults(func=_explore)

    rep = commands.add_parser("report", help="render a journal as HTML")
    rep.add_argument("journal")
    rep.add_argument("-o", "--output", help="HTML file (default: next to the journal)")
    rep.set_defaults(func=_report)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="ledger/state directory (default: the project's home)")
    p.add_argument("--env", help="environment name (default: $RELIABILITY_ENV or local)")


def _console() -> Any:
    from rich.console import Console

    return Console()


def _run(args: argparse.Namespace) -> int:
    from reliability.chaos.runner import run_experiment

    for flag, value in (("--journal", args.journal), ("--report", args.report)):
        if value:
            output_file(value, flag)  # fail now, not after the experiment ran
    from reliability.display import RunDisplay
    from reliability.events import EventBus

    bus = EventBus()
    display = RunDisplay(bus)  # the baseline and the chaos run, step by step, on stderr
    try:
        journal = run_experiment(args.experiment, seed=args.seed, home=args.home,
                                 env=args.env, journal_path=args.journal,
                                 report_path=args.report, bus=bus)
    finally:
        display.close()
    print_journal(_console(), journal)
    return 0 if journal.ok else 1


def print_journal(con: Any, journal: Any) -> None:
    """The steady-state probes, faults, rollbacks and verdict of an experiment."""
    from rich.markup import escape
    from rich.table import Table

    d = journal.data
    table = Table(title=escape(f"{d['experiment']['title']} (seed {d['seed']})"))
    for col in ("phase", "probe", "result", "detail"):
        table.add_column(col)
    for phase in ("before", "during", "after"):
        for p in d["steady_state"][phase]:
            table.add_row(phase, escape(str(p["probe"])),
                          "held" if p["ok"] else "[red]deviated[/]", escape(str(p["detail"])))
    con.print(table)
    for f in d["faults"]:
        con.print(f"  fault {escape(str(f.get('fault')))} ({escape(str(f.get('type')))}) on "
                  f"{escape(str(f.get('step') or 'the network'))}")
    con.print(f"faults injected: {len(d['faults'])}; rollbacks: {len(d['rollbacks'])} "
              f"({sum(1 for r in d['rollbacks'] if not r['ok'])} failed)")
    if d.get("aborted"):
        con.print(f"[yellow]aborted:[/] {escape(str(d['aborted']))}")
    if d.get("error"):
        con.print(f"[red]error:[/] {escape(str(d['error']))}")
    color = "green" if journal.ok else "red"
    con.print(f"verdict: [{color}]{escape(journal.status)}[/] · resilience score "
              f"{journal.score}/100")


def _validate(args: argparse.Namespace) -> int:
    from reliability.chaos.experiment import check_experiment, load_experiment
    from reliability.project import find_project

    project = find_project()
    for path in args.experiments:
        spec, file = load_experiment(path)
        pipeline = project.load_pipeline(spec.pipeline)
        check_experiment(spec, pipeline, file=file, env=args.env)
        if any(getattr(f, "mutation", None) for f in spec.method):
            from reliability.chaos.contract_faults import resolve_mutations

            resolve_mutations(spec.method, project.contracts_dir, pipeline, file=file)
        print(f"{path}: ok ({len(spec.method)} fault(s) against {pipeline.name!r})")
    return 0


def _home(value: str | None) -> Path:
    from reliability.project import find_project

    return Path(value) if value else find_project().home


def _cleanup(args: argparse.Namespace) -> int:
    from reliability.chaos.leases import reap_leases
    from reliability.chaos.runner import lease_store

    store = lease_store(_home(args.home))
    try:
        done = reap_leases(store, everything=args.all)
        remaining = store.list()
    finally:
        store.close()
    for lease, outcome in done:
        print(f"{outcome}: {lease.kind} {lease.proxy}{'/' + lease.toxic if lease.toxic else ''}"
              f" (owner pid {lease.owner_pid}, {lease.api})")
    print(f"cleaned {sum(1 for _, o in done if not o.startswith('unreachable'))} lease(s); "
          f"{len(remaining)} still held by live controllers")
    return 1 if any(o.startswith("unreachable") for _, o in done) else 0


def _explore(args: argparse.Namespace) -> int:
    from reliability.chaos.explore import explore
    from reliability.errors import ConfigError
    from reliability.project import find_project

    if args.out:
        output_file(args.out, "--out")  # fail now, not after the search ran
    project = find_project()
    ref = args.pipeline or project.pipeline_ref
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r} is not KEY=VALUE", fix="write e.g. seed=3")
        params[key] = value
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"exploring (budget {args.budget:g}s)", total=None)
        found = 0

        def advance(runs: int, problem: str | None) -> None:
            nonlocal found
            found += problem is not None
            phase = "shrinking" if found else "exploring"
            bar.update(task, description=f"{phase}: {runs} schedule(s) run, {found} broke "
                                         f"an invariant (budget {args.budget:g}s)")

        result = explore(project.load_pipeline(args.pipeline), home=_home(args.home),
                         params=params or None,
                         steps=args.steps.split(",") if args.steps else None,
                         kinds=args.kinds.split(","), max_faults=args.max_faults,
                         max_examples=args.max_examples, budget=args.budget, seed=args.seed,
                         pipeline_ref=ref, progress=advance,
                         run_succeeds=not args.allow_failed_runs)
    print(f"{result.examples} schedule(s) run in {result.elapsed:.1f}s"
          + (" (budget exhausted)" if result.budget_exhausted else ""))
    if not result.found:
        print("no invariant violation found")
        return 0
    print(f"violation: {result.violation}\nminimal schedule:\n{result.experiment_yaml}")
    if args.out:
        Path(args.out).write_text(result.experiment_yaml or "", encoding="utf-8")
        print(f"written to {args.out}; replay with: reliability chaos run {args.out}")
    return 1


def _report(args: argparse.Namespace) -> int:
    from reliability.chaos.journal import Journal
    from reliability.chaos.report import write_report

    out = Path(args.output) if args.output else Path(args.journal).with_suffix(".html")
    journal = Journal.load(args.journal)
    write_report(journal, output_file(out, "--output"))
    print(f"report written to {out}")
    return 0
