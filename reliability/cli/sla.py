"""``reliability sla check|rules|dashboard|serve`` and ``reliability runbooks list|render``."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from reliability.cli._args import output_dir, port, positive_float
from reliability.errors import ConfigError, SLAError

__all__ = ["register"]


def register(sub: Any) -> None:
    sla = sub.add_parser("sla", help="SLAs: check specs, generate rules and dashboards, "
                                     "serve /metrics")
    ssub = sla.add_subparsers(dest="sla_command", metavar="ACTION")
    check = ssub.add_parser("check", help="validate the SLA file and list its SLAs")
    _sla_arg(check)
    check.set_defaults(func=cmd_check)

    rules = ssub.add_parser("rules", help="write Prometheus rules and promtool tests")
    _sla_arg(rules)
    rules.add_argument("--out", default="monitoring", help="output directory")
    rules.add_argument("--runbook-base-url", help="base of the alerts' runbook_url")
    rules.add_argument("--check", action="store_true",
                       help="run `promtool check rules` and `promtool test rules` on them")
    rules.set_defaults(func=cmd_rules)

    dash = ssub.add_parser("dashboard", help="write the Grafana dashboard and provisioning")
    _sla_arg(dash)
    dash.add_argument("--out", default="monitoring/grafana", help="output directory")
    dash.add_argument("--runbook-base-url", help="base of the alerts' runbook_url")
    dash.add_argument("--datasource-uid", default="prometheus",
                      help="uid of Grafana's Prometheus data source")
    dash.add_argument("--oncall-url", help="where `reliability serve` is reached, for the "
                                           "dashboard's links (default: the project's "
                                           "serve.url, else http://127.0.0.1:8080)")
    dash.set_defaults(func=cmd_dashboard)

    am = ssub.add_parser("alertmanager", help="write an Alertmanager config whose receiver "
                                              "posts to `reliability serve`")
    am.add_argument("--out", default="monitoring", help="output directory")
    am.add_argument("--url", help="where Alertmanager reaches `reliability serve` (default: "
                                  "the project's serve.url, else http://127.0.0.1:8080)")
    am.set_defaults(func=cmd_alertmanager)

    serve = ssub.add_parser("serve", help="serve /metrics fed from the run ledger")
    serve.add_argument("--home", help="runner home holding ledger.db (default: project)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=port, default=9464)
    serve.add_argument("--interval", type=positive_float, default=1.0, help="ledger poll seconds")
    serve.add_argument("--sla", metavar="FILE",
                       help="SLA YAML file for the deadline gauge (default: the project's, "
                            "if it exists)")
    serve.set_defaults(func=cmd_serve)
    sla.set_defaults(func=lambda a: (sla.print_help(), 2)[1])

    books = sub.add_parser("runbooks", help="render runbooks from Jinja templates")
    bsub = books.add_subparsers(dest="runbooks_command", metavar="ACTION")
    lst = bsub.add_parser("list", help="runbook families and the template each uses")
    _runbook_args(lst)
    lst.set_defaults(func=cmd_runbooks_list)
    render = bsub.add_parser("render", help="render the runbooks of a run, or one family")
    _runbook_args(render)
    what = render.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="RUN", help="every runbook a run's failures call for")
    what.add_argument("--family", help="one family, generic (to publish at runbook_url)")
    render.add_argument("--pipeline", help="pipeline name (with --family)")
    render.add_argument("--home", help="runner home holding ledger.db (default: project)")
    render.add_argument("--out", help="output directory (default: <home>/runbooks/<run>)")
    render.add_argument("--base-url", help="base URL the runbooks are published at")
    render.set_defaults(func=cmd_runbooks_render)
    books.set_defaults(func=lambda a: (books.print_help(), 2)[1])


def _sla_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sla", metavar="FILE", help="SLA YAML file (default: the project's)")


def _runbook_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--templates", metavar="DIR", help="project templates (default: runbooks/)")


def _project() -> Any:
    from reliability.project import find_project

    return find_project()


def _load(args: argparse.Namespace) -> Any:
    from reliability.sla.spec import load_slas

    project = _project()
    path = args.sla or project.sla_file
    if path is None:
        raise ConfigError("no SLA file given and reliability.yaml names none", path=("sla",),
                          fix="pass --sla FILE or set `sla:` in reliability.yaml")
    sset = load_slas(path)
    if project.file is not None:
        _check_against_project(sset, project, explicit=bool(args.sla))
    return sset


def _check_against_project(sset: Any, project: Any, *, explicit: bool) -> None:
    """SLAs of the project's pipeline must name its steps; the project's own SLA file must
    name its pipeline, or `reliability run` never monitors it."""

    pipeline = project.load_pipeline()
    if sset.pipeline == pipeline.name:
        sset.check_steps(pipeline.steps)
    elif not explicit:
        raise ConfigError(
            f"names pipeline {sset.pipeline!r}, but the project's pipeline is "
            f"{pipeline.name!r}, so runs would never be checked against it",
            file=sset.source, path=("pipeline",), fix=f"write pipeline: {pipeline.name}")


def _console() -> Any:
    """A console that prints text as text: names and messages from files are never markup."""
    from rich.console import Console

    return Console(markup=False)


def cmd_check(args: argparse.Namespace) -> int:
    from rich.table import Table

    from reliability.sla.spec import format_duration

    sset = _load(args)
    table = Table(title=f"SLAs of pipeline {sset.pipeline} ({sset.source})")
    for col in ("scope", "max_duration", "finish_by", "freshness", "success_rate", "severity"):
        table.add_column(col)
    for sla in sset:
        fb = sla.finish_by
        table.add_row(
            sla.scope, format_duration(sla.max_duration) if sla.max_duration else "-",
            f"{format_duration(fb.offset)} after {fb.relative_to}" if fb else "-",
            format_duration(sla.freshness) if sla.freshness else "-",
            f"{sla.success_rate.target * 100:g}% over {format_duration(sla.success_rate.window)}"
            if sla.success_rate else "-", sla.severity)
    _console().print(table)
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    import yaml

    from reliability.sla.promtests import generate_rule_tests
    from reliability.sla.rules import build_rules, rules_document

    sset = _load(args)
    rs = build_rules(sset, runbook_base_url=_runbook_base(args, sset))
    out = output_dir(args.out, "--out")
    rules_file, tests_file = out / "reliability.rules.yml", out / "reliability.rules.test.yml"
    rules_file.write_text(yaml.safe_dump(rules_document([rs]), sort_keys=False, width=1000))
    tests_file.write_text(generate_rule_tests([rs], rules_file.name))
    print(f"wrote {rules_file} ({len(rs.recording)} recording, {len(rs.alerts)} alerting "
          f"rules) and {tests_file}")
    if args.check:
        promtool = shutil.which("promtool")
        if promtool is None:
            raise SLAError("promtool is not installed. Fix: install Prometheus's promtool, "
                           "or drop --check")
        for cmd in (["check", "rules", rules_file.name], ["test", "rules", tests_file.name]):
            proc = subprocess.run([promtool, *cmd], cwd=out, capture_output=True, text=True,
                                  check=False)
            print(proc.stdout.strip() or proc.stderr.strip())
            if proc.returncode != 0:
                print(proc.stderr.strip())
                return 1
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from reliability.sla.dashboard import write_grafana
    from reliability.sla.rules import build_rules

    sset = _load(args)
    base = _runbook_base(args, sset)
    rs = build_rules(sset, runbook_base_url=base)
    output_dir(args.out, "--out")
    oncall = args.oncall_url or str(_project().spec.serve.base_url)
    for path in write_grafana([rs], args.out, datasource_uid=args.datasource_uid,
                              oncall_url=oncall, runbook_base_url=base):
        print(f"wrote {path}")
    return 0


def _runbook_base(args: argparse.Namespace, sset: Any) -> str | None:
    """--runbook-base-url, else the SLA file's, else the runbook route of the project's
    `reliability serve`."""
    from reliability.sla.rules import RUNBOOK_ROUTE

    if args.runbook_base_url or sset.runbook_base_url:
        return str(args.runbook_base_url or sset.runbook_base_url)
    return str(_project().spec.serve.base_url) + RUNBOOK_ROUTE


def cmd_alertmanager(args: argparse.Namespace) -> int:
    import yaml

    from reliability.web.alerts import alertmanager_config

    url = args.url or _project().spec.serve.base_url
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"--url {url!r} is not an http(s) URL", path=("--url",),
                          fix="pass e.g. http://127.0.0.1:8080")
    out = output_dir(args.out, "--out")
    path = out / "alertmanager.yml"
    path.write_text(yaml.safe_dump(alertmanager_config(url), sort_keys=False),
                    encoding="utf-8")
    print(f"wrote {path} (webhook receiver {url.rstrip('/')}/alerts/webhook)")
    return 0


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else _project().home


def cmd_serve(args: argparse.Namespace) -> int:
    from reliability.sla.exporter import serve_metrics
    from reliability.web.metrics import LedgerMetrics

    feed = LedgerMetrics(_home(args), _serve_slas(args), interval=args.interval)
    server = serve_metrics(feed.registry, host=args.host, port=args.port)
    print(f"serving {server.url} (ledger {feed.ledger_path}); Ctrl-C stops", flush=True)
    feed.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        feed.stop()
        server.close()


def _serve_slas(args: argparse.Namespace) -> Any:
    """The SLAs whose deadlines ``serve`` publishes: --sla, else the project's if present."""
    from reliability.sla.spec import load_slas

    if args.sla:
        return load_slas(args.sla)
    path = _project().sla_file
    return load_slas(path) if path is not None and path.is_file() else None


