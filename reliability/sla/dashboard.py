"""A Grafana dashboard and Grafana provisioning files, built with grafana-foundation-sdk.

:func:`write_grafana` writes, under one directory::

    dashboards/reliability.json                  the dashboard (pipeline and datasource
                                                 variables; runs, steps, SLOs, failures)
    provisioning/dashboards/reliability.yaml     a file provider pointing at dashboards/
    provisioning/alerting/reliability.yaml       Grafana-managed alert rules, the same
                                                 alerts as the Prometheus rules

Point Grafana's ``paths.provisioning`` at ``provisioning/`` (and mount ``dashboards/`` where
the provider's ``path`` says) to load both.

Every panel and alert links to the pages of ``reliability serve``: the dashboard to the alert,
run and chaos lists; each panel to the list it summarizes; each series to the runbook of its
pipeline and step, rendered from the evidence of its latest failure (data links); each Grafana
alert to its runbook and to its panel on this dashboard.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reliability._lazy import require
from reliability._record import record
from reliability._sha import sha256
from reliability.sla.rules import (
    DEFAULT_RUNBOOK_BASE,
    PRODUCTION,
    RUNBOOK_ROUTE,
    AlertRule,
    RuleSet,
)

__all__ = ["DASHBOARD_UID", "build_dashboard", "grafana_alert_rules", "panel_ids",
           "rule_uid", "write_grafana"]

DASHBOARD_UID = "reliability-pipelines"
DS = "${datasource}"
P = 'pipeline=~"$pipeline"'
PROD = f"{P},{PRODUCTION}"  # SLO and duration panels: production runs only
DEFAULT_ONCALL_URL = DEFAULT_RUNBOOK_BASE.removesuffix(RUNBOOK_ROUTE)
_PIPE, _STEP = "${__field.labels.pipeline}", "${__field.labels.step}"
_UID_MAX = 40  # Grafana's limit for alert rule uids


def _sdk() -> Any:
    require("grafana_foundation_sdk", "grafana", "Grafana dashboards")
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.models import dashboard as models

    return dashboard, prometheus, stat, timeseries, models


def _q(prometheus: Any, expr: str, legend: str) -> Any:
    return prometheus.Dataquery().expr(expr).legend_format(legend)


def _inc(metric: str, by: str) -> str:
    """Counts per ``by`` and trigger: chaos and explore runs show as their own lines."""
    return f"sum by ({by}, trigger) (increase({metric}{{{P}}}[$__rate_interval]))"


def _quantile(q: float, metric: str, by: str) -> str:
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{PROD}}}[$__rate_interval])))")


@record(frozen=True)
class _Panel:
    row: str
    title: str
    unit: str
    queries: list[tuple[str, str]]
    kind: str = "timeseries"
    page: str = "runs"          # the list page of `reliability serve` the panel summarizes
    family: str | None = None   # the runbook family its series link to (None: the run list)
    alerts: tuple[str, ...] = ()  # kinds of alert rules (AlertRule.kind) shown by it


def _panels() -> list[_Panel]:
    """The dashboard's content as data."""
    run_h, step_h = "reliability_run_duration_seconds", "reliability_step_duration_seconds"
    return [
        _Panel("SLOs", "Time since last success", "s",
               [(f"time() - reliability_last_success_timestamp_seconds{{{P}}}",
                 "{{pipeline}}")], "stat", "runs", "stale_pipeline", ("stale", "never")),
        _Panel("SLOs", "Error budget remaining", "percentunit",
               [(f"reliability_error_budget_remaining_ratio{{{P}}}", "{{pipeline}} {{step}}")],
               "stat", "alerts", "sla_breach", ("burn_page", "burn_ticket")),
        _Panel("SLOs", "SLA breaches (1h)", "short",
               [("sum by (pipeline, step, sla) "
                 f"(increase(reliability_sla_breaches_total{{{PROD}}}[1h]))",
                 "{{pipeline}} {{step}} {{sla}}")], "stat", "alerts", "sla_breach",
               ("breach", "deadline")),
        _Panel("Runs", "Runs by status", "short",
               [(_inc("reliability_runs_total", "pipeline, status"),
                 "{{pipeline}} {{status}} {{trigger}}")]),
        _Panel("Runs", "Run duration p50 / p95", "s",
               [(_quantile(0.5, run_h, "pipeline"), "p50 {{pipeline}}"),
                (_quantile(0.95, run_h, "pipeline"), "p95 {{pipeline}}")]),
        _Panel("Steps", "Step duration p95", "s",
               [(_quantile(0.95, step_h, "pipeline, step"), "{{pipeline}} {{step}}")],
               family="sla_breach"),
        _Panel("Steps", "Attempts by outcome", "short",
               [(_inc("reliability_step_attempts_total", "pipeline, step, status"),
                 "{{step}} {{status}} {{trigger}}")], family="step_failed",
               alerts=("step_failed",)),
        _Panel("Steps", "Retries", "short",
               [(_inc("reliability_step_retries_total", "pipeline, step"), "{{step}} {{trigger}}")],
               family="step_failed"),
        _Panel("Failures", "Contract violations by check", "short",
               [(_inc("reliability_contract_violations_total", "pipeline, step, contract, check"),
                 "{{step}} {{contract}} {{check}} {{trigger}}")], page="alerts",
               family="contract_violation", alerts=("violation",)),
        _Panel("Failures", "Worker losses", "short",
               [(_inc("reliability_worker_lost_total", "pipeline, step"), "{{step}} {{trigger}}")],
               page="alerts", family="worker_lost", alerts=("worker_lost",)),
        _Panel("Failures", "Faults injected", "short",
               [(_inc("reliability_faults_injected_total", "pipeline, step, fault"),
                 "{{step}} {{fault}} {{trigger}}")], page="chaos"),
    ]


