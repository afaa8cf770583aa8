"""The run loop writes the ledger in one transaction per turn: other readers see the rows
once it is flushed, a failing write inside it undoes only itself, and what was written
before an error is kept. Queued attempts keep their number; a runner's death turns them
into lost ones."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from reliability.errors import LedgerError
from reliability.runner import Ledger


def _reader(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def _attempts(db: sqlite3.Connection) -> list[tuple[str, int, str]]:
    return db.execute("SELECT step, attempt, status FROM attempts ORDER BY step").fetchall()


def test_a_batch_is_seen_by_others_once_flushed(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.db")
    led.create_run("r1", "p", "k", {}, ["a", "b"])
    other = _reader(led.path)
    with led.batch():
        led.start_attempt("r1", "a", 1, None, {})
        assert _attempts(other) == []  # not committed yet
        led.flush()
        assert _attempts(other) == [("a", 1, "running")]
        led.commit_step("r1", "a", 1, "0" * 64, "json", 2)
        led.queue_attempt("r1", "b", 1, None)
    assert _attempts(other) == [("a", 1, "succeeded"), ("b", 1, "queued")]
    led.close()


def test_other_threads_write_during_a_batch_without_waiting_for_its_end(tmp_path: Path
                                                                         ) -> None:
    """An SLA timer or chaos controller records events from its own thread while the run
    loop's batch is open, and the loop may be waiting for that thread (the event bus
    delivers one event at a time): the thread's write must not wait for the batch."""
    led = Ledger(tmp_path / "ledger.db")
    led.create_run("r1", "p", "k", {}, ["a"])
    wrote = threading.Event()

    def timer() -> None:
        led.record_event("r1", 1.0, "sla_breach", "a", 1, {"sla": "max_duration"})
        with led.tx() as db:
            db.execute("UPDATE steps SET status='running' WHERE step='a'")
        wrote.set()

    with led.batch():
        led.start_attempt("r1", "a", 1, None, {})
        t = threading.Thread(target=timer)
        t.start()
        assert wrote.wait(10), "a write from another thread waited for the batch to end"
        t.join()
    other = _reader(led.path)
    assert _attempts(other) == [("a", 1, "running")]
    assert other.execute("SELECT kind FROM events").fetchall() == [("sla_breach",)]
    led.close()


def test_a_failing_write_in_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.db")
    led.create_run("r1", "p", "k", {}, ["a"])

    def turn() -> None:
        with led.batch():
            led.start_attempt("r1", "a", 1, None, {})
            led.commit_step("r1", "a", 1, "0" * 64, "json", 2)
            with led.tx() as db:  # half a write, then an error: rolled back
                db.execute("UPDATE steps SET status='failed' WHERE step='a'")
                raise LedgerError("boom")

    with pytest.raises(LedgerError, match="boom"):
        turn()
    other = _reader(led.path)
    assert _attempts(other) == [("a", 1, "succeeded")]  # written before the error: kept
    assert other.execute("SELECT status FROM steps").fetchall() == [("succeeded",)]
    led.close()


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
