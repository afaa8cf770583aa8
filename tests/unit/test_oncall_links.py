"""Alerts, the Grafana dashboard and the Alertmanager config point at `reliability serve`."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
import yaml

from reliability.cli.main import main
from reliability.sla import SLA, SLASet, load_slas
from reliability.sla.dashboard import (
    DASHBOARD_UID,
    build_dashboard,
    grafana_alert_rules,
    panel_ids,
)
from reliability.sla.rules import build_rules
from reliability.web.app import OnCallApp

ROOT = Path(__file__).resolve().parents[2]


def test_every_generated_runbook_url_is_a_page_of_the_server(tmp_path: Path) -> None:
    rs = build_rules(load_slas(ROOT / "contracts" / "reference.sla.yaml"))
    app = OnCallApp(tmp_path / "home")
    try:
        for rule in rs.alerts:
            url = urllib.parse.urlsplit(rule.runbook_url.replace("{{ $labels.step }}", "train"))
            assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:8080", rule.alert
            response = app.handle("GET", f"{url.path}?{url.query}", {})
            assert response.status == 200, (rule.alert, response.body[:300])
            assert b"No production failure of this kind" in response.body
    finally:
        app.close()


def test_the_runbook_base_defaults_to_the_project_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reliability.yaml").write_text(
        "pipeline: pipelines.reference:pipeline\nserve:\n  url: https://oncall.example/\n")
    (tmp_path / "etl.sla.yaml").write_text("pipeline: etl\nrun: {max_duration: 10m}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["sla", "rules", "--sla", "etl.sla.yaml", "--out", "out"]) == 0
    doc = yaml.safe_load((tmp_path / "out" / "reliability.rules.yml").read_text())
    urls = {r["annotations"]["runbook_url"] for g in doc["groups"] for r in g["rules"]
            if "alert" in r}
    assert "https://oncall.example/runbooks/etl/step_failed.html?step={{ $labels.step }}" \
        in urls
    assert all(u.startswith("https://oncall.example/runbooks/etl/") for u in urls)
    # an explicit base still wins
    assert main(["sla", "rules", "--sla", "etl.sla.yaml", "--out", "out",
                 "--runbook-base-url", "https://books.example"]) == 0
    assert "https://books.example/etl/" in (tmp_path / "out" / "reliability.rules.yml"
                                             ).read_text()


def test_the_alertmanager_config_posts_every_alert_and_its_resolution_to_the_webhook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sla", "alertmanager", "--out", "am"]) == 0
    cfg = yaml.safe_load((tmp_path / "am" / "alertmanager.yml").read_text())
    assert cfg["route"]["receiver"] == cfg["receivers"][0]["name"]
    assert cfg["receivers"][0]["webhook_configs"] == [{
        "url": "http://127.0.0.1:8080/alerts/webhook", "send_resolved": True,
        "max_alerts": 0}]
    assert main(["sla", "alertmanager", "--out", "am", "--url", "ftp://x"]) == 2


def test_every_panel_links_to_the_server_and_its_series_to_their_runbooks() -> None:
    board = build_dashboard(oncall_url="https://oc.example")
    assert [link["url"] for link in board["links"]] == [
        "https://oc.example/alerts", "https://oc.example/runs", "https://oc.example/chaos"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == len(panel_ids())
    for p in panels:
        assert p["id"] == panel_ids()[p["title"]]
        (page,) = p["links"]
        assert page["url"].startswith("https://oc.example/")
        (series,) = p["fieldConfig"]["defaults"]["links"]
        url = series["url"]
        assert url.startswith(("https://oc.example/runbooks/${__field.labels.pipeline}/",
                               "https://oc.example/runs?pipeline=${__field.labels.pipeline}"))
    contracts = next(p for p in panels if p["title"] == "Contract violations by check")
    assert contracts["fieldConfig"]["defaults"]["links"][0]["url"] == (
        "https://oc.example/runbooks/${__field.labels.pipeline}/contract_violation.html"
        "?step=${__field.labels.step}")
    assert "pipeline" in contracts["targets"][0]["expr"].split("(")[1]  # the label is kept


def test_every_grafana_alert_links_its_runbook_and_its_panel() -> None:
    rs = build_rules(SLASet("etl", [SLA(step="load", freshness="2h",
                                        success_rate={"target": 0.9}),
                                    SLA(finish_by={"offset": "1h"})]))
    ids = set(panel_ids().values())
    for rule in grafana_alert_rules([rs])["groups"][0]["rules"]:
        notes = rule["annotations"]
        assert notes["runbook_url"].startswith("http://127.0.0.1:8080/runbooks/etl/")
        assert notes["__dashboardUid__"] == DASHBOARD_UID
        assert int(notes["__panelId__"]) in ids
