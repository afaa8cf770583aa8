"""SLA rules and `reliability sla serve` against real promtool and a real serve process: a
low-target SLO pages on a total outage, the deadline gauge and error budgets are exported,
a restarted exporter does not alert on history."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import binary, free_port, start, stop
from pydantic import BaseModel

from reliability import Pipeline, Runner
from reliability.pipeline import DataInterval
from reliability.sla import SLA, SLO, SLASet, generate_rules

pytestmark = pytest.mark.integration


def test_low_target_slo_pages_on_a_total_outage(tmp_path: Path) -> None:
    """90% SLO: 14.4 x 0.1 = 1.44 -- before the fix the 1h/5m clause could never fire.

    A step that succeeded every minute for a day, then failed every minute for 70 minutes:
    the 6h (ratio ~0.19), 1d and 3d windows stay under their thresholds, so only the
    1h/5m clause (ratio 1 in both windows) can page.
    """
    sset = SLASet("etl", [SLA(step="load", success_rate=SLO(target=0.9))])
    (tmp_path / "rules.yml").write_text(generate_rules(sset))
    ok, bad = 'reliability_steps_total{pipeline="etl",step="load",status="succeeded"}', \
        'reliability_steps_total{pipeline="etl",step="load",status="failed"}'
    case = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": ok, "values": "0+1x1440 1440x100"},
                         {"series": bad, "values": "0x1440 1+1x100"}],
        "alert_rule_test": [
            {"eval_time": "1510m", "alertname": "ReliabilityErrorBudgetBurn",
             "exp_alerts": [{"exp_labels": {"pipeline": "etl", "step": "load",
                                            "severity": "page", "slo": "success_rate"},
                            "exp_annotations": {
                                "summary": "step load of pipeline etl is burning its error "
                                           "budget too fast",
                                "description": "The success-rate SLO (90% over 28d) of step "
                                               "load of pipeline etl is burning its error "
                                               "budget at a rate that exhausts it within days.",
                                "runbook_url": "http://127.0.0.1:8080/runbooks/etl/"
                                               "sla_breach.html?step=load"}}]},
            {"eval_time": "1430m", "alertname": "ReliabilityErrorBudgetBurn",
             "exp_alerts": []}]}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(case))
    proc = subprocess.run([binary("promtool"), "test", "rules", "t.yml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- `reliability sla serve` publishes the finish_by deadline --------------------------------
served = Pipeline("servedemo")


@served.step
def only() -> int:
    return 1


def _serve_metrics(tmp_path: Path, home: Path, sla_file: Path, wanted: str) -> str:
    """Start `reliability sla serve` on a free loopback port, return the first /metrics
    body holding ``wanted``, and stop the server."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start([sys.executable, "-m", "reliability.cli.main", "sla", "serve", "--home",
                  str(home), "--sla", str(sla_file), "--port", str(port), "--interval",
                  "0.2"], log)
    try:
        body, deadline = "", time.monotonic() + 15
        while wanted not in body:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, body
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.1)
        return body
    finally:
        stop(proc)


