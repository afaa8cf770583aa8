"""Who may run a run: the claim survives pid reuse, and old ledgers are migrated."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability._proc import holds, start_token
from reliability.errors import LedgerError
from reliability.runner import Ledger
from reliability.runner.ledger import SCHEMA_VERSION

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process start times come from /proc")


@pytest.fixture
def other() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a runner."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _record_holder(ledger: Ledger, run_id: str, pid: int, token: str | None) -> None:
    ledger.db.execute("UPDATE runs SET status='running', runner_pid=?, host=?, runner_start=?"
                      " WHERE run_id=?", (pid, socket.gethostname(), token, run_id))


@linux_only
def test_start_token_tells_processes_apart(other: subprocess.Popen[bytes]) -> None:
    mine, theirs = start_token(), start_token(other.pid)
    assert mine and theirs and mine != theirs
    assert start_token(other.pid) == theirs  # stable for the life of the process
    assert holds(other.pid, socket.gethostname(), theirs)
    assert not holds(other.pid, socket.gethostname(), mine)  # same pid, other process
    assert not holds(os.getpid(), None, mine)  # the asker never blocks itself


@linux_only
def test_a_reused_pid_does_not_block_the_run(tmp_path: Path,
                                             other: subprocess.Popen[bytes]) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.create_run("r1", "p", "k", {}, ["a"])
        # The recorded runner died; its pid now belongs to an unrelated live process.
        _record_holder(ledger, "r1", other.pid, "0-not-this-boot:1")
        assert ledger.claim_run("r1") is None
        rec = ledger.get_run("r1")
        assert rec.runner_pid == os.getpid() and rec.runner_start == start_token()


@linux_only
def test_a_live_runner_keeps_its_run(tmp_path: Path, other: subprocess.Popen[bytes]) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.create_run("r1", "p", "k", {}, ["a"])
        _record_holder(ledger, "r1", other.pid, start_token(other.pid))
        assert ledger.claim_run("r1") == other.pid
        assert ledger.get_run("r1").runner_pid == other.pid  # untouched


def test_a_dead_runner_gives_up_its_run(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    token = start_token(proc.pid)
    proc.wait()
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.create_run("r1", "p", "k", {}, ["a"])
        _record_holder(ledger, "r1", proc.pid, token)
        assert ledger.claim_run("r1") is None


def _schema_1(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL,
            run_key TEXT NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL,
            code_version TEXT, interval_start TEXT, interval_end TEXT, trigger TEXT,
            runner_pid INTEGER, host TEXT, created_at REAL NOT NULL, started_at REAL,
            ended_at REAL, error TEXT);
        INSERT INTO runs VALUES ('old', 'p', 'k', 'failed', '{"n": 1}', NULL, NULL, NULL,
            NULL, 4242, 'h', 1.0, 1.0, 2.0, 'boom');
    """)
    db.commit()
    db.close()


def test_a_schema_1_ledger_is_migrated_without_losing_runs(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _schema_1(path)
    with Ledger(path) as ledger:
        old = ledger.get_run("old")
        assert (old.status, old.params, old.error, old.runner_start) == (
            "failed", {"n": 1}, "boom", None)
        assert ledger.claim_run("old") is None  # a failed run can be taken up again
        version = ledger.db.execute(
            "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION
    with Ledger(path) as again:  # idempotent
        assert again.get_run("old").runner_pid == os.getpid()


def test_a_ledger_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match=r"newer pipeline-reliability.*Fix: upgrade"):
        Ledger(path)
