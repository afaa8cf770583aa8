"""Assembling a run from a project: pipeline, runner, contracts, SLA monitor, display.

Contracts plug in as a worker-side :class:`~reliability.pipeline.StepHook`; the SLA monitor,
metrics, runbooks and the display subscribe to the runner's event bus. This module is the one
place that knows all of them, so the CLI, the scheduler and chaos experiments build runs alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.events import EventBus
from reliability.pipeline import Pipeline, StepHook, load_pipeline
from reliability.project import Project, find_project
from reliability.runner import Runner, RunResult

__all__ = ["RunSetup"]


@dataclass
class RunSetup:
    project: Project
    pipeline: Pipeline
    runner: Runner
    bus: EventBus
    closers: list[Callable[[], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    monitor: Any = None

    @classmethod
    def build(cls, project: Project | None = None, *, pipeline_ref: str | None = None,
              home: str | Path | None = None, workers: int | None = None,
              contracts: bool = True, sla: bool = True, display: bool = True,
              quiet: bool = False, hooks: list[StepHook] | None = None,
              bus: EventBus | None = None, metrics_port: int | None = None) -> RunSetup:
        project = project or find_project()
        pipeline = load_pipeline(pipeline_ref or project.pipeline_ref)
        bus = bus if bus is not None else EventBus()
        all_hooks: list[StepHook] = list(hooks or [])
        closers: list[Callable[[], None]] = []
        notes: list[str] = []
        if contracts:
            hook = _contract_hook(project, pipeline, notes)
            if hook is not None:
                all_hooks.insert(0, hook)
        if workers is None:
            workers = project.spec.workers
        runner = Runner(pipeline, home=Path(home) if home else project.home,
                        workers=workers, bus=bus, hooks=all_hooks)
        setup = cls(project, pipeline, runner, bus, closers, notes)
        if sla:
            setup._attach_sla(metrics_port)
        if display:
            from reliability.display import RunDisplay

            disp = RunDisplay(bus, quiet=quiet)
            closers.append(disp.close)
        return setup

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSetup:
        return cls.build(pipeline_ref=args.pipeline, home=args.home, workers=args.workers,
                         contracts=not getattr(args, "no_contracts", False),
                         sla=not getattr(args, "no_sla", False),
                         quiet=getattr(args, "quiet", False),
                         metrics_port=getattr(args, "metrics_port", None))

    def _attach_sla(self, metrics_port: int | None = None) -> None:
        """SLA monitor, metrics and runbooks, all subscribed to the run's bus."""
        from reliability.runbooks import RunbookRenderer
        from reliability.sla import SLAMonitor, load_slas

        slas = None
        sla_file = self.project.sla_file
        if sla_file is not None and sla_file.exists():
            loaded = load_slas(sla_file)
            if loaded.pipeline == self.pipeline.name:
                loaded.check_steps(self.pipeline.steps)
                slas = loaded
                self.notes.append(f"SLAs:      {sla_file}")
        renderer = RunbookRenderer([self.project.runbooks_dir],
                                   base_url=slas.runbook_base_url if slas else None)
        monitor = SLAMonitor(slas, self.bus, ledger=self.runner.ledger, runbooks=renderer)
        monitor.start()
        self.monitor = monitor
        self.closers.append(monitor.stop)
        if metrics_port is not None:
            from reliability.sla import serve_metrics

            server = serve_metrics(monitor.metrics.registry, port=metrics_port)
            self.closers.append(server.close)
            self.notes.append(f"metrics:   {server.url}")

    def __enter__(self) -> RunSetup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()
        self.runner.close()

    def report(self, result: RunResult) -> int:
        """Print where outputs and the ledger are; return the CLI exit code."""
        from rich.console import Console

        con = Console()
        color = {"succeeded": "green", "failed": "red"}.get(result.status, "yellow")
        con.print(f"\nrun [bold]{result.run_id}[/] [{color}]{result.status}[/] in "
                  f"{result.duration:.2f}s" + (" (resumed)" if result.resumed else ""))
        if self.monitor is not None:
            self.monitor.flush()
            for path in self.monitor.rendered:
                if path.suffix == ".md":
                    self.notes.append(f"runbook:   {path}")
            for breach in self.monitor.breaches:
                self.notes.append(f"[yellow]SLA breach: {breach.step or 'run'}: "
                                  f"{breach.error or breach.details.get('sla')}[/]")
        for note in self.notes:
            con.print(f"  {note}")
        con.print(f"  ledger:    {result.ledger}")
        con.print(f"  artifacts: {result.store}/objects")
        for step, digest in result.outputs.items():
            con.print(f"    {step:<12} {digest[:16]}")
        for step, err in result.failed.items():
            con.print(f"  [red]failed {step}: {err}[/]")
        if result.skipped:
            con.print(f"  [yellow]not run (upstream failed): {', '.join(result.skipped)}[/]")
        if result.status == "cancelled":
            con.print(f"  resume with: reliability resume {result.run_id}")
            return 130
        con.print(f"  audit:     reliability runs show {result.run_id}")
        return 0 if result.ok else 1


def _contract_hook(project: Project, pipeline: Pipeline, notes: list[str]) -> StepHook | None:
    import importlib.util

    if importlib.util.find_spec("reliability.contracts") is None:
        return None
    directory = project.contracts_dir
    if not directory.is_dir():
        return None
    from reliability import contracts

    cset = contracts.load_contracts(directory, pipeline)
    if not cset:
        return None
    contracts.check_wiring(pipeline, cset)
    notes.append(f"contracts: {len(cset)} from {directory}")
    hook: StepHook = contracts.ContractHook(cset, params_model=pipeline.params_model)
    return hook


