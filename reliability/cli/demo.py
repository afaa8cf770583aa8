"""``reliability demo``: the main job.

Runs the project's reference pipeline under its data contracts, a chaos experiment (real
network faults through the Toxiproxy-compatible proxy, a step exception, a SIGKILLed
worker) and the SLA monitor (Prometheus metrics served on loopback, live breach checks,
runbooks), then writes the alert rules, their promtool tests and the Grafana provisioning.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path
from typing import Any

from reliability.errors import ConfigError, MissingDependencyError

__all__ = ["register"]

DEFAULT_EXPERIMENT = "reference-demo.yaml"


def register(sub: Any) -> None:
    from reliability.cli._args import port

    p = sub.add_parser("demo", help="run the reference pipeline under contracts, chaos and "
                                    "SLA monitoring (the main job)")
    p.add_argument("--experiment", metavar="YAML",
                   help=f"chaos experiment (default: <chaos dir>/{DEFAULT_EXPERIMENT})")
    p.add_argument("--seed", type=int, help="override the experiment's seed")
    p.add_argument("--home", help="ledger, artifacts and reports (default: project home)")
    p.add_argument("--metrics-port", type=port, default=0, metavar="PORT",
                   help="serve /metrics on 127.0.0.1:PORT during the demo (default: any)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from reliability._lazy import require
    from reliability.project import find_project

    require("sklearn", "demo", "the reference pipeline")
    project = find_project()
    if project.file is None:
        raise ConfigError("no reliability.yaml here or in a parent directory",
                          file=str(Path.cwd()),
                          fix="run the demo from the repository root, which holds "
                              "reliability.yaml, pipelines/, contracts/ and chaos/")
    experiment = Path(args.experiment) if args.experiment else (
        project.chaos_dir / DEFAULT_EXPERIMENT)
    home = Path(args.home) if args.home else project.home
    return _Demo(project, experiment, home, args.seed, args.metrics_port).run()


class _Demo:
    def __init__(self, project: Any, experiment: Path, home: Path, seed: int | None,
                 metrics_port: int) -> None:
        self.project = project
        self.experiment = experiment
        self.home = home
        self.seed = seed
        self.metrics_port = metrics_port
        from rich.console import Console

        self.con = Console()

    def run(self) -> int:
        from reliability.assembly import RunOptions, sla_monitor
        from reliability.chaos.runner import run_experiment
        from reliability.events import EventBus
        from reliability.runs import ledger_path
        from reliability.sla import serve_metrics

        bus = EventBus()
        self.home.mkdir(parents=True, exist_ok=True)
        pipeline = self.project.load_pipeline()
        monitor, _ = sla_monitor(self.project, pipeline, bus, ledger_path(self.home),
                                 runbook_dir=self.home / "runbooks")
        slas = next(iter(monitor.slas.values()), None)
        reports = self.home / "reports"
        options = RunOptions(bus=bus, monitor=monitor, display=True)
        with monitor, serve_metrics(monitor.metrics.registry, port=self.metrics_port) as srv:
            self.con.print(f"[bold]metrics[/] {srv.url} (Prometheus can scrape it while "
                           "the demo runs)")
            journal = run_experiment(self.experiment, self.project, seed=self.seed,
                                     home=self.home, bus=bus, pipeline=pipeline,
                                     report_path=reports / "chaos-report.html",
                                     journal_path=reports / "chaos-journal.json",
                                     options=options)
            monitor.flush()
            samples = _metric_lines(monitor.metrics.registry)
        monitoring = self._monitoring_files(slas)
        self._summary(journal, monitor, samples, reports, monitoring)
        return 0 if journal.ok else 1

    def _monitoring_files(self, slas: Any) -> list[str]:
        if slas is None:
            return []
        import yaml

        from reliability.sla.dashboard import write_grafana
        from reliability.sla.promtests import generate_rule_tests
        from reliability.sla.rules import build_rules, rules_document

        out = self.home / "monitoring"
        out.mkdir(parents=True, exist_ok=True)
        rs = build_rules(slas)
        rules = out / "reliability.rules.yml"
        rules.write_text(yaml.safe_dump(rules_document([rs]), sort_keys=False, width=1000))
        tests = out / "reliability.rules.test.yml"
        tests.write_text(generate_rule_tests([rs], rules.name))
        lines = [f"alert rules: {rules} ({len(rs.alerts)} alerts, {len(rs.recording)} "
                 f"recording rules)", f"rule tests:  {tests}"]
        try:
            lines += [f"grafana:     {p}" for p in write_grafana([rs], out / "grafana")]
        except MissingDependencyError as exc:
            lines.append(f"grafana:     skipped ({exc})")
        promtool = shutil.which("promtool")
        if promtool:
            for cmd in (["check", "rules", rules.name], ["test", "rules", tests.name]):
                proc = subprocess.run([promtool, *cmd], cwd=out, capture_output=True,
                                      text=True, check=False, timeout=120)
                verdict = "[green]ok[/]" if proc.returncode == 0 else "[red]FAILED[/]"
                lines.append(f"promtool {' '.join(cmd[:2])}: {verdict}")
        return lines

    def _summary(self, journal: Any, monitor: Any, samples: list[str], reports: Path,
                 monitoring: list[str]) -> None:
        from rich.markup import escape

        from reliability.cli.chaos import print_journal
        from reliability.runs import ledger_path

        print_journal(self.con, journal)
        d = journal.data
        run = d.get("run") or {}
        run_id = escape(str(run.get("run_id")))
        self.con.print(f"chaos run:   {run_id} ({escape(str(run.get('status')))}) - "
                       f"reliability runs show {run_id}")
        self.con.print(f"ledger:      {escape(str(ledger_path(self.home)))}")
        self.con.print(f"artifacts:   {escape(str(self.home / 'store' / 'objects'))}")
        self.con.print(f"report:      {escape(str(reports / 'chaos-report.html'))}")
        if run.get("run_id"):
            from reliability.runner import Ledger
            from reliability.runner.report import write_run_report

            with Ledger(ledger_path(self.home)) as led:
                page = write_run_report(led, str(run["run_id"]), reports / "chaos-run.html")
            self.con.print(f"run page:    {escape(str(page))}")
        self.con.print(f"journal:     {escape(str(reports / 'chaos-journal.json'))}")
        for b in monitor.breaches:
            self.con.print(f"[yellow]SLA breach[/] {escape(str(b.step or 'run'))}: "
                           f"{escape(str(b.error))}")
        for path in monitor.rendered:
            if path.suffix == ".md":
                self.con.print(f"runbook:     {escape(str(path))}")
        for line in monitoring:
            self.con.print(line)
        if samples:
            self.con.print("metrics at the end of the demo:")
            for line in samples:
                self.con.print(f"  {escape(line)}")


_SHOWN = ("reliability_runs_total", "reliability_worker_lost_total",
          "reliability_step_retries_total", "reliability_faults_injected_total",
          "reliability_contract_violations_total", "reliability_sla_breaches_total")


def _metric_lines(registry: Any) -> list[str]:
    out = []
    for family in registry.collect():
        for s in family.samples:
            if s.name in _SHOWN and s.value:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out.append(f"{s.name}{{{labels}}} {s.value:g}")
    return out
