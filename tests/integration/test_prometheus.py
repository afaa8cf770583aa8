"""Real Prometheus, promtool and Alertmanager against our exporter and generated rules.

Set RELIABILITY_REQUIRE_PROMETHEUS=1 (CI does) to turn a missing binary into a failure.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import binary, free_port, start, start_prometheus, stop
from prometheus_client import CollectorRegistry

from reliability import EventBus, Pipeline, Runner
from reliability.sla import SLA, SLAMonitor, SLASet, generate_rules, load_slas, serve_metrics
from reliability.sla.promtests import generate_rule_tests
from reliability.sla.rules import build_rules

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- promtool ---------------------------------------------------------------------------
@pytest.mark.parametrize("slas", ["reference", "custom"])
def test_generated_rules_pass_promtool_check_and_tests(tmp_path: Path, slas: str) -> None:
    promtool = binary("promtool")
    sset = load_slas(ROOT / "contracts" / "reference.sla.yaml") if slas == "reference" else \
        SLASet("etl", [SLA(step="load", freshness="2h", success_rate={"target": 0.5}),
                       SLA(max_duration=30, finish_by={"offset": "1h",
                                                       "relative_to": "run_start"})])
    rs = build_rules(sset)
    (tmp_path / "rules.yml").write_text(generate_rules(sset))
    (tmp_path / "rules.test.yml").write_text(generate_rule_tests([rs], "rules.yml"))
    check = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    test = subprocess.run([promtool, "test", "rules", "rules.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stdout + test.stderr


def test_promtool_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """The generated suites can fail: flip a silent case to expect an alert."""
    promtool = binary("promtool")
    sset = SLASet("etl", [SLA(freshness="1h")])
    rs = build_rules(sset)
    (tmp_path / "rules.yml").write_text(generate_rules(sset))
    doc = yaml.safe_load(generate_rule_tests([rs], "rules.yml"))
    silent = next(t for t in doc["tests"] if t["name"].endswith("stays silent"))
    fired = next(t for t in doc["tests"] if t["name"].endswith("fires")
                 and t["alert_rule_test"][0]["alertname"]
                 == silent["alert_rule_test"][0]["alertname"])
    silent["alert_rule_test"] = fired["alert_rule_test"]
    (tmp_path / "bad.test.yml").write_text(yaml.safe_dump(doc))
    test = subprocess.run([promtool, "test", "rules", "bad.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert test.returncode != 0 and "FAILED" in test.stdout + test.stderr


# -- a real Prometheus scraping a running pipeline -------------------------------------
demo = Pipeline("promdemo")


@demo.step
def first() -> int:
    return 1


@demo.step
def slow(first: int) -> int:
    time.sleep(3.0)
    return first + 1


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
                 ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    am = binary("prometheus-alertmanager")
    url, received = webhook
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump({
        "route": {"receiver": "hook", "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h", "group_by": ["alertname", "pipeline"]},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": url,
                                                            "send_resolved": False}]}]}))
    port = free_port()
    proc = start([am, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                 tmp_path / "alertmanager.log")
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready",
                                                timeout=1).status == 200, 30,
                 "alertmanager to be ready")
        yield port, received
    finally:
        stop(proc)


def test_prometheus_scrapes_a_running_pipeline_and_alertmanager_gets_the_runbook(
        tmp_path: Path, alertmanager: tuple[int, list[dict[str, Any]]]) -> None:
    binary("prometheus")
    am_port, received = alertmanager
    reg = CollectorRegistry()
    bus = EventBus()
    runner = Runner(demo, home=tmp_path / "home", bus=bus, workers=1)
    slas = SLASet("promdemo", [SLA(step="slow", max_duration=0.5)],
                  runbook_base_url="http://127.0.0.1:9/runbooks")
    (tmp_path / "rules.yml").write_text(generate_rules(slas))
    exporter = serve_metrics(reg)
    port = free_port()
    proc = start_prometheus(tmp_path, tmp_path / "rules.yml", alertmanager_port=am_port,
                            target_port=exporter.port, port=port)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(q: str) -> list[dict[str, Any]]:
        data = get_json(f"{api}/query?query={urllib.parse.quote(q)}")
        return list(data["data"]["result"])

    try:
        wait_for(lambda: any(t["health"] == "up" for t in
                             get_json(f"{api}/targets")["data"]["activeTargets"]), 30,
                 "the first scrape")
        with SLAMonitor(slas, bus, registry=reg, ledger=runner.ledger):
            result = runner.run()
        assert result.ok
        def succeeded() -> float:
            rows = query('sum(reliability_steps_total{pipeline="promdemo",status="succeeded"})')
            return float(rows[0]["value"][1]) if rows else 0.0

        wait_for(lambda: succeeded() == 2.0, 15, "Prometheus to see both steps succeed")
        wait_for(lambda: query('reliability_runs_total{pipeline="promdemo"}'), 15,
                 "Prometheus to see the finished run")
        runs = query('reliability_runs_total{pipeline="promdemo"}')
        # every outcome's series exists from the run's start (zero), so rate() sees the first
        assert sorted((r["metric"]["status"], r["value"][1]) for r in runs) == [
            ("cancelled", "0"), ("failed", "0"), ("succeeded", "1")]
        seen_running = query('max_over_time(reliability_runs_in_progress{pipeline="promdemo"}[1m])')
        assert float(seen_running[0]["value"][1]) == 1.0  # scraped while it ran
        breaches = query('reliability_sla_breaches_total{pipeline="promdemo"}')
        assert [(b["metric"]["step"], b["metric"]["sla"], b["value"][1]) for b in breaches] \
            == [("slow", "max_duration", "1")]
        hist = query('reliability_step_duration_seconds_count{pipeline="promdemo",step="slow"}')
        assert float(hist[0]["value"][1]) == 1.0
        alerts = wait_for(lambda: [a for payload in list(received) for a in payload["alerts"]
                                   if a["labels"]["alertname"] == "ReliabilitySLABreached"],
                          30, "Alertmanager to deliver the breach alert")
        alert = alerts[0]
        assert alert["labels"]["step"] == "slow" and alert["labels"]["sla"] == "max_duration"
        assert alert["annotations"]["runbook_url"] == \
            "http://127.0.0.1:9/runbooks/promdemo/sla_breach.html?step=slow"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    finally:
        stop(proc)
        exporter.close()
        runner.close()