def test_sla_serve_exports_the_deadline_gauge(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    runner = Runner(served, home=home, workers=1)
    try:
        interval = DataInterval.parse("2026-01-01T00:00:00+00:00/2026-01-02T00:00:00+00:00")
        assert runner.run(interval=interval).status == "succeeded"
        # runs still going in another process, as far as the ledger knows: 2 January's,
        # started twice (its first runner died), and a backfill, which has no deadline
        led = runner.ledger
        for run_id, day, trigger in (("servedemo-open", 2, None),
                                     ("servedemo-backfill", 3, "backfill")):
            iv = (f"2026-01-0{day}T00:00:00+00:00", f"2026-01-0{day + 1}T00:00:00+00:00")
            led.create_run(run_id, "servedemo", run_id, {}, ["only"], interval=iv,
                           trigger=trigger)
            for _ in range(2 if trigger is None else 1):
                led.record_event(run_id, time.time(), "run_started", None, None,
                                 {"interval": "/".join(iv), "trigger": trigger})
    finally:
        runner.close()
    (tmp_path / "s.sla.yaml").write_text(
        "pipeline: servedemo\nrun: {finish_by: {offset: 2h, relative_to: interval_end}}\n")
    body = _serve_metrics(tmp_path, home, tmp_path / "s.sla.yaml",
                          'reliability_runs_in_progress{pipeline="servedemo",trigger="backfill"} 1')
    assert 'reliability_runs_in_progress{pipeline="servedemo",trigger="manual"} 1.0' in body
    line = next(ln for ln in body.splitlines()
                if ln.startswith("reliability_run_deadline_timestamp_seconds{"))
    # the open run's deadline: 3 January 02:00 UTC; the finished run's and the backfill's
    # count for nothing, and the restarted run is one run, not two
    assert line == ('reliability_run_deadline_timestamp_seconds{pipeline="servedemo"} '
                    "1.7674056e+09")

class _FailParams(BaseModel):
    fail: bool = False
    n: int = 0


budgeted = Pipeline("budgetdemo", params=_FailParams)


@budgeted.step
def maybe(params: _FailParams) -> int:
    if params.fail:
        raise RuntimeError("planted failure")
    return params.n


def test_sla_serve_exports_error_budgets_from_the_ledger(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    runner = Runner(budgeted, home=home, workers=1)
    try:
        outcomes = [runner.run({"n": n, "fail": n == 2}).status for n in range(3)]
    finally:
        runner.close()
    assert outcomes == ["succeeded", "succeeded", "failed"]
    (tmp_path / "b.sla.yaml").write_text(
        "pipeline: budgetdemo\nrun: {success_rate: {target: 0.5, window: 1d}}\n")
    prefix = "reliability_error_budget_remaining_ratio{"
    body = _serve_metrics(tmp_path, home, tmp_path / "b.sla.yaml", prefix)
    line = next(ln for ln in body.splitlines() if ln.startswith(prefix))
    labels, value = line.rsplit(" ", 1)
    assert 'pipeline="budgetdemo"' in labels
    assert float(value) == pytest.approx(1 - (1 / 3) / 0.5)  # a third of runs failed
    # history is state, not news: its counters are there, at zero (counting starts now)
    assert ('reliability_runs_total{pipeline="budgetdemo",status="failed",trigger="manual"} 0.0'
            in body.splitlines())


def test_a_restarted_ledger_exporter_does_not_alert_on_history(tmp_path: Path) -> None:
    """`sla serve` rebuilds its state from the ledger but counts from zero, as any restarted
    exporter: to Prometheus a restart is a counter reset, never a burst of old failures.

    The worker-lost series of a step stood at 5 until minute 10; the exporter was down for
    ten minutes and came back at minute 20 with the series at 0: silent (a reset). At
    minute 27 it grows to 1: a real new loss, which fires at once. A series first seen at 0
    (a first start) is silent too; one born at 5 (a live loss before the first scrape)
    fires at once.
    """
    (tmp_path / "rules.yml").write_text(generate_rules(SLASet("etl", [SLA(max_duration=60)])))
    lost = 'reliability_worker_lost_total{pipeline="etl",step="load",trigger="schedule"}'
    fired = [{"exp_labels": {"pipeline": "etl", "step": "load", "severity": "ticket"},
              "exp_annotations": {
                  "summary": "a worker died running step load of pipeline etl",
                  "description": "A worker process died mid-attempt while running step "
                                 "load of pipeline etl; the attempt was retried on a fresh "
                                 "worker if its retry policy allows.",
                  "runbook_url": "http://127.0.0.1:8080/runbooks/etl/worker_lost.html"
                                 "?step=load"}}]
    case = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m",
         "input_series": [{"series": lost, "values": "5x10 _x9 0x7 1x5"}],
         "alert_rule_test": [
             *({"eval_time": f"{m}m", "alertname": "ReliabilityWorkerLost", "exp_alerts": []}
               for m in (20, 21, 25, 26)),
             {"eval_time": "28m", "alertname": "ReliabilityWorkerLost", "exp_alerts": fired}]},
        {"interval": "1m",
         "input_series": [{"series": lost, "values": "_x20 0x25"}],
         "alert_rule_test": [
             {"eval_time": f"{m}m", "alertname": "ReliabilityWorkerLost", "exp_alerts": []}
             for m in (20, 21, 30, 45)]},
        {"interval": "1m",
         "input_series": [{"series": lost, "values": "_x20 5x10"}],
         "alert_rule_test": [
             {"eval_time": "21m", "alertname": "ReliabilityWorkerLost",
              "exp_alerts": fired}]}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(case))
    proc = subprocess.run([binary("promtool"), "test", "rules", "t.yml"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
