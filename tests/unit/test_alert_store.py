"""Alerts received from Alertmanager are stored in the ledger, one row per firing episode."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.errors import LedgerError
from reliability.runner.ledger import Ledger


def test_a_firing_alert_is_stored_and_its_resolution_marks_it(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        first = led.record_alert("fp1", "2026-01-01T00:00:00Z", alertname="StepFailed",
                                 status="firing", labels={"pipeline": "p", "step": "s"},
                                 annotations={"summary": "s failed"}, run_id="r1",
                                 runbook="<p>book</p>")
        led.record_alert("fp2", "2026-01-01T00:05:00Z", alertname="WorkerLost",
                         status="firing", labels={}, annotations={})
        again = led.record_alert("fp1", "2026-01-01T00:00:00Z", alertname="StepFailed",
                                 status="resolved", labels={"pipeline": "p", "step": "s"},
                                 annotations={"summary": "s failed"},
                                 ends_at="2026-01-01T01:00:00Z")
        assert again.id == first.id and again.status == "resolved"
        assert again.run_id == "r1" and again.runbook == "<p>book</p>"  # kept from firing
        assert again.ends_at == "2026-01-01T01:00:00Z"
        assert [a.fingerprint for a in led.alerts()] == ["fp2", "fp1"]  # firing first
        assert [a.fingerprint for a in led.alerts(status="resolved")] == ["fp1"]
        assert led.get_alert(first.id).labels == {"pipeline": "p", "step": "s"}
        with pytest.raises(LedgerError, match="no alert 99"):
            led.get_alert(99)


def test_a_new_episode_of_the_same_alert_is_a_new_row(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        a = led.record_alert("fp", "2026-01-01T00:00:00Z", alertname="A", status="resolved",
                             labels={}, annotations={})
        b = led.record_alert("fp", "2026-01-02T00:00:00Z", alertname="A", status="firing",
                             labels={}, annotations={})
        assert a.id != b.id and len(led.alerts()) == 2


def test_recent_events_are_newest_first_and_filtered(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        for run, pipeline in (("r1", "p"), ("r2", "p"), ("r3", "q")):
            led.create_run(run, pipeline, run, {}, ["a"], trigger="manual")
            led.record_event(run, 1.0, "step_failed", "a", 1, {"error_type": "ValueError"})
            led.record_event(run, 2.0, "worker_lost", "a", 1, {})
        got = led.recent_events(["step_failed"], pipeline="p")
        assert [(e["run_id"], e["kind"], e["trigger"]) for e in got] == [
            ("r2", "step_failed", "manual"), ("r1", "step_failed", "manual")]
        assert got[0]["details"] == {"error_type": "ValueError"}
        assert led.recent_events(["worker_lost"], step="b") == []
        assert len(led.recent_events(["worker_lost", "step_failed"], limit=3)) == 3


def test_the_latest_failures_and_the_last_good_run_are_index_reads(tmp_path: Path) -> None:
    """Runbooks are found from a ledger of any size without scanning it."""
    with Ledger(tmp_path / "ledger.db") as led:
        led.db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        led.db.execute("DROP INDEX events_kind")
        led.db.execute("DROP INDEX runs_outcome")
    with Ledger(tmp_path / "ledger.db") as led:  # an older ledger gets the indexes
        plans = [" ".join(str(r[3]) for r in led.db.execute("EXPLAIN QUERY PLAN " + q, a))
                 for q, a in (
            ("SELECT e.* FROM events e JOIN runs r USING (run_id) WHERE e.kind=? AND"
             " (? IS NULL OR r.pipeline=?) ORDER BY e.id DESC LIMIT 5", ("x", "p", "p")),
            ("SELECT * FROM runs WHERE pipeline=? AND status='succeeded' ORDER BY ended_at"
             " DESC LIMIT 1", ("p",)))]
    assert "USING INDEX events_kind" in plans[0] and "TEMP B-TREE" not in plans[0]
    assert "USING INDEX runs_outcome" in plans[1] and "TEMP B-TREE" not in plans[1]
