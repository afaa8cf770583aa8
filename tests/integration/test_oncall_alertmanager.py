"""The on-call loop end to end with real Prometheus and real Alertmanager.

A step breaches its max_duration SLA; `reliability serve` exports the breach from the ledger
on /metrics; Prometheus evaluates the generated rules and fires; Alertmanager, configured by
`reliability sla alertmanager`, delivers to our webhook; the stored alert's runbook and the
page behind its runbook_url show the failing run's evidence; its resolution, sent by
Alertmanager, marks it resolved.

Set RELIABILITY_REQUIRE_PROMETHEUS=1 (CI does) to turn a missing binary into a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import binary, free_port, start, start_prometheus, stop, wait_for
from prometheus_client import CollectorRegistry

from reliability import EventBus, Pipeline, Runner
from reliability.cli.main import main
from reliability.sla import SLA, SLAMonitor, SLASet, generate_rules
from reliability.web import serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

breachy = Pipeline("oncall_am")


@breachy.step
def slow() -> str:
    time.sleep(1.5)  # three times its max_duration
    return "late"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def query(api: str, q: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(get(f"{api}/query?query={urllib.parse.quote(q)}"))
    except OSError:
        return []
    return list(data["data"]["result"])


def test_a_breach_fires_reaches_our_webhook_and_its_runbook_shows_the_failing_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary("prometheus")
    alertmanager = binary("prometheus-alertmanager")
    home = tmp_path / "home"
    slas = SLASet("oncall_am", [SLA(step="slow", max_duration=0.5)])
    port, am_port, prom_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    bus = EventBus()
    runner = Runner(breachy, home=home, bus=bus, workers=1)
    monitor = SLAMonitor(slas, bus, registry=CollectorRegistry(), ledger=runner.ledger)
    server = serve(home, port=port, slas=slas, interval=0.2)
    procs = []
    try:
        # the Alertmanager config as `reliability sla alertmanager` writes it, made quick
        monkeypatch.chdir(tmp_path)
        assert main(["sla", "alertmanager", "--out", "am", "--url", url]) == 0
        am_cfg = yaml.safe_load((tmp_path / "am" / "alertmanager.yml").read_text())
        assert am_cfg["receivers"][0]["webhook_configs"][0]["url"] == f"{url}/alerts/webhook"
        am_cfg["route"].update(group_wait="1s", group_interval="1s")
        (tmp_path / "am" / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg))
        procs.append(start([alertmanager, f"--config.file={tmp_path / 'am/alertmanager.yml'}",
                            f"--storage.path={tmp_path / 'am-data'}",
                            f"--web.listen-address=127.0.0.1:{am_port}",
                            "--cluster.listen-address="], tmp_path / "alertmanager.log"))
        (tmp_path / "rules.yml").write_text(generate_rules(slas,
                                                           runbook_base_url=f"{url}/runbooks"))
        procs.append(start_prometheus(tmp_path, tmp_path / "rules.yml",
                                      alertmanager_port=am_port, target_port=port,
                                      port=prom_port))
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait_for(lambda: bool(query(api, 'up{job="reliability"} == 1')), 60,
                 "Prometheus to scrape reliability serve")

        def breaches() -> float:
            rows = query(api, 'sum(reliability_sla_breaches_total{pipeline="oncall_am"})')
            return float(rows[0]["value"][1]) if rows else 0.0

        first = runner.run(resume=False)  # unmonitored: a good run, no breach on record
        with monitor:
            second = runner.run(resume=False)  # its breach is the first: the alert fires
            wait_for(lambda: breaches() == 1.0, 30, "Prometheus to see the breach")
        assert first.ok and second.ok
        wait_for(lambda: any(a.status == "firing" and a.alertname == "ReliabilitySLABreached"
                             for a in server.app.ledger.alerts()), 90,
                 "Alertmanager to deliver the breach to our webhook")

        alert = next(a for a in server.app.ledger.alerts()
                     if a.alertname == "ReliabilitySLABreached")
        assert alert.labels["pipeline"] == "oncall_am" and alert.labels["step"] == "slow"
        assert alert.labels["sla"] == "max_duration"
        assert alert.run_id == second.run_id  # the run whose breach fired it
        runbook_url = alert.annotations["runbook_url"]
        assert runbook_url == f"{url}/runbooks/oncall_am/sla_breach.html?step=slow"

        for page in (get(f"{url}/alerts/{alert.id}/runbook"), get(runbook_url)):
            assert "SLA breached: max_duration on slow of oncall_am" in page
            assert second.run_id in page and f'href="/runs/{second.run_id}"' in page
            assert first.run_id in page  # the last good run
            assert "Limit: 500ms; observed:" in page
            assert "reliability resume" not in page  # it succeeded late: nothing to resume
        listing = get(f"{url}/alerts")
        assert 'class="alert firing"' in listing and f'href="/alerts/{alert.id}/runbook"' \
            in listing
        assert "SLA breached in pipeline oncall_am" in listing  # the alert's summary
        assert "reliability resume" not in listing  # its run succeeded

        # the breach is over: Alertmanager learns it (as from Prometheus, which would only
        # say so once the 15-minute window passed) and sends the resolution to our webhook
        ended = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        req = urllib.request.Request(
            f"http://127.0.0.1:{am_port}/api/v2/alerts", method="POST",
            headers={"Content-Type": "application/json"}, data=json.dumps([{
                "labels": alert.labels, "annotations": alert.annotations,
                "startsAt": alert.starts_at, "endsAt": ended.isoformat()}]).encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        wait_for(lambda: server.app.ledger.get_alert(alert.id).status == "resolved", 60,
                 "Alertmanager to deliver the resolution")
        listing = get(f"{url}/alerts")
        assert 'class="alert resolved"' in listing and 'class="alert firing"' not in listing
        assert server.app.ledger.get_alert(alert.id).run_id == second.run_id  # kept
    finally:
        for proc in procs:
            stop(proc)
        server.close()
        runner.close()