_PAGES = {"alerts": "On-call alerts", "runs": "Runs", "chaos": "Chaos reports"}


def _link(dashboard: Any, title: str, url: str) -> Any:
    return dashboard.DashboardLink(title).type("link").url(url).target_blank(True)


def _series_link(dashboard: Any, panel: _Panel, oncall: str, runbooks: str) -> Any:
    """Each series' runbook: the evidence of its pipeline's (and step's) latest failure."""
    if panel.family is None:
        return _link(dashboard, "Runs of this pipeline", f"{oncall}/runs?pipeline={_PIPE}")
    step = f"?step={_STEP}" if any("{{step}}" in legend for _, legend in panel.queries) \
        else ""
    return _link(dashboard, f"Runbook ({panel.family.replace('_', ' ')}) with evidence",
                 f"{runbooks}/{_PIPE}/{panel.family}.html{step}")


def _panel_of(rule: AlertRule) -> int | None:
    """The id of the panel showing what ``rule`` alerts on."""
    ids = panel_ids()
    return next((ids[p.title] for p in _panels() if rule.kind in p.alerts), None)


def panel_ids() -> dict[str, int]:
    """The id of each panel of :func:`build_dashboard` by title (rows are numbered too)."""
    ids: dict[str, int] = {}
    row, n = None, 0
    for panel in _panels():
        if panel.row != row:
            row, n = panel.row, n + 1
        n += 1
        ids[panel.title] = n
    return ids


def build_dashboard(title: str = "Pipeline reliability", *,
                    oncall_url: str = DEFAULT_ONCALL_URL,
                    runbook_base_url: str | None = None) -> dict[str, Any]:
    """The dashboard as Grafana JSON (a dict), built with the foundation SDK.

    ``oncall_url`` is where ``reliability serve`` is reached; ``runbook_base_url`` (default
    ``<oncall_url>/runbooks``) where the runbooks are.
    """
    dashboard, prometheus, stat, timeseries, models = _sdk()
    oncall = oncall_url.rstrip("/")
    runbooks = (runbook_base_url or oncall + RUNBOOK_ROUTE).rstrip("/")
    ds = models.DataSourceRef(type_val="prometheus", uid=DS)
    board = (
        dashboard.Dashboard(title).uid(DASHBOARD_UID).tags(["reliability", "sla"])
        .refresh("30s").time("now-24h", "now").timezone("utc")
        .links([_link(dashboard, text, f"{oncall}/{page}") for page, text in _PAGES.items()])
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
        .with_variable(dashboard.QueryVariable("pipeline").label("Pipeline")
                       .datasource(ds).query("label_values(reliability_runs_total, pipeline)")
                       .multi(True).include_all(True).all_value(".*")))
    row, ids = None, panel_ids()
    for p in _panels():
        if p.row != row:
            board = board.with_row(dashboard.Row(p.row).id(ids[p.title] - 1))
            row = p.row
        panel = (stat.Panel() if p.kind == "stat" else timeseries.Panel()) \
            .id(ids[p.title]).title(p.title).unit(p.unit).datasource(ds).height(8) \
            .span(8 if p.kind == "stat" else 12) \
            .links([_link(dashboard, _PAGES[p.page], f"{oncall}/{p.page}")]) \
            .data_links([_series_link(dashboard, p, oncall, runbooks)])
        for expr, legend in p.queries:
            panel = panel.with_target(_q(prometheus, expr, legend))
        board = board.with_panel(panel)
    plain: dict[str, Any] = _to_plain(board.build())
    return plain


def _to_plain(obj: Any) -> Any:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.loads(json.dumps(obj, cls=JSONEncoder))


