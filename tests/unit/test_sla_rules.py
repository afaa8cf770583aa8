"""Generated Prometheus rules, promtool tests and Grafana files: structure and content."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from reliability.sla import SLA, SLO, SLASet, generate_rules, load_slas
from reliability.sla.dashboard import build_dashboard, grafana_alert_rules, write_grafana
from reliability.sla.promtests import rule_tests_document
from reliability.sla.rules import BURN_WINDOWS, build_rules

ROOT = Path(__file__).resolve().parents[2]


def sset() -> SLASet:
    return SLASet("ref", [
        SLA(finish_by="2h", freshness="26h", success_rate=SLO(target=0.99)),
        SLA(step="train", max_duration=60, success_rate=SLO(target=0.9, window="7d"))],
        runbook_base_url="https://rb.example")


def test_sre_workbook_windows_and_factors() -> None:
    assert [(w.long, w.short, w.factor, w.severity) for w in BURN_WINDOWS] == [
        ("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"),
        ("1d", "2h", 3.0, "ticket"), ("3d", "6h", 1.0, "ticket")]
    rs = build_rules(sset())
    page = next(a for a in rs.alerts if a.kind == "burn_page" and a.sla and not a.sla.step)
    assert "pipeline:reliability_runs:error_ratio_rate1h{pipeline=\"ref\"} > 0.144" in page.expr
    assert "error_ratio_rate5m{pipeline=\"ref\"} > 0.144" in page.expr
    assert "error_ratio_rate6h{pipeline=\"ref\"} > 0.06" in page.expr
    ticket = next(a for a in rs.alerts if a.kind == "burn_ticket" and a.sla and a.sla.step)
    assert "pipeline_step:reliability_steps:error_ratio_rate3d" in ticket.expr
    assert "> 0.3 and" in ticket.expr and "> 0.1 and" in ticket.expr
    records = {r.record for r in rs.recording}
    assert "pipeline:reliability_runs:error_ratio_rate3d" in records
    assert "pipeline_step:reliability_steps:error_ratio_rate5m" in records


def test_every_alert_has_summary_description_and_runbook_url() -> None:
    doc = yaml.safe_load(generate_rules(sset()))
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert names == {"ReliabilityErrorBudgetBurn", "ReliabilityPipelineStale",
                     "ReliabilityPipelineNeverSucceeded", "ReliabilityRunPastDeadline", "ReliabilitySLABreached",
                     "ReliabilityContractViolated", "ReliabilityWorkerLost",
                     "ReliabilityStepFailed"}
    for a in alerts:
        assert set(a["annotations"]) == {"summary", "description", "runbook_url"}
        assert a["annotations"]["runbook_url"].startswith("https://rb.example/ref/")
        assert a["labels"]["severity"] in ("page", "ticket")
    stale = next(a for a in alerts if a["alert"] == "ReliabilityPipelineStale")
    assert "> 93600" in stale["expr"]
    never = next(a for a in alerts if a["alert"] == "ReliabilityPipelineNeverSucceeded")
    assert never["expr"] == 'absent(reliability_last_success_timestamp_seconds{pipeline="ref"})'
    assert never["for"] == "93600s"  # only after a whole freshness window with no success


def test_rule_tests_have_a_firing_and_a_silent_case_per_alert() -> None:
    rs = build_rules(sset())
    doc = rule_tests_document([rs], "rules.yml")
    tests = doc["tests"]
    fires = [t for t in tests if t["name"].endswith("fires")]
    silent = [t for t in tests if t["name"].endswith("stays silent")]
    assert len(fires) == len(silent) >= 8
    assert all(t["alert_rule_test"][0]["exp_alerts"] for t in fires)
    assert all(t["alert_rule_test"][0]["exp_alerts"] == [] for t in silent)


def test_low_target_pages_on_a_total_outage_and_the_test_expects_it() -> None:
    rs = build_rules(SLASet("p", [SLA(success_rate=SLO(target=0.5))]))
    page = next(a for a in rs.alerts if a.kind == "burn_page")
    # 0.5 budget: an error ratio can't exceed 14.4x or 6x of it; the page fires at ratio 1
    assert "error_ratio_rate1h{pipeline=\"p\"} >= 1" in page.expr
    burn = next(t for t in rule_tests_document([rs], "r.yml")["tests"]
                if "burn_page" in t["name"] and t["name"].endswith("fires"))
    severities = [a["exp_labels"]["severity"] for a in burn["alert_rule_test"][0]["exp_alerts"]]
    assert severities == ["page", "ticket"]


def test_dashboard_built_with_the_sdk() -> None:
    board = build_dashboard()
    assert board["uid"] == "reliability-pipelines"
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("Time since last success", "Error budget remaining", "Runs by status",
                   "Step duration p95", "Contract violations by check", "Worker losses",
                   "Faults injected"):
        assert wanted in titles
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert any("histogram_quantile(0.95" in e for e in exprs)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "pipeline"]


def test_grafana_provisioning(tmp_path: Path) -> None:
    rs = build_rules(load_slas(ROOT / "contracts" / "reference.sla.yaml"))
    paths = write_grafana([rs], tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in paths} == {
        "dashboards/reliability.json", "provisioning/dashboards/reliability.yaml",
        "provisioning/alerting/reliability.yaml"}
    json.loads((tmp_path / "dashboards" / "reliability.json").read_text())
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/reliability.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    alerting = yaml.safe_load((tmp_path / "provisioning/alerting/reliability.yaml").read_text())
    assert alerting == grafana_alert_rules([rs])
    rules = alerting["groups"][0]["rules"]
    assert len(rules) == len(rs.alerts)
    assert len({r["uid"] for r in rules}) == len(rules)
    for r in rules:
        assert r["condition"] == "C" and r["annotations"]["runbook_url"]
        assert [q["refId"] for q in r["data"]] == ["A", "B", "C"]
