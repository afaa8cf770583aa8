"""SLA specs at their edges (non-finite durations, non-mapping bodies) are clear errors, and
the generated rules, suites and dashboards hold up: low targets page, uids stay unique,
outcome series exist from the run start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reliability.cli.main import main
from reliability.errors import ConfigError
from reliability.events import Event, EventBus, EventKind
from reliability.sla import SLA, SLO, Deadline, PipelineMetrics, SLASet, load_slas
from reliability.sla.dashboard import grafana_alert_rules
from reliability.sla.promtests import rule_tests_document
from reliability.sla.replay import DeadlineGauge
from reliability.sla.rules import build_rules

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.sla.yaml"
    p.write_text(text)
    return p


# -- SLA files: non-finite durations and non-mapping bodies -------------------------------
@pytest.mark.parametrize(("text", "key"), [
    ("pipeline: p\nrun: {max_duration: .inf}\n", "run.max_duration"),
    ("pipeline: p\nrun: {max_duration: .nan}\n", "run.max_duration"),
    ("pipeline: p\nsteps:\n  a: {freshness: .inf}\n", "steps.a.freshness"),
    ("pipeline: p\nrun: {success_rate: {target: 0.9, window: .inf}}\n",
     "run.success_rate.window"),
])
def test_non_finite_durations_are_config_errors(tmp_path: Path, text: str, key: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_slas(p)
    assert err.value.key_path == key and err.value.file == str(p)
    assert "finite" in str(err.value)


def test_cli_reports_an_infinite_duration_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "pipeline: p\nrun: {success_rate: {target: 0.9, window: .inf}}\n")
    assert main(["sla", "rules", "--sla", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run.success_rate.window" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "key", "words"), [
    ("pipeline: p\nrun: 5\n", "run", "not a mapping of limits"),
    ("pipeline: p\nsteps:\n  train: 5\n", "steps.train", "not a mapping of limits"),
    ("pipeline: p\nsteps:\n  train:\n", "steps.train", "not a mapping of limits"),
    ("- pipeline: p\n", "", "an SLA file is a mapping"),
])
def test_non_mapping_bodies_say_what_to_write(tmp_path: Path, text: str, key: str,
                                              words: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_slas(p)
    assert err.value.key_path == key
    assert words in str(err.value)
    assert "_Body" not in str(err.value) and "_SLAFile" not in str(err.value)


# -- burn-rate thresholds an error ratio can reach ------------------------------------------
def _thresholds(expr: str) -> list[tuple[str, float]]:
    return [(op, float(v)) for op, v in re.findall(r"(>=?) ([0-9.e+-]+)", expr)]


def test_no_burn_clause_needs_an_error_ratio_above_one() -> None:
    """ingest's 90% SLO: 14.4 x 0.1 = 1.44 can never be exceeded by a ratio."""
    rs = build_rules(load_slas(ROOT / "contracts" / "reference.sla.yaml"))
    burns = [a for a in rs.alerts if a.kind.startswith("burn")]
    assert burns
    for a in burns:
        for op, v in _thresholds(a.expr):
            assert (op, v) == (">=", 1.0) or (op == ">" and v < 1), a.expr
    page = next(a for a in burns if a.kind == "burn_page" and a.sla and a.sla.step == "ingest")
    assert 'error_ratio_rate1h{pipeline="reference",step="ingest"} >= 1 and' in page.expr
    assert 'error_ratio_rate6h{pipeline="reference",step="ingest"} > 0.6 and' in page.expr


def test_generated_suite_expects_the_page_of_a_low_target() -> None:
    """0.5 budget: both page clauses are clamped to ``>= 1`` and fire on a total outage."""
    rs = build_rules(SLASet("p", [SLA(step="s", success_rate=SLO(target=0.5))]))
    fires = next(t for t in rule_tests_document([rs], "r.yml")["tests"]
                 if "burn_page" in t["name"] and t["name"].endswith("fires"))
    exp = fires["alert_rule_test"][0]["exp_alerts"]
    assert sorted(a["exp_labels"]["severity"] for a in exp) == ["page", "ticket"]


# -- Grafana rule uids ---------------------------------------------------------------------
def test_grafana_uids_stay_unique_and_short_for_long_names() -> None:
    sset = SLASet("customer_churn_features_daily_v2", [
        SLA(success_rate=SLO(target=0.99), freshness=86400.0),
        SLA(step="feature_engineering_big", success_rate=SLO(target=0.99))])
    rules = grafana_alert_rules([build_rules(sset)])["groups"][0]["rules"]
    uids = [r["uid"] for r in rules]
    assert len(set(uids)) == len(uids) == len(build_rules(sset).alerts)
    assert all(len(u) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", u) for u in uids)
    short = grafana_alert_rules([build_rules(SLASet("ref", [SLA(freshness=86400.0)]))])
    assert short["groups"][0]["rules"][0]["uid"] == "rel-ref-stale-run"


# -- metrics: the first failure is visible to rate() ------------------------------------------
def test_outcome_series_exist_at_zero_from_the_run_start() -> None:
    """A counter born at 1 has no earlier sample: rate() ignores that first failure."""
    reg, bus = CollectorRegistry(), EventBus()
    PipelineMetrics(registry=reg).attach(bus)
    bus.publish(Event(kind=EventKind.RUN_STARTED, pipeline="p", run_id="r1",
                      details={"steps": ["a", "b"]}))
    for status in ("succeeded", "failed"):
        assert reg.get_sample_value("reliability_runs_total",
                                    {"pipeline": "p", "status": status, "trigger": "manual"}) == 0.0
        for step in ("a", "b"):
            assert reg.get_sample_value("reliability_steps_total", {
                "pipeline": "p", "step": step, "status": status, "trigger": "manual"}) == 0.0
    bus.publish(Event(kind=EventKind.STEP_FAILED, pipeline="p", run_id="r1", step="a",
                      attempt=1, error="boom"))
    bus.publish(Event(kind=EventKind.RUN_FAILED, pipeline="p", run_id="r1"))
    assert reg.get_sample_value("reliability_runs_total",
                                {"pipeline": "p", "status": "failed", "trigger": "manual"}) == 1.0
    assert reg.get_sample_value("reliability_steps_total", {
        "pipeline": "p", "step": "a", "status": "failed", "trigger": "manual"}) == 1.0


# -- `reliability sla serve`: the deadline gauge without a monitor ----------------------------
def test_replayed_run_start_sets_the_deadline_gauge() -> None:
    reg, bus = CollectorRegistry(), EventBus()
    metrics = PipelineMetrics(registry=reg)
    metrics.attach(bus)
    sset = SLASet("p", [SLA(finish_by=Deadline(offset=7200.0))])
    DeadlineGauge(sset, metrics).attach(bus)
    bus.publish(Event(kind=EventKind.RUN_STARTED, pipeline="p", run_id="r1", time=1000.0,
                      details={"interval": "2026-01-01T00:00:00+00:00/"
                                           "2026-01-02T00:00:00+00:00"}))
    bus.publish(Event(kind=EventKind.RUN_STARTED, pipeline="other", run_id="r2", time=5.0))
    assert reg.get_sample_value("reliability_run_deadline_timestamp_seconds",
                                {"pipeline": "p"}) == 1767312000.0 + 7200
    assert reg.get_sample_value("reliability_run_deadline_timestamp_seconds",
                                {"pipeline": "other"}) is None