def rule_uid(rule: AlertRule) -> str:
    """A Grafana rule uid: readable, unique per pipeline/kind/scope, at most 40 characters.

    Grafana refuses longer uids, and cutting a long one short would give two rules the
    same uid (``burn_page`` and ``burn_ticket`` of a long pipeline name), so a long uid
    keeps its start and ends with a hash of the whole.
    """
    scope = (rule.sla.step if rule.sla else None) or "run"
    uid = f"rel-{rule.pipeline}-{rule.kind}-{scope}"
    if len(uid) <= _UID_MAX:
        return uid
    digest = sha256(uid.encode()).hexdigest()[:10]
    return f"{uid[:_UID_MAX - len(digest) - 1]}-{digest}"


def _grafana_rule(rule: AlertRule, folder_uid: str, datasource_uid: str) -> Any:
    from grafana_foundation_sdk.builders import alerting, expr, prometheus
    from grafana_foundation_sdk.models.alerting import RelativeTimeRange

    window = RelativeTimeRange(from_val=600, to=0)
    query = (alerting.Query("A").datasource_uid(datasource_uid).relative_time_range(window)
             .model(prometheus.Dataquery().expr(rule.expr).instant().ref_id("A")))
    reduce = (alerting.Query("B").datasource_uid("__expr__")
              .model(expr.TypeReduce().ref_id("B").expression("A").reducer("last")
                     .settings(expr.ExprTypeReduceSettings().mode("dropNN"))))
    threshold = (alerting.Query("C").datasource_uid("__expr__")
                 .model(expr.TypeThreshold().ref_id("C").expression("B").conditions([
                     expr.ExprTypeThresholdConditions().evaluator(
                         expr.ExprTypeThresholdConditionsEvaluator().type("gt").params([0]))])))
    uid = rule_uid(rule)
    return (alerting.Rule(f"{rule.alert} {rule.pipeline} {rule.kind}"
                          + (f" {rule.sla.step}" if rule.sla and rule.sla.step else ""))
            .uid(uid).folder_uid(folder_uid).condition("C")
            .queries([query, reduce, threshold]).for_val(rule.for_ or "0s")
            .no_data_state("OK").exec_err_state("Error")
            .labels(dict(rule.labels)).annotations(_annotations(rule)).build())


def _annotations(rule: AlertRule) -> dict[str, str]:
    """The rule's annotations, plus the dashboard panel Grafana links the alert to."""
    out = dict(rule.annotations)
    panel = _panel_of(rule)
    if panel is not None:
        out.update({"__dashboardUid__": DASHBOARD_UID, "__panelId__": str(panel)})
    return out


def grafana_alert_rules(rulesets: Iterable[RuleSet], *, folder_uid: str = "reliability",
                        datasource_uid: str = "prometheus") -> dict[str, Any]:
    """Grafana alerting provisioning (``apiVersion: 1``, ``groups``) for ``rulesets``."""
    groups = []
    for rs in rulesets:
        rules = [_to_plain(_grafana_rule(r, folder_uid, datasource_uid)) for r in rs.alerts]
        for r in rules:  # the provisioning file names the group and folder once
            for key in ("folderUID", "ruleGroup", "orgID"):
                r.pop(key, None)
        groups.append({"orgId": 1, "name": f"reliability-{rs.pipeline}",
                       "folder": "Pipeline reliability", "interval": "1m", "rules": rules})
    return {"apiVersion": 1, "groups": groups}


def write_grafana(rulesets: Iterable[RuleSet], out_dir: str | Path, *,
                  datasource_uid: str = "prometheus",
                  dashboards_path: str = "/var/lib/grafana/dashboards/reliability",
                  oncall_url: str = DEFAULT_ONCALL_URL, runbook_base_url: str | None = None
                  ) -> list[Path]:
    """Write the dashboard JSON and the provisioning YAML files; return their paths.

    ``oncall_url`` and ``runbook_base_url``: where the dashboard's links point (see
    :func:`build_dashboard`)."""
    import yaml

    out = Path(out_dir)
    board = build_dashboard(oncall_url=oncall_url, runbook_base_url=runbook_base_url)
    files = {
        out / "dashboards" / "reliability.json": json.dumps(board, indent=2),
        out / "provisioning" / "dashboards" / "reliability.yaml": yaml.safe_dump({
            "apiVersion": 1, "providers": [{
                "name": "reliability", "orgId": 1, "folder": "Pipeline reliability",
                "type": "file", "disableDeletion": False, "allowUiUpdates": False,
                "options": {"path": dashboards_path, "foldersFromFilesStructure": False}}]},
            sort_keys=False),
        out / "provisioning" / "alerting" / "reliability.yaml": yaml.safe_dump(
            grafana_alert_rules(rulesets, datasource_uid=datasource_uid), sort_keys=False,
            width=1000),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
    return list(files)
