"""Queued attempts (a step queued on its input's worker) keep their number in the ledger or
are forgotten; a runner's death turns the ones left into lost ones."""

from __future__ import annotations

from pathlib import Path

from reliability.runner import Ledger


def test_queued_attempts_keep_their_number_or_are_forgotten(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.db")
    led.create_run("r1", "p", "k", {}, ["a", "b", "c"])
    led.queue_attempt("r1", "a", 1, 7)
    led.queue_attempt("r1", "b", 1, 7)
    led.queue_attempt("r1", "c", 1, 7)
    led.start_attempt("r1", "a", 1, 7, {"x": "1" * 64}, queued=True, at=123.0)
    led.drop_queued_attempt("r1", "b", 1)
    assert [(a["step"], a["status"], a["started_at"]) for a in led.attempts("r1")
            if a["step"] == "a"] == [("a", "running", 123.0)]
    assert led.steps("r1")[0]["status"] == "running"
    # the runner dies: whatever was running or queued is lost, numbers stay taken
    assert led.abandon_running_attempts("r1", "runner died") == 2
    assert sorted((a["step"], a["attempt"], a["status"]) for a in led.attempts("r1")) == [
        ("a", 1, "lost"), ("c", 1, "lost")]
    led.close()
