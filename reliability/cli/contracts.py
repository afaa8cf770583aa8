"""``reliability contracts lint|diff|wiring|snapshot|test`` — contract checks for people and CI.

Exit codes: 0 clean; 1 the check found a problem (lint warnings, breaking changes, a
failed contract test or surviving mutation); 2 bad input (from the main dispatcher).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reliability.cli._args import at_least

if TYPE_CHECKING:
    from reliability.contracts.loader import ContractSet
    from reliability.pipeline import Pipeline

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("contracts", help="lint, diff, wire-check and test data contracts")
    cs = p.add_subparsers(dest="contracts_command", metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", help="contracts folder (default: from reliability.yaml)")
        q.add_argument("--pipeline", help="module:attribute (default: from reliability.yaml)")

    q = cs.add_parser("lint", help="warn about contracts that can pass bad data silently")
    common(q)
    q.set_defaults(func=_lint)
    q = cs.add_parser("diff", help="classify contract changes: breaking, warning, info")
    q.add_argument("old", help="file, folder, git REV:path (e.g. HEAD~1:contracts/reference) "
                   "or a bare revision (NEW's path at that revision)")
    q.add_argument("new", help="file, folder, git REV:path or a bare revision")
    q.add_argument("--fail-on", choices=["breaking", "warning", "never"], default="breaking",
                   help="exit 1 when a change of this severity (or worse) is found")
    q.set_defaults(func=_diff)
    q = cs.add_parser("wiring", help="prove producers' outputs satisfy consumers' inputs")
    common(q)
    q.set_defaults(func=_wiring)
    q = cs.add_parser("snapshot", help="run the pipeline once and record the step outputs "
                      "contract tests use (commit them with the contracts)")
    common(q)
    q.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="pipeline parameter for the recorded run (repeatable)")
    q.add_argument("--workers", type=at_least(1), help="worker processes for the run")
    q.set_defaults(func=_snapshot)
    q = cs.add_parser("test", help="generated-input tests and mutation testing on the "
                      "recorded step outputs (offline; runs no pipeline)")
    common(q)
    q.add_argument("--max-examples", type=at_least(1), default=25)
    q.add_argument("--no-mutations", action="store_true", help="skip mutation testing")
    q.set_defaults(func=_test)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def load_project(dir_: str | None, pipeline_ref: str | None
                 ) -> tuple[Pipeline, ContractSet]:
    pipeline, contracts, _ = _load(dir_, pipeline_ref)
    return pipeline, contracts


def _load(dir_: str | None, pipeline_ref: str | None
          ) -> tuple[Pipeline, ContractSet, Path]:
    from reliability.contracts.loader import load_contracts
    from reliability.project import find_project

    project = find_project()
    pipeline = project.load_pipeline(pipeline_ref)
    directory = Path(dir_).resolve() if dir_ else project.contracts_dir
    return pipeline, load_contracts(directory, pipeline), directory


def _console() -> Any:
    """A console that prints text as text: names and messages from files are never markup."""
    from rich.console import Console

    return Console(markup=False)


def _lint(args: argparse.Namespace) -> int:
    from rich.table import Table

    from reliability.contracts.lint import lint_contracts

    pipeline, contracts = load_project(args.dir, args.pipeline)
    found = lint_contracts(contracts, pipeline)
    table = Table(title=f"contract lint: {pipeline.name}")
    for col in ("level", "contract", "where", "message"):
        table.add_column(col)
    for item in found:
        table.add_row(item.level, item.contract, item.where, item.message)
    console = _console()
    if found:
        console.print(table)
    warnings = sum(1 for f in found if f.level == "warning")
    console.print(f"{len(contracts)} contract(s), {warnings} warning(s)")
    return 1 if warnings else 0


def _diff(args: argparse.Namespace) -> int:
    from rich.table import Table

    from reliability.contracts.diff import diff_contracts, load_side

    old, new = load_side(args.old, args.new), load_side(args.new, args.old)
    changes = diff_contracts(old, new)
    table = Table(title=f"contract diff {args.old} -> {args.new}")
    for col in ("severity", "contract", "where", "change"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.severity, c.contract, c.where, c.message)
    console = _console()
    console.print(table if changes else "no contract changes")
    counts = {s: sum(1 for c in changes if c.severity == s) for s in ("breaking", "warning")}
    console.print(f"{len(old)} -> {len(new)} contract(s): {counts['breaking']} breaking, "
                  f"{counts['warning']} warning, {len(changes) - sum(counts.values())} info")
    if args.fail_on == "never":
        return 0
    if counts["breaking"] or (args.fail_on == "warning" and counts["warning"]):
        return 1
    return 0


def _wiring(args: argparse.Namespace) -> int:
    from reliability.contracts.wiring import check_wiring

    pipeline, contracts = load_project(args.dir, args.pipeline)
    report = check_wiring(pipeline, contracts)
    console = _console()
    for producer, consumer, param in report.proven:
        console.print(f"proven    {producer} -> {consumer}({param})")
    for producer, consumer, param in report.unproven:
        console.print(f"unproven  {producer} -> {consumer}({param}) (no contract on one side)")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from reliability.cli.run import parse_params
    from reliability.contracts.snapshot import record_snapshot, snapshot_dir
    from reliability.project import find_project

    pipeline, contracts, directory = _load(args.dir, args.pipeline)
    target = snapshot_dir(directory, pipeline.name)
    snap = record_snapshot(pipeline, contracts, target, parse_params(args.param),
                           workers=args.workers, project=find_project())
    size = sum(f.stat().st_size for f in target.iterdir() if f.is_file())
    _console().print(f"recorded {len(snap.outputs)} step output(s) of {pipeline.name} in "
                     f"{target} ({size / 1024:.0f} KiB): {', '.join(snap.outputs)}\n"
                     "commit it with the contracts; `reliability contracts test` uses it")
    return 0


def _test(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from reliability.contracts.snapshot import load_snapshot, snapshot_dir
    from reliability.contracts.suite import run_suite, suite_stages
    from reliability.contracts.testing import isolated
    from reliability.errors import ConfigError

    pipeline, contracts, directory = _load(args.dir, args.pipeline)
    stages = suite_stages(pipeline, contracts, mutations=not args.no_mutations)
    with isolated() as root, Progress(
            TextColumn("[bold]contract tests"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.description}"), console=Console(stderr=True),
            transient=True) as bar:
        task = bar.add_task("", total=len(stages))

        def advance(stage: str) -> None:
            done = stages.index(stage) if stage in stages else 0
            bar.update(task, completed=done, description=stage)

        snap, missing = None, ""
        try:
            snap = load_snapshot(snapshot_dir(directory, pipeline.name), pipeline, contracts,
                                 root / "recorded")
        except ConfigError as exc:
            missing = str(exc)
        result = run_suite(pipeline, contracts, max_examples=args.max_examples,
                           params=snap.params if snap else None,
                           recorded=snap.outputs if snap else None, missing=missing,
                           mutations=not args.no_mutations, progress=advance)
        bar.update(task, completed=len(stages))
    table = Table(title=f"contract tests: {pipeline.name}")
    for col in ("test", "result", "detail"):
        table.add_column(col, overflow="fold")
    for row in result.rows:
        table.add_row(row.name, row.status, row.detail)
    console = _console()
    console.print(table)
    console.print(result.headline())
    return 0 if result.ok else 1