def _renderer(args: argparse.Namespace) -> Any:
    from reliability.runbooks.render import RunbookRenderer

    tdir = Path(args.templates) if args.templates else _project().runbooks_dir
    if args.templates and not tdir.is_dir():
        raise ConfigError(f"runbook template directory {str(tdir)!r} "
                          f"{'is not a directory' if tdir.exists() else 'does not exist'}",
                          path=("--templates",), fix="pass the folder holding *.md.j2 templates")
    return RunbookRenderer([tdir], base_url=getattr(args, "base_url", None))


def cmd_runbooks_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from reliability.runbooks.render import BUILTIN_DIR

    table = Table(title="Runbook families")
    table.add_column("family")
    table.add_column("template")
    for family, path in sorted(_renderer(args).families().items()):
        table.add_row(family, "built-in" if path.parent == BUILTIN_DIR else str(path))
    _console().print(table)
    return 0


def cmd_runbooks_render(args: argparse.Namespace) -> int:
    renderer = _renderer(args)
    home = _home(args)
    if args.family:
        paths = _render_generic(renderer, args, home)
    else:
        paths = _render_run(renderer, args.run, home, args.out)
    for p in paths:
        print(f"wrote {p}")
    if not paths:
        print(f"run {args.run} has no failure or breach that calls for a runbook")
    return 0


def _render_generic(renderer: Any, args: argparse.Namespace, home: Path) -> list[Path]:
    from reliability.runbooks.evidence import Evidence

    if not args.pipeline:
        raise ConfigError("--family needs --pipeline", path=("--pipeline",),
                          fix="name the pipeline the runbook is for")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", args.pipeline):
        raise ConfigError(f"pipeline name {args.pipeline!r} is not a plain name (it is used "
                          "as a folder name)", path=("--pipeline",),
                          fix="use letters, digits, '_', '-' and '.', e.g. reference")
    ev = Evidence(family=args.family, pipeline=args.pipeline, run_id="RUN_ID",
                  summary=f"Runbook for {args.family.replace('_', ' ')} alerts of pipeline "
                          f"{args.pipeline!r}.", home=str(home))
    book = renderer.render(ev)
    out = output_dir(Path(args.out or "runbooks-site") / args.pipeline, "--out")
    paths = [out / f"{args.family}.md", out / f"{args.family}.html"]
    paths[0].write_text(book.markdown, encoding="utf-8")
    paths[1].write_text(book.html, encoding="utf-8")
    return paths


def _render_run(renderer: Any, run_id: str, home: Path, out: str | None) -> list[Path]:
    from reliability.cli.run import _ledger
    from reliability.runbooks.from_ledger import run_evidence

    with _ledger(argparse.Namespace(home=str(home))) as ledger:
        run = ledger.get_run(run_id)
        evidence = run_evidence(ledger, run, home=str(home))
    target = output_dir(out, "--out") if out else home / "runbooks" / run.run_id
    paths: list[Path] = []
    for ev in evidence:
        paths += renderer.write(ev, target)
    return paths
